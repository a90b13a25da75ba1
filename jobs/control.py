"""What the UI and the CLI do to jobs: submit, cancel, resume. The store is the truth."""

from pathlib import Path

from jobs.queue import huey
from jobs.tasks import enqueue, release_waiting, resume, train_job
from studio.adapters.registry import adapter_template
from studio.errors import ExportError, JobError
from studio.export.merge import DTYPES, check_mix
from studio.feedback.items import TrainingPlan, feedback_datasets, training_plan
from studio.store import JobRecord, Store, now
from studio.train.spec import check_objective
from studio.train.spec import TrainSpec


def submit_training(store: Store, *, dataset_id: int, base_model: str, spec: TrainSpec, name: str, sweep: str | None = None,
                    test_dataset_id: int | None = None) -> JobRecord:
    """Record a training job and put it on the queue; the worker picks jobs in order. A test set (a saved
    dataset of the user's own held-out examples) is what its verdict will be judged on. Raises SpecError when the
    objective does not suit the dataset."""
    dataset = store.dataset(dataset_id)  # raises NotFound for a stale choice
    check_objective(dataset, spec)  # DPO or KTO on instructions, or SFT on pairs, is refused before it is queued
    job = store.add_job(kind="train", name=name.strip() or f"{dataset.name}-{spec.method}", dataset_id=dataset.id,
                        base_model=base_model, spec=spec.to_json(), sweep=sweep)
    if test_dataset_id is not None:
        store.update_job(job.id, test_dataset_id=store.dataset(test_dataset_id).id)
    result = train_job(job.id)
    store.update_job(job.id, task_id=result.id)
    return store.job(job.id)


def feedback_plan(store: Store, adapter_id: int, refs: list[str], weights: dict[str, int] | None = None) -> TrainingPlan:
    """What Train on feedback will do with these items, weighted by rater, for this adapter (studio.feedback.items.training_plan)."""
    adapter = store.adapter(adapter_id)
    return training_plan(store, refs, adapter_template(adapter), weights)


def submit_feedback_training(store: Store, datasets_dir: Path, adapter_id: int, refs: list[str],
                             weights: dict[str, int] | None = None) -> list[JobRecord]:
    """Train on feedback: the chosen votes and corrections become a preference dataset (their refs as its source) and a
    DPO job continuing `adapter_id` is queued; the new adapter records it as its parent. With enough corrections, an
    instruction-tuning job on them continues the adapter first, and the DPO job waits for it and continues its adapter.
    Returns the jobs in the order they run."""
    adapter = store.adapter(adapter_id)
    pairs, corrections = feedback_datasets(store, datasets_dir, adapter, feedback_plan(store, adapter_id, refs, weights))
    # A few passes over a handful of rows: enough to move a LoRA adapter (DPO: held to its start by beta).
    settings = {"epochs": 3, "batch_size": 4, "learning_rate": 1e-4, "max_length": adapter.spec.get("max_length", 512), "warmup_ratio": 0.0}
    dpo_spec = TrainSpec.from_dict({**settings, "objective": "dpo", "start_adapter_id": adapter.id})
    if corrections is None:
        return [submit_training(store, dataset_id=pairs.id, base_model=adapter.base_model, spec=dpo_spec, name=f"{adapter.name}-feedback")]
    # Instruction rows continue at the adapter's own learning rate: at DPO's 1e-4, a few steps on a handful of rows left
    # the benchmark's adapter unchanged (benchmarks/feedback_loop.py; README "The feedback loop" says what it still lacks).
    first = submit_training(store, dataset_id=corrections.id, base_model=adapter.base_model, name=f"{adapter.name}-corrections",
                            spec=TrainSpec.from_dict({**settings, "learning_rate": adapter.spec.get("learning_rate", 2e-4),
                                                      "start_adapter_id": adapter.id}))
    then = store.add_job(kind="train", name=f"{adapter.name}-feedback", dataset_id=pairs.id, base_model=adapter.base_model,
                         spec=dpo_spec.to_json())
    store.update_job(then.id, after_job_id=first.id)
    store.note_job(then.id, f"waits for job {first.id} (the corrections), then continues its adapter")
    return [first, store.job(then.id)]


