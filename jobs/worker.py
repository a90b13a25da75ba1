"""Run one queue consumer: one job at a time on this machine's device (or the GPUs it is given).

    python -m jobs.worker [--gpu 0]        # one worker per GPU: --gpu 0, --gpu 1, ...
    python -m jobs.worker --gpu 0,1        # a worker for jobs that ask for two GPUs

While it lives it records a heartbeat (the Workers view shows it) and looks for jobs whose
worker vanished: it marks them interrupted and puts them back on the queue, so they resume from
their last complete checkpoint on whichever worker is free. It does the same once on start.
"""

import argparse
import logging
import os
import socket
import sys
import threading
import time

from jobs.queue import huey
from jobs.remote_store import RemoteStore, open_store
from jobs.tasks import HEARTBEAT_SECONDS, WORKER_ID, resume_orphans
from studio.settings import load_settings
from studio.store import Store, now

log = logging.getLogger("studio.worker")


def recover(store: Store | RemoteStore) -> list[int]:
    """Resume the jobs that vanished workers left behind; returns their ids."""
    resumed = resume_orphans(store)
    for job_id in resumed:
        log.info("Job %d was left running by a worker that stopped; it is queued to resume", job_id)
    return resumed


def describe_device() -> str:
    """What this worker trains on, for the Workers view: the GPUs it sees, or the CPU."""
    import torch

    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"cuda {os.environ.get('CUDA_VISIBLE_DEVICES', 'all')}: " + ", ".join(names)
    return f"cpu ({os.cpu_count()} cores)"


def keep_heartbeat(store: Store | RemoteStore, stopping: threading.Event) -> None:
    """Every few seconds: say this worker is alive, then resume what vanished workers left."""
    while not stopping.wait(HEARTBEAT_SECONDS):
        try:
            store.record_worker(WORKER_ID, heartbeat=time.time())
            recover(store)
        except Exception:  # a store or Redis hiccup must not end the heartbeat
            log.exception("Heartbeat failed; trying again in %d s", HEARTBEAT_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run one studio worker: it takes jobs from the queue one at a time.")
    parser.add_argument("--gpu", help="the GPU(s) this worker uses, e.g. 0 or 0,1 (sets CUDA_VISIBLE_DEVICES for it and its jobs)")
    args = parser.parse_args(argv)
    if args.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpu  # before anything touches CUDA; job processes inherit it
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    store = open_store(load_settings())
    store.record_worker(WORKER_ID, host=socket.gethostname(), pid=os.getpid(), device=describe_device(), state="idle",
                        job_id=None, heartbeat=time.time(), started=now())
    recover(store)
    stopping = threading.Event()
    threading.Thread(target=keep_heartbeat, args=(store, stopping), name="heartbeat", daemon=True).start()
    consumer = huey.create_consumer(workers=1, worker_type="thread", check_worker_health=True)
    try:
        consumer.run()
    finally:
        stopping.set()
        store.record_worker(WORKER_ID, state=stopped_state(store), job_id=None, heartbeat=time.time())
    return 0


def stopped_state(store: Store | RemoteStore) -> str:
    """How this worker ended, for the Workers view: `lost` when it was stopped or killed (with its
    studio) in the middle of a job, which another worker resumes; `stopped` when it was idle."""
    return "lost" if any(job.worker == WORKER_ID for job in store.jobs(("running",))) else "stopped"


if __name__ == "__main__":
    sys.exit(main())
