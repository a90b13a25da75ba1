"""A job as the Jobs tab and the CLI show it: progress, time left, loss curve, log tail."""

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from jobs.tasks import STALE_AFTER_SECONDS
from studio.store import JobRecord, Store
from studio.train.health import HealthWarning, evaluation_warnings, training_warnings

FORGET_AFTER_SECONDS = 24 * 3600  # stopped or lost workers drop out of the Workers view after a day
PREFERENCE_SERIES = {"reward_margin": "reward margin", "reward_accuracy": "preference accuracy"}


@dataclass(frozen=True)
class JobStatus:
    job: JobRecord
    queue_position: int | None
    epoch: float | None
    seconds_left: float | None
    tokens_per_second: float | None  # real (non-padding) tokens
    utilisation: float | None  # share of the device's measured matrix-multiply speed put to use
    curve: list[dict]  # {"step", "loss", "series"} points: train loss and validation loss
    preference_curve: list[dict]  # {"step", "value", "series"} points of a preference run: reward margin, preference accuracy
    warnings: list[HealthWarning]
    stop_note: str | None  # where early stopping ended the run and which checkpoint it kept

    @property
    def fraction(self) -> float:
        return self.job.step / self.job.total_steps if self.job.total_steps else 0.0


def job_status(store: Store, job_id: int) -> JobStatus:
    job = store.job(job_id)
    metrics = store.metrics(job_id)
    trained = [m for m in metrics if m["loss"] is not None]
    curve = [{"step": m["step"], "loss": m["loss"], "series": "training loss"} for m in trained]
    evaluated = [{"step": m["step"], "loss": m["eval_loss"], "series": "validation loss"} for m in metrics if m["eval_loss"] is not None]
    curve += evaluated
    preference_curve = [{"step": m["step"], "value": m[key], "series": series} for key, series in PREFERENCE_SERIES.items()
                        for m in metrics if m[key] is not None]
    last = trained[-1] if trained else None
    seconds_left = None
    if job.state == "running" and last and last["seconds"] and last["step"]:
        seconds_left = last["seconds"] / last["step"] * max(job.total_steps - last["step"], 0)
    adapter = store.adapter(job.adapter_id, deleted_too=True) if job.kind == "train" and job.adapter_id else None
    warnings = training_warnings(metrics, adapter.summary if adapter else None)
    if adapter:
        warnings += evaluation_warnings(store.latest_evaluation(adapter.id))
    return JobStatus(job, store.queue_position(job_id), last["epoch"] if last else None, seconds_left,
                     last["tokens_per_second"] if last else None, last["utilisation"] if last else None, curve,
                     preference_curve, warnings, early_stop_note(adapter.summary if adapter else {}, job.spec))


def early_stop_note(summary: dict, spec: dict) -> str | None:
    if summary.get("best_step") is None:
        return None
    kept = f"The adapter is the best checkpoint by validation loss, from step {summary['best_step']} ({summary['eval_loss']:.4f})."
    if summary.get("stopped_early"):
        return (f"Stopped early at step {summary['steps']}: the validation loss had not improved for "
                f"{spec.get('early_stopping_patience')} checkpoints. {kept}")
    return kept


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return ""
    with open(path, errors="replace") as log:
        return "".join(deque(log, maxlen=lines))


@dataclass(frozen=True)
class WorkerStatus:
    id: str  # host:pid
    device: str
    state: str  # idle, busy, stopped, or lost: ended mid-job, or no heartbeat for STALE_AFTER_SECONDS
    job_id: int | None
    seconds_since_heartbeat: float


def worker_statuses(store: Store) -> list[WorkerStatus]:
    """The workers of this studio with what they do now; a silent one is `lost` (its running job,
    if any, is resumed by another worker). Workers gone for more than a day are left out."""
    statuses = []
    for row in store.workers():
        silent = time.time() - (row["heartbeat"] or 0)
        state = "lost" if row["state"] != "stopped" and silent > STALE_AFTER_SECONDS else row["state"]
        if state in ("stopped", "lost") and silent > FORGET_AFTER_SECONDS:
            continue
        statuses.append(WorkerStatus(row["id"], row["device"] or "", state, row["job_id"] if state == "busy" else None, silent))
    return statuses
