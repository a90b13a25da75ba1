"""Run one queue consumer: one job at a time on this machine's device.

    python -m jobs.worker

On start it finds jobs that a dead worker left running, marks them interrupted and puts
them back on the queue, so they resume from their last complete checkpoint.
"""

import logging
import sys

from jobs.queue import huey
from jobs.tasks import mark_orphans_interrupted, resume
from studio.settings import load_settings
from studio.store import Store

log = logging.getLogger("studio.worker")


def recover(store: Store) -> list[int]:
    """Resume the jobs a dead worker left behind; returns their ids."""
    orphans = mark_orphans_interrupted(store)
    for job_id in orphans:
        log.info("Job %d was left running by a worker that stopped; resuming it", job_id)
        resume(store, job_id)
    return orphans


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    recover(Store(load_settings().db_path))
    consumer = huey.create_consumer(workers=1, worker_type="thread", periodic=True, check_worker_health=True)
    consumer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
