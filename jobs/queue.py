"""The Huey instance: a SQLite queue file under STUDIO_HOME, or Redis when STUDIO_QUEUE says so.

Huey stores tasks with pickle, so the queue file is made private to this user.
"""

import os

from huey import RedisHuey, SqliteHuey

from studio.settings import Settings, load_settings


def make_huey(settings: Settings):
    if settings.queue.startswith("redis://"):
        return RedisHuey("adapter-studio", url=settings.queue)
    path = settings.home / "queue.db"
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return SqliteHuey("adapter-studio", filename=str(path))


huey = make_huey(load_settings())
