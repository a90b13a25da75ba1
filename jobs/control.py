"""What the UI and the CLI do to jobs: submit, cancel, resume. The store is the truth."""

from jobs.queue import huey
from jobs.tasks import resume, train_job
from studio.errors import JobError
from studio.spec import TrainSpec
from studio.store import JobRecord, Store, now


def submit_training(store: Store, *, dataset_id: int, base_model: str, spec: TrainSpec, name: str) -> JobRecord:
    """Record a training job and put it on the queue; the worker picks jobs in order."""
    dataset = store.dataset(dataset_id)  # raises NotFound for a stale choice
    job = store.add_job(kind="train", name=name.strip() or f"{dataset.name}-{spec.method}", dataset_id=dataset.id,
                        base_model=base_model, spec=spec.to_json())
    result = train_job(job.id)
    store.update_job(job.id, task_id=result.id)
    return store.job(job.id)


def cancel_job(store: Store, job_id: int) -> JobRecord:
    """A queued job leaves the queue; a running one stops at its next step and keeps a usable adapter."""
    job = store.job(job_id)
    if job.state in ("queued", "interrupted"):
        if job.task_id:
            huey.revoke_by_id(job.task_id)
        store.update_job(job_id, state="cancelled", finished=now())
    elif job.state == "running":
        store.update_job(job_id, cancel_requested=1)
    else:
        raise JobError(f"Job {job_id} has already {job.state}; there is nothing to cancel.")
    return store.job(job_id)


def resume_job(store: Store, job_id: int) -> JobRecord:
    job = store.job(job_id)
    if job.state != "interrupted":
        raise JobError(f"Only an interrupted job can be resumed; job {job_id} is {job.state}.")
    resume(store, job_id)
    return store.job(job_id)
