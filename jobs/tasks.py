"""Queue tasks. Each receives only a job id and runs the work in a child process, so a crash,
an out-of-memory kill or a cancel never takes the worker down and always frees memory.

The store is reached through `open_store`: the SQLite file, or the studio app's store through
Redis when the queue is Redis (workers on other machines never open the database).
"""

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from jobs.launch import child_command
from jobs.lifetime import die_with_parent
from jobs.queue import huey
from jobs.remote_store import RemoteStore, open_store
from jobs.reporting import record_failure
from jobs.run import job_folder
from studio.errors import JobError
from studio.settings import load_settings
from studio.store import JobRecord, Store, now
from studio.train.spec import PREFERENCE_OBJECTIVES

HEARTBEAT_SECONDS = 2
STALE_AFTER_SECONDS = 30
ROOT = Path(__file__).resolve().parent.parent
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


@huey.task()
def train_job(job_id: int) -> None:
    """Train in a child process; an adapter it leaves (succeeded, or cancelled with what it kept) is evaluated for its verdict."""
    store = open_store(load_settings())
    succeeded = _run_in_child(store, job_id)
    release_waiting(store, job_id)
    job = store.job(job_id)
    if succeeded or (job.state == "cancelled" and job.adapter_id):
        evaluate_after_training(store, job_id)


@huey.task()
def artifact_job(job_id: int) -> None:
    """Evaluate, merge or mix in a child process: never inside the web server."""
    _run_in_child(open_store(load_settings()), job_id)


def _run_in_child(store: Store | RemoteStore, job_id: int) -> bool:
    """Run the job's child process with a heartbeat; True when the job succeeded."""
    settings = load_settings()
    if not store.claim_job(job_id, WORKER_ID, time.time()):
        return False  # cancelled while it waited, or already taken by another worker
    try:
        command = child_command(store.job(job_id))
    except JobError as error:
        record_failure(store, job_id, error, "The job")
        return False
    store.record_worker(WORKER_ID, state="busy", job_id=job_id)
    folder = job_folder(settings, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "a") as log:
        log.write(f"Running on worker {WORKER_ID}\n")
        log.flush()
        child = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 preexec_fn=lambda: die_with_parent(signal.SIGKILL))
        while child.poll() is None:
            store.update_job(job_id, heartbeat=time.time())
            time.sleep(HEARTBEAT_SECONDS)
    store.record_worker(WORKER_ID, state="idle", job_id=None)
    job = store.job(job_id)
    if child.returncode < 0 and job.state == "running":
        name = signal.Signals(-child.returncode).name
        store.update_job(job_id, state="interrupted", error=f"The job's process was stopped by {name} "
                         "(often: memory ran out). Finished checkpoints are kept: press Resume to continue.")
        store.note_job(job_id, f"interrupted at step {job.step}: its process was stopped by {name}")
    elif child.returncode and job.state == "running":  # it could not even record its own failure
        store.update_job(job_id, state="failed", finished=now(), error=f"The job's process ended with exit code "
                         f"{child.returncode} before it could report. The log ({folder / 'train.log'}) has the details.")
    return job.state == "succeeded"


def release_waiting(store: Store | RemoteStore, job_id: int) -> None:
    """The jobs that wait for a finished job: queued to continue its adapter when it succeeded, cancelled (with
    why, in their history) when it failed or was cancelled. An interrupted job is resumed later: they keep waiting."""
    job = store.job(job_id)
    if not job.is_finished:
        return
    for waiting in store.jobs(("queued",)):
        if waiting.after_job_id != job_id:
            continue
        if job.state == "succeeded":
            store.update_job(waiting.id, spec=json.dumps({**waiting.spec, "start_adapter_id": job.adapter_id}))
            store.update_job(waiting.id, task_id=train_job(waiting.id).id)
        else:
            store.update_job(waiting.id, state="cancelled", finished=now())
            store.note_job(waiting.id, f"not run: job {job_id}, which it waited for, {job.state}")


def evaluate_after_training(store: Store | RemoteStore, job_id: int) -> JobRecord | None:
    """Queue the evaluation of a finished job's adapter, for its verdict: on the job's or dataset's test file,
    its validation rows, or (a dataset too small to hold rows out) training rows, as the verdict says.
    A preference run's (DPO, KTO) held-out pairs are scored in its own evaluation loss instead."""
    job = store.job(job_id)
    adapter = store.adapter(job.adapter_id)
    if adapter.spec.get("objective") in PREFERENCE_OBJECTIVES:
        return None
    return enqueue(store, "evaluate", f"evaluate {adapter.name}", adapter.base_model, {"adapter_id": adapter.id})


def enqueue(store: Store | RemoteStore, kind: str, name: str, base_model: str, spec: dict) -> JobRecord:
    """Record an evaluate, merge or mix job and put it on the queue."""
    job = store.add_job(kind=kind, name=name, dataset_id=None, base_model=base_model, spec=json.dumps(spec))
    store.update_job(job.id, task_id=artifact_job(job.id).id)
    return store.job(job.id)


def find_orphans(store: Store | RemoteStore) -> list[JobRecord]:
    """Running jobs whose worker is gone: its heartbeat stopped, or its process on this host died."""
    host = socket.gethostname()
    orphans = []
    for job in store.jobs(("running",)):
        worker_host, _, pid = (job.worker or ":").partition(":")
        dead_here = worker_host == host and pid.isdigit() and not _alive(int(pid))
        if dead_here or (job.heartbeat or 0) < time.time() - STALE_AFTER_SECONDS:
            orphans.append(job)
    return orphans


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resume_orphans(store: Store | RemoteStore) -> list[int]:
    """Mark the jobs of vanished workers interrupted and put them back on the queue, to resume from
    their last complete checkpoint on whichever worker is free; returns their ids."""
    resumed = []
    for job in find_orphans(store):
        if store.interrupt_job(job.id, job.heartbeat, f"Its worker ({job.worker}) stopped while it ran. "
                               "It resumes from its last checkpoint."):
            store.note_job(job.id, f"interrupted at step {job.step}: its worker {job.worker} stopped (the studio or the worker "
                                   "was stopped or killed)")
            resume(store, job.id)
            resumed.append(job.id)
    return resumed


def resume(store: Store | RemoteStore, job_id: int) -> None:
    """Put an interrupted job back on the queue; it continues from its last complete checkpoint."""
    store.update_job(job_id, state="queued", error=None, finished=None)
    task = train_job if store.job(job_id).kind == "train" else artifact_job
    store.update_job(job_id, task_id=task(job_id).id)
