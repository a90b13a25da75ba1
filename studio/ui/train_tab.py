"""The Train tab: dataset, base model, method and preset, the plan in words before Start, every
setting under Advanced (grouped, the ones the user changed kept when the plan changes), and
Start, which lands on the job."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from jobs.control import submit_sweep, submit_training
from studio.data.blending import blend_datasets, describe_blend, plan_blend
from studio.device import pick_device
from studio.errors import StudioError
from studio.evaluate.measure import save_test_set
from studio.models.catalog import BUNDLED, load_tokenizer, resolve_model
from studio.people import activity
from studio.settings import Settings
from studio.store import Store
from studio.train.estimate import estimate
from studio.train.plan import PRESETS, dataset_stats, make_plan, measured_tokens_per_second, preset_help
from studio.train.spec import check_objective
from studio.train.spec import TrainSpec, label
from studio.train.sweeps import parse_sweep, sweep_specs
from studio.ui.access import needs, signed_in
from studio.ui.errors import shown_to_user
from studio.ui.pickers import dataset_choices
from studio.ui.refresh import on_show

ADVANCED = [f for f in dataclasses.fields(TrainSpec) if f.name not in ("method", "start_adapter_id")]
GROUPS = {  # the advanced settings by what they decide, as people look for them
    "The adapter": ["rank", "lora_alpha", "lora_dropout", "target_modules"],
    "How long and how fast": ["learning_rate", "epochs", "max_steps", "batch_size", "gradient_accumulation", "early_stopping_patience",
                              "warmup_ratio", "scheduler", "weight_decay", "max_grad_norm", "optimizer"],
    "Data and memory": ["max_length", "responses_only", "gradient_checkpointing"],
    "Runs and checkpoints": ["seed", "save_steps"],
    "Preference training": ["objective", "beta"],
    "GPUs": ["gpus", "multi_gpu"],
}


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
    edited: gr.State  # the advanced settings the user set, name -> value: a new plan keeps them


def _component(field: dataclasses.Field, value):
    meta, text = field.metadata, label(field.name)
    if meta["choices"]:
        return gr.Dropdown(meta["choices"], value=value, label=text, info=meta["help"])
    if field.type in (bool, "bool"):
        return gr.Checkbox(value=value, label=text, info=meta["help"])
    # No rounding in the box (precision None): a whole-number setting given 2.5 is refused, not taken as 2.
    return gr.Number(value, label=text, info=meta["help"], precision=None)


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
        chosen_preset = gr.Radio(PRESETS, value="Auto", label="Preset", elem_id="train-preset",
                                 info=preset_help(pick_device().name))
    # The advanced settings this user typed, with their values as typed: a new plan keeps them, and fills them back in,
    # since a plan asked for before the user's last edit can answer after it and overwrite the field.
    edited = gr.State({})
    with gr.Accordion("Advanced settings", open=False):
        gr.Markdown("The plan fills these in from your data. What you change here is kept when you pick another preset or dataset.")
        advanced = {}
        for title, names in GROUPS.items():
            with gr.Group(visible=title != "GPUs" or pick_device().cuda):  # GPU options only where there are GPUs
                gr.Markdown(f"**{title}**")
                for field_name in names:
                    field = next(f for f in ADVANCED if f.name == field_name)
                    advanced[field_name] = _component(field, field.default)
    with gr.Accordion("Blend in other data (against forgetting)", open=False):
        blend_pick = gr.Dropdown(dataset_choices(store), multiselect=True, label="Also train on", elem_id="train-blend",
                                 info="Other saved datasets, e.g. a general instruction set, so the model keeps its general skills.")
        blend_share = gr.Slider(1, 50, value=10, step=1, label="Their share of the rows (%)", elem_id="train-blend-share",
                                info="Split evenly between the datasets picked; your dataset has the rest. Rows are sampled the same way every time.")
        blend_plan = gr.Markdown(elem_id="train-blend-plan")
    with gr.Accordion("Sweep: try several settings at once", open=False):
        sweep_text = gr.Textbox(label="Settings to sweep", placeholder="rank=8,16,32; learning_rate=1e-4,2e-4", elem_id="train-sweep",
                                info="Each combination becomes its own job, grouped as one sweep that Compare ranks. Empty: one job.")
    with gr.Accordion("Your own test file (optional)", open=False):
        test_file = gr.File(label="Held-out examples", file_types=[".json", ".jsonl", ".csv", ".tsv", ".xlsx", ".parquet"], elem_id="train-test-file")
        gr.Markdown("Examples the adapter never trains on, in any format the Data tab reads. Its verdict is then judged on "
                    "them instead of the validation rows; rows that also appear in the training data are flagged.")
    name = gr.Textbox(label="Adapter name", info="A label for the result (or the sweep); the dataset and method if left empty.")
    summary = gr.Markdown(elem_id="train-estimate")
    start = gr.Button("Start training", variant="primary", elem_id="train-start")
    started = gr.HTML(elem_id="train-started")
    started_job = gr.State(None)
    fields = list(advanced.values())

    def spec_from(method_value, *values) -> TrainSpec:
        return TrainSpec.from_dict({"method": method_value, **dict(zip(advanced, values))})

    @needs("view")  # a redraw, run at each page load for every role (studio.ui.refresh)
    def planned(dataset_id, model_ref, method_value, preset_name, edited_values):
        """The plan for this data and preset, in words, and in every field: its settings, or what the user typed."""
        untouched = [gr.skip()] * len(fields)
        if dataset_id is None:
            return "Choose a dataset to see the training plan.", *untouched
        try:
            chosen = {"method": method_value, **edited_values}
            saved = store.dataset(int(dataset_id))
            model_dir = resolve_model(model_ref or BUNDLED, settings.models_dir)
            device = pick_device().name
            plan = make_plan(dataset_stats(saved, model_dir), preset_name or "Auto", chosen, device, model_dir,
                             measured_tokens_per_second(store, model_ref or BUNDLED))
            cost = estimate(plan.spec, model_dir, plan.stats.train_rows, plan.stats.mean_tokens, device).describe(device)
            check_objective(saved, plan.spec)  # an objective set by hand that does not suit the data
        except StudioError as error:
            return f"⚠️ {error}", *untouched
        fills = [edited_values[n] if n in edited_values else getattr(plan.spec, n) for n in advanced]
        return plan.describe() + "\n\n" + cost.split(" Time:")[0], *fills

    plan_inputs = [dataset, model, method, chosen_preset, edited]
    gr.on([dataset.change, model.change, method.change, chosen_preset.change], planned, plan_inputs, [summary, *fields])
    for field_name, component in advanced.items():
        component.input(lambda typed, value, n=field_name: {**typed, n: value}, [edited, component], edited).then(
            planned, plan_inputs, [summary, *fields])

    def refresh_datasets(current):
        """Opening the tab shows datasets saved since; with none chosen yet, the newest is chosen."""
        choices = dataset_choices(store)
        return gr.update(choices=choices, value=current if current is not None or not choices else choices[0][1])

    on_show(page, refresh_datasets, dataset, dataset).then(planned, plan_inputs, [summary, *fields]).then(
        needs("view")(lambda: gr.update(choices=dataset_choices(store))), None, blend_pick)

    def planned_blend(dataset_id, picked, share):
        return plan_blend(store, int(dataset_id), {int(i): share / 100 / len(picked) for i in picked})

    @needs("view")  # a redraw, as the plan is
    def describe_mix(dataset_id, model_ref, picked, share):
        if dataset_id is None or not picked:
            return ""
        try:
            parts = planned_blend(dataset_id, picked, share)
            model_dir = resolve_model(model_ref or BUNDLED, settings.models_dir)
            mean = {p.dataset.id: dataset_stats(p.dataset, model_dir).mean_tokens for p in parts}
            return describe_blend(parts, mean)
        except StudioError as error:
            return f"⚠️ {error}"

    gr.on([dataset.change, model.change, blend_pick.change, blend_share.change], describe_mix, [dataset, model, blend_pick, blend_share], blend_plan)

    @shown_to_user
    def start_job(dataset_id, model_ref, method_value, label_text, picked, share, sweep, test_upload, edited_values, *values):
        if dataset_id is None:
            raise StudioError("Choose a dataset first (save one in the Data tab).")
        spec = spec_from(method_value, *[edited_values.get(n, v) for n, v in zip(advanced, values)])  # typed, even if a plan answered since
        runs = sweep_specs(spec, parse_sweep(sweep)) if (sweep or "").strip() else None  # a bad sweep is refused before anything is saved
        model_dir = resolve_model(model_ref or BUNDLED, settings.models_dir)  # a bad model is refused now, not in the queue
        test_id = save_test_set(store, settings.datasets_dir, Path(test_upload), load_tokenizer(model_dir), settings.max_upload_bytes,
                                Path(test_upload).name).id if test_upload else None
        if picked:
            dataset_id = blend_datasets(store, settings.datasets_dir, planned_blend(dataset_id, picked, share)).id
        if runs:
            jobs = submit_sweep(store, dataset_id=int(dataset_id), base_model=model_ref or BUNDLED, runs=runs, name=label_text)
            activity.record(store, signed_in(), "train", f"queued sweep '{jobs[0].sweep}' as jobs {', '.join(str(j.id) for j in jobs)}")
            return f"Sweep '{jobs[0].sweep}' is queued as jobs {', '.join(str(j.id) for j in jobs)}.", jobs[0].id
        job = submit_training(store, dataset_id=int(dataset_id), base_model=model_ref or BUNDLED, spec=spec, name=label_text,
                              test_dataset_id=test_id)
        activity.record(store, signed_in(), "train", f"queued job {job.id} '{job.name}' ({spec.method}) on dataset #{job.dataset_id}")
        return f"Job {job.id} is queued.", job.id

    event = start.click(start_job, [dataset, model, method, name, blend_pick, blend_share, sweep_text, test_file, edited, *fields],
                        [started, started_job])
    return TrainTab(dataset, model, method, name, advanced, started_job, event, edited)
