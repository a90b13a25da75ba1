"""The Merge tab: merge an adapter into its base as a queued job with progress, and mix
adapters of one base into a new adapter. The worker does the work, never the web server."""

import gradio as gr

from jobs.control import submit_merge, submit_mix
from jobs.status import job_status
from studio.errors import StudioError
from studio.export.merge import DTYPES
from studio.people import activity
from studio.store import Store
from studio.ui import html
from studio.ui.access import signed_in
from studio.ui.errors import shown_to_user
from studio.ui.html import progress_html
from studio.ui.pickers import adapter_choices
from studio.ui.refresh import on_show

MERGED_HEADERS = ["id", "adapter", "precision", "prompts checked", "folder", "created", "by"]
DTYPE_HELP = ("float32 keeps the adapter exact (largest files). bfloat16 and float16 halve the size; "
              "bfloat16 suits recent GPUs, float16 older ones.")


def merged_rows(store: Store) -> list[list]:
    names = {a.id: a.name for a in store.adapters()}
    return [[m.id, names.get(m.adapter_id, m.adapter_id), m.dtype, m.verified_prompts, str(m.path), m.created, m.created_by] for m in store.merges()]


def parse_weights(text: str) -> list[float]:
    try:
        return [float(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise StudioError(f"Weights must be numbers separated by commas, e.g. 0.5, 0.5, not '{text}'.") from None


def build(store: Store, page: gr.Tab) -> None:
    gr.Markdown("**Merge** bakes an adapter into a copy of its base model: one ordinary model folder that any "
                "Hugging Face tool can load, no adapter library needed. It is checked before it is saved: it must answer "
                "a few prompts exactly as the adapter does.")
    with gr.Row():
        adapter = gr.Dropdown(adapter_choices(store), label="Adapter", info="The adapter to fold into a copy of its base model.", elem_id="merge-adapter")
        dtype = gr.Radio(list(DTYPES), value="float32", label="Precision of the merged model", info=DTYPE_HELP, elem_id="merge-dtype")
    merge = gr.Button("Merge", variant="primary", elem_id="merge-start")
    progress = gr.HTML(elem_id="merge-progress")
    merged = gr.Dataframe(merged_rows(store), headers=MERGED_HEADERS, interactive=False, label="Merged models", elem_id="merge-table")
    with gr.Accordion("Mix adapters into a new one", open=False):
        gr.Markdown("Combine adapters of the same base model with weights: the new adapter adds up their changes, "
                    "each times its weight (0.5 and 0.5 is an even blend).")
        mix_pick = gr.Dropdown(adapter_choices(store), multiselect=True, label="Adapters to mix", info="Two or more adapters of the same base model.", elem_id="mix-adapters")
        with gr.Row():
            weights = gr.Textbox(label="Weights", placeholder="0.5, 0.5", info="One per adapter, in the order picked.", elem_id="mix-weights")
            mix_name = gr.Textbox(label="Name of the new adapter", info="How the mix is listed in the studio.", elem_id="mix-name")
        mix = gr.Button("Mix", elem_id="mix-start")
    job_id = gr.State(None)
    timer = gr.Timer(2)

    on_show(page, lambda: (gr.update(choices=adapter_choices(store)), gr.update(choices=adapter_choices(store)), merged_rows(store)),
                None, [adapter, mix_pick, merged])

    @shown_to_user
    def start_merge(adapter_id, precision):
        if adapter_id is None:
            raise StudioError("Pick the adapter to merge first.")
        job = submit_merge(store, int(adapter_id), precision)
        activity.record(store, signed_in(), "merge", f"queued job {job.id}: merge adapter #{int(adapter_id)} in {precision}")
        return progress_html(job_status(store, job.id)), job.id

    @shown_to_user
    def start_mix(adapter_ids, weight_text, name):
        job = submit_mix(store, [int(i) for i in adapter_ids or []], parse_weights(weight_text or ""), name or "")
        activity.record(store, signed_in(), "merge", f"queued job {job.id}: mix adapters {', '.join(str(i) for i in adapter_ids)}")
        return progress_html(job_status(store, job.id)), job.id

    def follow(current):
        if current is None:
            return gr.update(), gr.update()
        status = job_status(store, current)
        note = ""
        if status.job.state == "succeeded":
            note = html.message(f"Done: {'see the merged models below' if status.job.kind == 'merge' else 'the new adapter is in the lists'}.", ok=True)
        return progress_html(status) + note, merged_rows(store)

    merge.click(start_merge, [adapter, dtype], [progress, job_id])
    mix.click(start_mix, [mix_pick, weights, mix_name], [progress, job_id])
    timer.tick(follow, job_id, [progress, merged])