def submit_sweep(store: Store, *, dataset_id: int, base_model: str, runs: list[tuple[str, TrainSpec]], name: str) -> list[JobRecord]:
    """Queue one training job per grid point, grouped under the sweep's name (see studio.train.sweeps)."""
    dataset = store.dataset(dataset_id)
    sweep = name.strip() or f"{dataset.name} sweep"
    return [submit_training(store, dataset_id=dataset.id, base_model=base_model, spec=spec, name=f"{sweep} {label}", sweep=sweep)
            for label, spec in runs]


def submit_evaluation(store: Store, adapter_id: int) -> JobRecord:
    """Queue a (re-)evaluation of an adapter against its base on its validation rows."""
    adapter = store.adapter(adapter_id)
    return enqueue(store, "evaluate", f"evaluate {adapter.name}", adapter.base_model, {"adapter_id": adapter.id})


def submit_merge(store: Store, adapter_id: int, dtype: str) -> JobRecord:
    """Queue a merge of an adapter into its base in full precision; the worker runs it, never the web server."""
    if dtype not in DTYPES:
        raise ExportError(f"Choose the merged model's precision: one of {', '.join(DTYPES)}, not '{dtype}'.")
    adapter = store.adapter(adapter_id)
    return enqueue(store, "merge", f"merge {adapter.name} ({dtype})", adapter.base_model, {"adapter_id": adapter.id, "dtype": dtype})


def submit_mix(store: Store, adapter_ids: list[int], weights: list[float], name: str) -> JobRecord:
    """Queue a weighted mix of adapters of one base; it is registered as a new adapter."""
    adapters = [store.adapter(i) for i in adapter_ids]
    check_mix(adapters, weights)
    name = name.strip() or "mix-" + "-".join(str(a.id) for a in adapters)
    return enqueue(store, "mix", name, adapters[0].base_model, {"adapter_ids": [a.id for a in adapters], "weights": weights})


def can_cancel(job: JobRecord) -> bool:
    """Whether Cancel applies: a job not yet finished whose cancel was not already asked for."""
    return job.state in ("queued", "running", "interrupted") and not job.cancel_requested


def can_resume(job: JobRecord) -> bool:
    """Whether Resume applies: only to an interrupted job."""
    return job.state == "interrupted"


def submit_export(store: Store, adapter_id: int, export_format: str, kinds: list[str]) -> JobRecord:
    """Queue a GGUF export (the merged model, in `kinds`) or a LoRA-serving export of an adapter, refused early when it cannot be made."""
    from studio.export.gguf import KINDS
    from studio.export.lora_serving import check_servable

    adapter = store.adapter(adapter_id)
    if export_format == "gguf":
        if not kinds or not set(kinds) <= set(KINDS):
            raise ExportError(f"Choose the GGUF kinds to export among {', '.join(KINDS)}.")
        return enqueue(store, "gguf", f"gguf {adapter.name}", adapter.base_model, {"adapter_id": adapter.id, "kinds": kinds})
    if export_format == "lora":
        check_servable(adapter.path)
        return enqueue(store, "lora", f"lora {adapter.name}", adapter.base_model, {"adapter_id": adapter.id})
    raise ExportError(f"Choose the export: gguf or lora, not '{export_format}'.")


def cancel_job(store: Store, job_id: int) -> JobRecord:
    """A queued job leaves the queue; a running one stops at its next step and keeps a usable adapter."""
    job = store.job(job_id)
    if job.state in ("queued", "interrupted"):
        if job.task_id:
            huey.revoke_by_id(job.task_id)
        store.update_job(job_id, state="cancelled", finished=now())
        release_waiting(store, job_id)  # what waited for it will not run either
    elif job.state == "running":
        store.update_job(job_id, cancel_requested=1)
    else:
        raise JobError(f"Job {job_id} has already {job.state}; there is nothing to cancel.")
    return store.job(job_id)


def resume_job(store: Store, job_id: int) -> JobRecord:
    job = store.job(job_id)
    if not can_resume(job):
        raise JobError(f"Only an interrupted job can be resumed; job {job_id} is {job.state}.")
    resume(store, job_id)
    return store.job(job_id)
