"""The one narrow interface through which a training run reports: status, metrics, cancel."""

import logging

from studio.errors import StudioError
from studio.store import Store, now

log = logging.getLogger("studio.job")


class StoreReporter:
    """Reports a job's progress to the studio's store and logs it for the job's log file."""

    def __init__(self, store: Store, job_id: int) -> None:
        self.store, self.job_id = store, job_id
        self.total_steps = 0

    def started(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self.store.update_job(self.job_id, total_steps=total_steps)
        log.info("Training for %d steps", total_steps)

    def metrics(self, step: int, values: dict) -> None:
        self.store.add_metrics(self.job_id, step, values)
        self.store.update_job(self.job_id, step=step)
        shown = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "epoch")
        log.info("step %d/%d: %s", step, self.total_steps, shown)

    def should_stop(self) -> bool:
        return bool(self.store.job(self.job_id).cancel_requested)


class FollowerReporter(StoreReporter):
    """A multi-GPU job's other processes: they record nothing (the first process does) but honour cancel."""

    def started(self, total_steps: int) -> None: ...

    def metrics(self, step: int, values: dict) -> None: ...


def record_failure(store: Store, job_id: int, error: Exception, what: str) -> None:
    """Mark a job failed: a StudioError with its own message; anything else as unexpected, its
    traceback in the job's log. Call it from the `except` block that caught `error`."""
    if isinstance(error, StudioError):
        log.error("Job %d failed: %s", job_id, error)
        message = str(error)
    else:
        log.exception("Job %d failed unexpectedly", job_id)
        message = f"{what} stopped on an unexpected error ({type(error).__name__}: {error}). The job log has the details."
    store.update_job(job_id, state="failed", error=message, finished=now())
