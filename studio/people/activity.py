"""Who did what, and when: one line per sign-in, upload, training, merge, export, download, vote,
people change and refusal, kept in the store for admins (the Activity view, `python -m studio activity`)."""

import csv
import io
from dataclasses import dataclass

from studio.store import Store, now


@dataclass(frozen=True)
class Entry:
    id: int
    at: str
    person: str
    kind: str
    what: str


def record(store: Store, person: str, kind: str, what: str) -> None:
    store.db["activity"].insert({"at": now(), "person": person, "kind": kind, "what": what})


def entries(store: Store, person: str = "", kind: str = "", limit: int = 1000) -> list[Entry]:
    """The newest entries first, of one person or kind when given."""
    where = " AND ".join(clause for clause, value in (("person = :person", person), ("kind = :kind", kind)) if value)
    rows = store.db["activity"].rows_where(where or None, {"person": person, "kind": kind}, order_by="id desc", limit=limit)
    return [Entry(**row) for row in rows]


def kinds(store: Store) -> list[str]:
    return [row[0] for row in store.db.execute("SELECT DISTINCT kind FROM activity ORDER BY kind").fetchall()]


def as_csv(found: list[Entry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["at", "person", "kind", "what"])
    writer.writerows([e.at, e.person, e.kind, e.what] for e in found)
    return out.getvalue()
