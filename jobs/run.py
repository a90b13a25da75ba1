"""The recipe one child process runs for one job: load it from the store, train, register, exit.

    python -m jobs.run --job-id N

Training jobs run here; evaluate, merge and mix jobs run jobs.artifact_run's recipe.
Runs by hand too, without Huey. The exit code is 0 when the job reached a final state
(succeeded, cancelled) and 1 when it failed; the store always says which and why.
A multi-GPU job runs this in one process per GPU (see jobs.launch); the first process (rank 0)
alone records to the store and saves the adapter.
"""

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path

from jobs.remote_store import RemoteStore, open_store
from jobs.reporting import FollowerReporter, StoreReporter, record_failure
from studio.adapters.lineage import describe
from studio.adapters.registry import adapter_folder
from studio.adapters.registry import saved_template
from studio.data.instructions import load_records
from studio.models.catalog import resolve_model
from studio.settings import Settings, load_settings
from studio.store import Store, now
from studio.store.authors import acting_as
from studio.train.continuation import start_adapter
from studio.train.preference import train_preferences
from studio.train.recipe import TrainInputs, TrainResult, checkpoint_step, latest_checkpoint, train
from studio.train.spec import check_objective
from studio.train.spec import PREFERENCE_OBJECTIVES, TrainSpec

log = logging.getLogger("studio.job")


def job_folder(settings: Settings, job_id: int) -> Path:
    return settings.jobs_dir / str(job_id)


def run_job(settings: Settings, store: Store | RemoteStore, job_id: int) -> TrainResult | None:
    """Train job `job_id` to the end, recording the outcome in the store; None when it failed."""
    if not is_leader():
        return _follow(settings, store, job_id)
    job = store.job(job_id)
    work_dir = job_folder(settings, job_id)
    store.update_job(job_id, state="running", started=job.started or now(), error=None)
    try:
        inputs = train_inputs(settings, store, job)
        checkpoint = latest_checkpoint(work_dir)
        if checkpoint:
            store.drop_metrics_after(job_id, checkpoint_step(checkpoint))
        if job.started:  # it ran before and was interrupted
            store.note_job(job_id, f"resumed at step {checkpoint_step(checkpoint)}, its last checkpoint" if checkpoint
                           else "started again from step 0: it was interrupted before its first checkpoint")
        result = recipe(inputs.spec)(inputs, work_dir, adapter_folder(settings.adapters_dir, job_id, job.name), StoreReporter(store, job_id))
    except Exception as error:
        record_failure(store, job_id, error, "Training")
        return None
    adapter = store.add_adapter(
        name=job.name, job_id=job_id, path=result.adapter_dir, base_model=job.base_model, dataset_hash=inputs.dataset_hash,
        method=inputs.spec.method, spec=json.loads(inputs.spec.to_json()), summary=result.summary(), status="cancelled" if result.cancelled else "complete",
        parent_id=inputs.spec.start_adapter_id,
    )
    store.update_job(job_id, state="cancelled" if result.cancelled else "succeeded", adapter_id=adapter.id, finished=now())
    log.info("Job %d %s: adapter %d in %s", job_id, "cancelled" if result.cancelled else "succeeded", adapter.id, result.adapter_dir)
    return result


def train_inputs(settings: Settings, store: Store | RemoteStore, job) -> TrainInputs:
    dataset = store.dataset(job.dataset_id)
    spec = TrainSpec.from_dict(job.spec)
    check_objective(dataset, spec)
    start = start_adapter(store, spec, job.base_model, settings.models_dir)
    if start:
        log.info(start.note)
    # Preference pairs are shown in the prompt format the adapter they continue was trained with.
    template = (saved_template(start.adapter.path) if start and spec.objective in PREFERENCE_OBJECTIVES else None) or dataset.template
    return TrainInputs(
        spec=start.spec if start else spec, name=job.name, base_model=job.base_model,
        base_dir=resolve_model(job.base_model, settings.models_dir), records=load_records(dataset.path),
        template=template, validation_fraction=dataset.validation_fraction, split_seed=dataset.split_seed,
        dataset_hash=dataset.content_hash, start_adapter=start.adapter.path if start else None,
        lineage=describe(store, start.adapter, dataset) if start else None,
    )


def recipe(spec: TrainSpec):
    """The training recipe for the spec's objective: preference training (DPO, KTO) on pairs, else instruction tuning."""
    return train_preferences if spec.objective in PREFERENCE_OBJECTIVES else train


def is_leader() -> bool:
    """True in a single-process job and in the first process of a multi-GPU one."""
    return int(os.environ.get("RANK", "0")) == 0


def _follow(settings: Settings, store: Store | RemoteStore, job_id: int) -> TrainResult | None:
    """A multi-GPU job's other processes: train their share, record nothing (rank 0 does)."""
    job = store.job(job_id)
    try:
        inputs = train_inputs(settings, store, job)
        return recipe(inputs.spec)(inputs, job_folder(settings, job_id), adapter_folder(settings.adapters_dir, job_id, job.name),
                                   FollowerReporter(store, job_id))
    except Exception:
        log.exception("Job %d failed in this process", job_id)
        return None


def quiet_libraries() -> None:
    """Keep a job's log about the job: no library deprecation notes or loading bars."""
    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    transformers.utils.logging.disable_progress_bar()
    for name in ("bitsandbytes", "transformers", "peft", "trl", "huey"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one studio job in this process.")
    parser.add_argument("--job-id", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    quiet_libraries()
    settings = load_settings()
    store = open_store(settings)
    job = store.job(args.job_id)
    with acting_as(job.created_by):  # what the job makes is made by whoever queued it
        if job.kind != "train":
            from jobs.artifact_run import run_artifact_job

            return 0 if run_artifact_job(settings, store, args.job_id) else 1
        return 0 if run_job(settings, store, args.job_id) else 1


if __name__ == "__main__":
    sys.exit(main())
