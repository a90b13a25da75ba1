"""The one SQLite database behind the studio: schema as migrations, small typed accessors.

WAL mode lets the web app and the worker processes read and write it at the same time.
"""

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import sqlite_utils

from studio.errors import NotFound


def _v1_datasets(db: sqlite_utils.Database) -> None:
    db["datasets"].create(
        {
            "id": int,
            "name": str,
            "content_hash": str,
            "format": str,
            "shape": str,
            "mapping": str,
            "template": str,
            "rows": int,
            "validation_fraction": float,
            "split_seed": int,
            "source_file": str,
            "path": str,
            "created": str,
        },
        pk="id",
        not_null={"name", "content_hash", "path"},
    )
    db["datasets"].create_index(["content_hash"], unique=True)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1_datasets]


def now() -> str:
    """The current time as an ISO 8601 string in UTC, the one format the store keeps."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    content_hash: str
    format: str
    shape: str
    mapping: dict[str, str]
    template: str
    rows: int
    validation_fraction: float
    split_seed: int
    source_file: str
    path: Path
    created: str

    @classmethod
    def from_row(cls, row: dict) -> "DatasetRecord":
        return cls(**{**row, "mapping": json.loads(row["mapping"]), "path": Path(row["path"])})


class Store:
    """The studio's database file, migrated to the latest schema on open.

    Each thread gets its own connection: SQLite connections must stay in the thread that
    made them, and the web server runs callbacks in many threads.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self.db.enable_wal()
        self._migrate()

    @property
    def db(self) -> sqlite_utils.Database:
        if not hasattr(self._local, "db"):
            self._local.db = sqlite_utils.Database(self.path)
            self._local.db.execute("PRAGMA busy_timeout = 30000")
        return self._local.db

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.db.atomic():
                migration(self.db)
                self.db.execute(f"PRAGMA user_version = {number}")

    # datasets

    def add_dataset(self, **fields) -> DatasetRecord:
        """Insert a dataset row, or update the settings of the row with the same content hash."""
        fields = {**fields, "mapping": json.dumps(fields["mapping"]), "path": str(fields["path"])}
        existing = self.find_dataset_by_hash(fields["content_hash"])
        with self.db.atomic():
            if existing:
                self.db["datasets"].update(existing.id, {k: v for k, v in fields.items() if k != "created"})
                return self.dataset(existing.id)
            table = self.db["datasets"].insert({**fields, "created": now()})
            return self.dataset(table.last_pk)

    def dataset(self, dataset_id: int) -> DatasetRecord:
        try:
            return DatasetRecord.from_row(self.db["datasets"].get(dataset_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no saved dataset with id {dataset_id}. Pick one from the list of saved datasets.") from None

    def find_dataset_by_hash(self, content_hash: str) -> DatasetRecord | None:
        rows = list(self.db["datasets"].rows_where("content_hash = ?", [content_hash]))
        return DatasetRecord.from_row(rows[0]) if rows else None

    def datasets(self) -> list[DatasetRecord]:
        return [DatasetRecord.from_row(r) for r in self.db["datasets"].rows_where(order_by="id desc")]
