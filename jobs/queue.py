"""The Huey instance: a SQLite queue file under STUDIO_HOME, or Redis when STUDIO_QUEUE says so.

Huey stores tasks with pickle, so the queue file is made private to this user.
"""

import os

from huey import Huey
from huey.storage import MemoryStorage, RedisStorage, SqliteStorage

from studio.settings import Settings, load_settings

NAME = "adapter-studio"


def queue_storage(settings: Settings):
    if settings.queue.startswith("redis://"):
        return RedisStorage(NAME, url=settings.queue)
    path = settings.queue_path
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return SqliteStorage(NAME, filename=str(path))


def use_queue_of(settings: Settings) -> None:
    """Point this process's queue at the one `settings` names (tasks stay registered)."""
    huey.storage = queue_storage(settings)


huey = Huey(NAME, storage_class=MemoryStorage)  # replaced at once by the configured queue
use_queue_of(load_settings())
