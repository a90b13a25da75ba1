"""Workers on other machines reach the studio's store through the queue's Redis.

SQLite over a network file system is not reliable, so with STUDIO_QUEUE=redis://... a worker
never opens the database. Each store call it makes is a message on one Redis list; the studio
app runs a `StoreServer` that takes the calls in arrival order and runs them against its own
SQLite store, so the app is the store's single writer. Calls that only record (status,
metrics, heartbeats) do not wait; the others wait for their answer.

Messages are pickled, like Huey's own tasks in the same Redis: whoever can write to that Redis
can already run code on the workers, so it must be reachable by the studio's machines only.
"""

import logging
import pickle
import threading
import uuid

import redis

from jobs.queue import NAME
from studio.errors import JobError, StudioError
from studio.settings import Settings
from studio.store import Store
from studio.store.authors import UNKNOWN, acting, acting_as

log = logging.getLogger("studio.store_server")
CALLS = f"{NAME}:store-calls"
ANSWER_SECONDS = 60
RECORDING_CALLS = {"update_job", "add_metrics", "drop_metrics_after", "record_worker", "note_job", "keep_base_answers"}
ANSWERED_CALLS = {"job", "jobs", "dataset", "find_dataset_by_hash", "adapter", "merge", "latest_evaluation", "answers", "probe_answers", "base_answers", "add_job",
                  "add_adapter", "add_evaluation", "add_merge", "claim_job", "interrupt_job", "merges", "add_export"}


def uses_redis(settings: Settings) -> bool:
    return settings.queue.startswith("redis://")


def open_store(settings: Settings) -> "Store | RemoteStore":
    """The store as a worker reaches it: the SQLite file itself, or the app's store through Redis."""
    return RemoteStore(settings.queue) if uses_redis(settings) else Store(settings.db_path)


class RemoteStore:
    """The store calls a worker makes, sent to the studio app's StoreServer through Redis."""

    def __init__(self, url: str) -> None:
        self.redis = redis.Redis.from_url(url)

    def __getattr__(self, name: str):
        if name not in RECORDING_CALLS | ANSWERED_CALLS:
            raise AttributeError(f"Workers cannot call store.{name} through Redis")
        return lambda *args, **kwargs: self._call(name, args, kwargs)

    def _call(self, name: str, args: tuple, kwargs: dict):
        answer_key = None if name in RECORDING_CALLS else f"{NAME}:store-answer:{uuid.uuid4().hex}"
        self.redis.rpush(CALLS, pickle.dumps({"name": name, "args": args, "kwargs": kwargs, "answer_key": answer_key,
                                              "acting": acting()}))
        if answer_key is None:
            return None
        reply = self.redis.blpop([answer_key], timeout=ANSWER_SECONDS)
        if reply is None:
            raise JobError(f"The studio app did not answer within {ANSWER_SECONDS} s through Redis. Start the studio "
                           "(python app.py) with the same STUDIO_QUEUE as this worker; jobs wait in the queue meanwhile.")
        answer = pickle.loads(reply[1])
        if "error" in answer:
            raise answer["error"]
        return answer["value"]


class StoreServer:
    """Runs the store calls that workers send through Redis, one at a time, in arrival order."""

    def __init__(self, store: Store, url: str) -> None:
        self.store, self.redis = store, redis.Redis.from_url(url)

    def serve_next(self, wait_seconds: int = 1) -> bool:
        """Run the next waiting call, if one comes within `wait_seconds`; True when one ran."""
        message = self.redis.blpop([CALLS], timeout=wait_seconds)
        if message is None:
            return False
        call = pickle.loads(message[1])
        with acting_as(call.get("acting", UNKNOWN)):  # the records it makes are the job's author's
            answer = self._run(call["name"], call["args"], call["kwargs"])
        if call["answer_key"]:
            self.redis.rpush(call["answer_key"], pickle.dumps(answer))
            self.redis.expire(call["answer_key"], ANSWER_SECONDS)
        return True

    def _run(self, name: str, args: tuple, kwargs: dict) -> dict:
        if name not in RECORDING_CALLS | ANSWERED_CALLS:
            log.error("A worker asked for store.%s, which workers may not call", name)
            return {"error": JobError(f"Workers cannot call store.{name}.")}
        try:
            return {"value": getattr(self.store, name)(*args, **kwargs)}
        except StudioError as error:
            return {"error": error}
        except Exception as error:  # a bug: logged here, reported to the worker as a plain message
            log.exception("store.%s from a worker failed", name)
            return {"error": JobError(f"The studio's store could not run {name}: {type(error).__name__}: {error}")}


def start_store_server(store: Store, url: str) -> threading.Thread:
    """Serve workers' store calls in a background thread of the studio app, for as long as it runs."""
    server = StoreServer(store, url)

    def serve() -> None:
        while True:
            try:
                server.serve_next()
            except redis.ConnectionError as error:
                log.warning("Redis is not reachable (%s); workers' reports wait there until it is back", error)
                threading.Event().wait(5)

    thread = threading.Thread(target=serve, name="store-server", daemon=True)
    thread.start()
    return thread
