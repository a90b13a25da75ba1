"""Queue tasks. Each receives only a job id and runs the work in a child process, so a crash,
an out-of-memory kill or a cancel never takes the worker down and always frees memory."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from huey import crontab

from jobs.lifetime import die_with_parent
from jobs.queue import huey
from jobs.run import job_folder
from studio.settings import load_settings
from studio.store import JobRecord, Store

HEARTBEAT_SECONDS = 2
STALE_AFTER_SECONDS = 30
ROOT = Path(__file__).resolve().parent.parent
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@huey.task()
def train_job(job_id: int) -> None:
    """Train in a child process; a success with validation rows queues its evaluation."""
    store = Store(load_settings().db_path)
    if _run_in_child(store, job_id):
        evaluate_after_training(store, job_id)


@huey.task()
def artifact_job(job_id: int) -> None:
    """Evaluate, merge or mix in a child process: never inside the web server."""
    _run_in_child(Store(load_settings().db_path), job_id)


def _run_in_child(store: Store, job_id: int) -> bool:
    """Run `python -m jobs.run --job-id N` with a heartbeat; True when the job succeeded."""
    settings = load_settings()
    if store.job(job_id).state not in ("queued", "interrupted"):
        return False  # cancelled while it waited, or already taken by another worker
    store.update_job(job_id, state="running", worker=WORKER_ID, heartbeat=time.time(), cancel_requested=0)
    folder = job_folder(settings, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "a") as log:
        child = subprocess.Popen([sys.executable, "-m", "jobs.run", "--job-id", str(job_id)], cwd=ROOT,
                                 stdout=log, stderr=subprocess.STDOUT, preexec_fn=lambda: die_with_parent(signal.SIGKILL))
        while child.poll() is None:
            store.update_job(job_id, heartbeat=time.time())
            time.sleep(HEARTBEAT_SECONDS)
    if child.returncode < 0 and store.job(job_id).state == "running":
        name = signal.Signals(-child.returncode).name
        store.update_job(job_id, state="interrupted", error=f"The job's process was stopped by {name} "
                         "(often: memory ran out). Finished checkpoints are kept: press Resume to continue.")
    return store.job(job_id).state == "succeeded"


def evaluate_after_training(store: Store, job_id: int) -> JobRecord | None:
    """Queue the evaluation of a finished job's adapter when its dataset held rows out for validation."""
    job = store.job(job_id)
    adapter = store.adapter(job.adapter_id)
    if not adapter.summary.get("validation_rows"):
        return None
    return enqueue(store, "evaluate", f"evaluate {adapter.name}", adapter.base_model, {"adapter_id": adapter.id})


def enqueue(store: Store, kind: str, name: str, base_model: str, spec: dict) -> JobRecord:
    """Record an evaluate, merge or mix job and put it on the queue."""
    job = store.add_job(kind=kind, name=name, dataset_id=None, base_model=base_model, spec=json.dumps(spec))
    store.update_job(job.id, task_id=artifact_job(job.id).id)
    return store.job(job.id)


def find_orphans(store: Store) -> list[int]:
    """Running jobs whose worker is gone: its heartbeat stopped, or its process on this host died."""
    host = socket.gethostname()
    orphans = []
    for job in store.jobs(("running",)):
        worker_host, _, pid = (job.worker or ":").partition(":")
        dead_here = worker_host == host and pid.isdigit() and not _alive(int(pid))
        if dead_here or (job.heartbeat or 0) < time.time() - STALE_AFTER_SECONDS:
            orphans.append(job.id)
    return orphans


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_orphans_interrupted(store: Store) -> list[int]:
    orphans = find_orphans(store)
    for job_id in orphans:
        store.update_job(job_id, state="interrupted", error="Its worker stopped while it ran. It resumes from its last checkpoint.")
    return orphans


def resume(store: Store, job_id: int) -> None:
    """Put an interrupted job back on the queue; it continues from its last complete checkpoint."""
    store.update_job(job_id, state="queued", error=None, finished=None)
    task = train_job if store.job(job_id).kind == "train" else artifact_job
    store.update_job(job_id, task_id=task(job_id).id)


@huey.periodic_task(crontab(minute="*"))
def resume_orphans() -> None:
    """Every minute: a job whose worker disappeared is resumed by a worker that is alive."""
    store = Store(load_settings().db_path)
    for job_id in mark_orphans_interrupted(store):
        resume(store, job_id)
