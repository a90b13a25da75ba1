"""Who is acting: the name each new record is stamped with (its `created_by`).

Set once where a request enters — the web UI's guard for each event (the signed-in person), the
command line for each command, the job runner for each job (whoever queued it) — rather than passed
through every function between there and the store, so that no way of making a record can forget it.
A worker's store calls through Redis carry it along (jobs.remote_store). Records made before the
studio knew people say "unknown".
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

UNKNOWN = "unknown"
COMMAND_LINE = "command line"

_acting: ContextVar[str] = ContextVar("acting", default=UNKNOWN)


def acting() -> str:
    """The name of whoever the current request, command or job acts for."""
    return _acting.get()


@contextmanager
def acting_as(name: str) -> Iterator[None]:
    token = _acting.set(name)
    try:
        yield
    finally:
        _acting.reset(token)
