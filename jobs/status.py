"""A job as the Jobs tab and the CLI show it: progress, time left, loss curve, log tail."""

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from studio.store import JobRecord, Store


@dataclass(frozen=True)
class JobStatus:
    job: JobRecord
    queue_position: int | None
    epoch: float | None
    seconds_left: float | None
    tokens_per_second: float | None  # real (non-padding) tokens
    utilisation: float | None  # share of the device's measured matrix-multiply speed put to use
    curve: list[dict]  # {"step", "loss", "series"} points: train loss and validation loss

    @property
    def fraction(self) -> float:
        return self.job.step / self.job.total_steps if self.job.total_steps else 0.0


def job_status(store: Store, job_id: int) -> JobStatus:
    job = store.job(job_id)
    metrics = store.metrics(job_id)
    trained = [m for m in metrics if m["loss"] is not None]
    curve = [{"step": m["step"], "loss": m["loss"], "series": "training loss"} for m in trained]
    curve += [{"step": m["step"], "loss": m["eval_loss"], "series": "validation loss"} for m in metrics if m["eval_loss"] is not None]
    last = trained[-1] if trained else None
    seconds_left = None
    if job.state == "running" and last and last["seconds"] and last["step"]:
        seconds_left = last["seconds"] / last["step"] * max(job.total_steps - last["step"], 0)
    return JobStatus(job, store.queue_position(job_id), last["epoch"] if last else None, seconds_left,
                     last["tokens_per_second"] if last else None, last["utilisation"] if last else None, curve)


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    with open(path, errors="replace") as log:
        return "".join(deque(log, maxlen=lines))
