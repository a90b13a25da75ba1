"""The Train tab: dataset, base model, method and preset, every setting under Advanced,
an estimate before starting, and Start, which lands on the job."""

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import gradio as gr

from jobs.control import submit_sweep, submit_training
from studio.blending import blend_datasets, describe_blend, plan_blend
from studio.data import count_tokens, load_records
from studio.device import pick_device
from studio.errors import StudioError
from studio.estimate import estimate
from studio.models import BUNDLED, load_tokenizer, resolve_model
from studio.prompts import get_template, render
from studio.settings import Settings
from studio.spec import PRESETS, TrainSpec, label, preset
from studio.store import Store
from studio.sweeps import parse_sweep, sweep_specs
from studio.ui.errors import shown_to_user

ADVANCED = [f for f in dataclasses.fields(TrainSpec) if f.name not in ("method", "start_adapter_id")]


@dataclass
class TrainTab:
    """The components other tabs fill in (Clone-and-edit) or read."""

    dataset: gr.Dropdown
    model: gr.Dropdown
    method: gr.Radio
    name: gr.Textbox
    advanced: dict[str, gr.components.Component]
    started_job: gr.State
    start_event: object  # chain .success(...) to act on the started job


def dataset_choices(store: Store) -> list[tuple[str, int]]:
    return [(f"{d.name} ({d.rows} rows, #{d.id})", d.id) for d in store.datasets()]


def _component(field: dataclasses.Field, value):
    meta, text = field.metadata, label(field.name)
    if meta["choices"]:
        return gr.Dropdown(meta["choices"], value=value, label=text, info=meta["help"])
    if field.type in (bool, "bool"):
        return gr.Checkbox(value=value, label=text, info=meta["help"])
    return gr.Number(value, label=text, info=meta["help"], precision=0 if field.type in (int, "int") else None)


@lru_cache(maxsize=16)
def _mean_tokens(dataset_path: Path, template: str, model_dir: Path) -> tuple[int, float]:
    tokenizer = load_tokenizer(model_dir)
    records = load_records(dataset_path)
    counts = count_tokens([render(r, get_template(template), tokenizer) for r in records], tokenizer)
    return len(records), sum(counts) / max(len(counts), 1)


