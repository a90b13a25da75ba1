"""The Download tab's exports for other runtimes (GGUF for llama.cpp and Ollama, LoRA for vLLM) and its Import.

Exports run as queued jobs on the worker; a finished export is offered by its id from the store.
An uploaded adapter zip is checked and registered by studio.adapters.imports.
"""

import shutil
from pathlib import Path

import gradio as gr

from jobs.control import submit_export
from jobs.status import job_status
from studio.adapters.imports import import_adapter
from studio.errors import StudioError
from studio.export.gguf import KINDS
from studio.people import activity
from studio.settings import load_settings
from studio.store import Store
from studio.ui import html
from studio.ui.access import signed_in
from studio.ui.errors import shown_to_user
from studio.ui.html import progress_html
from studio.ui.pickers import adapter_choices, export_choices
from studio.ui.refresh import on_show

FORMATS = [("GGUF for llama.cpp and Ollama (merged, checked with llama.cpp)", "gguf"),
           ("LoRA for serving: vLLM layout and a GGUF LoRA", "lora")]


def build(store: Store, page: gr.Tab, downloads: Path) -> None:
    with gr.Accordion("Run it elsewhere: GGUF (llama.cpp, Ollama) and LoRA serving (vLLM)", open=False):
        gr.Markdown("A GGUF export merges the adapter into its base and converts it with llama.cpp's converter, with an Ollama "
                    "Modelfile; it is offered only after llama.cpp answers the check prompts as the merged model does. "
                    "The card in the zip has the commands to run it.")
        with gr.Row():
            adapter = gr.Dropdown(adapter_choices(store), label="Adapter", elem_id="deploy-adapter")
            export_format = gr.Radio(FORMATS, value="gguf", label="Export", elem_id="deploy-format")
            kinds = gr.CheckboxGroup(list(KINDS), value=["f16", "q8_0"], label="GGUF kinds",
                                     info="f16 is checked token for token; 8-bit and 4-bit are smaller, their agreement is reported.",
                                     elem_id="deploy-kinds")
        start = gr.Button("Export", variant="primary", elem_id="deploy-start")
        progress = gr.HTML(elem_id="deploy-progress")
        with gr.Row():
            exports = gr.Dropdown(export_choices(store), label="Finished exports", elem_id="deploy-exports")
            prepare = gr.Button("Prepare download", elem_id="deploy-download")
        export_file = gr.File(label="Export zip", interactive=False, elem_id="deploy-file")
    with gr.Accordion("Import an adapter trained elsewhere", open=False):
        gr.Markdown("A zip of a peft LoRA adapter folder (adapter_config.json and adapter_model.safetensors; pickle weights "
                    "are refused). Its base model must be available here and fit its shapes.")
        upload = gr.File(label="Adapter zip", file_types=[".zip"], elem_id="import-file")
        with gr.Row():
            name = gr.Textbox(label="Name", info="How it is listed (default: the zip's name).", elem_id="import-name")
            base = gr.Textbox(label="Base model", info="Only when its adapter_config.json names a base not found here: "
                              "bundled, a model folder or a hub id.", elem_id="import-base")
        take_in = gr.Button("Import", elem_id="import-start")
        imported = gr.HTML(elem_id="import-result")
    job_id = gr.State(None)
    timer = gr.Timer(2)

    on_show(page, lambda: (gr.update(choices=adapter_choices(store)), gr.update(choices=export_choices(store))), None, [adapter, exports])

    @shown_to_user
    def start_export(adapter_id, chosen, chosen_kinds):
        if adapter_id is None:
            raise StudioError("Pick the adapter to export first.")
        job = submit_export(store, int(adapter_id), chosen, list(chosen_kinds or []))
        activity.record(store, signed_in(), "export", f"queued job {job.id}: {chosen} export of adapter #{int(adapter_id)}")
        return progress_html(job_status(store, job.id)), job.id

    def follow(current):
        if current is None:
            return gr.update(), gr.update()
        status = job_status(store, current)
        done = status.job.state == "succeeded"
        note = html.message("Done: pick it under Finished exports.", ok=True) if done else ""
        return progress_html(status) + note, gr.update(choices=export_choices(store))

    @shown_to_user
    def download(export_id):
        if export_id is None:
            raise StudioError("Pick a finished export first.")
        record = store.export(int(export_id))
        if not record.path.is_file():
            raise StudioError(f"The zip of export {record.id} is missing from '{record.path}'. It was moved or deleted outside the studio.")
        downloads.mkdir(parents=True, exist_ok=True)
        activity.record(store, signed_in(), "download", f"downloaded export #{record.id} ({record.path.name})")
        return shutil.copyfile(record.path, downloads / record.path.name)

    @shown_to_user
    def import_zip(file, label, base_ref):
        if not file:
            raise StudioError("Upload the adapter's zip first.")
        path = Path(file if isinstance(file, str) else file.name)
        record = import_adapter(store, load_settings(), path, name=(label or "").strip(), base_model=(base_ref or "").strip())
        activity.record(store, signed_in(), "upload", f"imported adapter #{record.id} '{record.name}' from {path.name}")
        return html.message(f"Adapter #{record.id} '{record.name}' is registered (base {record.base_model}).", ok=True)

    start.click(start_export, [adapter, export_format, kinds], [progress, job_id])
    timer.tick(follow, job_id, [progress, exports])
    prepare.click(download, exports, export_file)
    take_in.click(import_zip, [upload, name, base], imported)