def build(settings: Settings, store: Store, page: gr.Tab) -> TrainTab:
    gr.Markdown("Pick your saved data and a base model, choose how thoroughly to train, and press **Start training**. "
                "The job runs in the background; you can close the browser.")
    with gr.Row():
        dataset = gr.Dropdown(dataset_choices(store), label="Dataset", info="Save one in the Data tab first.", elem_id="train-dataset")
        model = gr.Dropdown([("SmolLM2-135M-Instruct (bundled)", BUNDLED)], value=BUNDLED, allow_custom_value=True, label="Base model",
                            info="The bundled model, or type the path of a local model folder or a hub id.")
    with gr.Row():
        method = gr.Radio([("LoRA", "lora"), ("QLoRA (4-bit, less memory)", "qlora"), ("DoRA (better at low rank, slower)", "dora"),
                           ("rsLoRA (for high ranks)", "rslora")], value="lora", label="Method",
                          info=dataclasses.fields(TrainSpec)[0].metadata["help"])
        chosen_preset = gr.Radio(list(PRESETS), value="Quick test", label="Preset",
                                 info="Quick test: a few steps to check everything works. Balanced: one pass. Thorough: three passes. "
                                      "Balanced and Thorough stop early, keeping the best checkpoint, once the validation loss stops improving.")
    start_spec = preset("Quick test")
    with gr.Accordion("Advanced settings", open=False):
        advanced = {f.name: _component(f, getattr(start_spec, f.name)) for f in ADVANCED}
    with gr.Accordion("Blend in other data (against forgetting)", open=False):
        blend_pick = gr.Dropdown(dataset_choices(store), multiselect=True, label="Also train on", elem_id="train-blend",
                                 info="Other saved datasets, e.g. a general instruction set, so the model keeps its general skills.")
        blend_share = gr.Slider(1, 50, value=10, step=1, label="Their share of the rows (%)", elem_id="train-blend-share",
                                info="Split evenly between the datasets picked; your dataset has the rest. Rows are sampled the same way every time.")
        blend_plan = gr.Markdown(elem_id="train-blend-plan")
    with gr.Accordion("Sweep: try several settings at once", open=False):
        sweep_text = gr.Textbox(label="Settings to sweep", placeholder="rank=8,16,32; learning_rate=1e-4,2e-4", elem_id="train-sweep",
                                info="Each combination becomes its own job, grouped as one sweep that Compare ranks. Empty: one job.")
    name = gr.Textbox(label="Adapter name", info="A label for the result (or the sweep); the dataset and method if left empty.")
    summary = gr.Markdown(elem_id="train-estimate")
    start = gr.Button("Start training", variant="primary", elem_id="train-start")
    started = gr.HTML(elem_id="train-started")
    started_job = gr.State(None)
    fields = list(advanced.values())

    def spec_from(method_value, *values) -> TrainSpec:
        return TrainSpec.from_dict({"method": method_value, **dict(zip(advanced, values))})

    def describe(dataset_id, model_ref, method_value, *values):
        try:
            spec = spec_from(method_value, *values)
            if dataset_id is None:
                return "Choose a dataset to see how long training will take."
            saved = store.dataset(int(dataset_id))
            model_dir = resolve_model(model_ref or BUNDLED, settings.models_dir)
            rows, mean = _mean_tokens(saved.path, saved.template, model_dir)
            return estimate(spec, model_dir, rows, mean, pick_device().name).describe(pick_device().name)
        except StudioError as error:
            return f"⚠️ {error}"

    inputs = [dataset, model, method, *fields]
    gr.on([c.change for c in inputs], describe, inputs, summary)
    def refresh_datasets(current):
        """Opening the tab shows datasets saved since; with none chosen yet, the newest is chosen."""
        choices = dataset_choices(store)
        return gr.update(choices=choices, value=current if current is not None or not choices else choices[0][1])

    page.select(refresh_datasets, dataset, dataset).then(describe, inputs, summary).then(
        lambda: gr.update(choices=dataset_choices(store)), None, blend_pick)

    def planned_blend(dataset_id, picked, share):
        return plan_blend(store, int(dataset_id), {int(i): share / 100 / len(picked) for i in picked})

    def describe_mix(dataset_id, model_ref, picked, share):
        if dataset_id is None or not picked:
            return ""
        try:
            parts = planned_blend(dataset_id, picked, share)
            model_dir = resolve_model(model_ref or BUNDLED, settings.models_dir)
            mean = {p.dataset.id: _mean_tokens(p.dataset.path, p.dataset.template, model_dir)[1] for p in parts}
            return describe_blend(parts, mean)
        except StudioError as error:
            return f"⚠️ {error}"

    gr.on([dataset.change, model.change, blend_pick.change, blend_share.change], describe_mix, [dataset, model, blend_pick, blend_share], blend_plan)

    chosen_preset.input(lambda p: [getattr(preset(p), f.name) for f in ADVANCED], chosen_preset, fields)

    @shown_to_user
    def start_job(dataset_id, model_ref, method_value, label_text, picked, share, sweep, *values):
        if dataset_id is None:
            raise StudioError("Choose a dataset first (save one in the Data tab).")
        spec = spec_from(method_value, *values)
        runs = sweep_specs(spec, parse_sweep(sweep)) if (sweep or "").strip() else None  # a bad sweep is refused before anything is saved
        resolve_model(model_ref or BUNDLED, settings.models_dir)  # a bad model is refused now, not in the queue
        if picked:
            dataset_id = blend_datasets(store, settings.datasets_dir, planned_blend(dataset_id, picked, share)).id
        if runs:
            jobs = submit_sweep(store, dataset_id=int(dataset_id), base_model=model_ref or BUNDLED, runs=runs, name=label_text)
            return f"Sweep '{jobs[0].sweep}' is queued as jobs {', '.join(str(j.id) for j in jobs)}.", jobs[0].id
        job = submit_training(store, dataset_id=int(dataset_id), base_model=model_ref or BUNDLED, spec=spec, name=label_text)
        return f"Job {job.id} is queued.", job.id

    event = start.click(start_job, [dataset, model, method, name, blend_pick, blend_share, sweep_text, *fields], [started, started_job])
    return TrainTab(dataset, model, method, name, advanced, started_job, event)
