"""The one SQLite database behind the studio: schema as migrations (migrations), typed records (records),
the database class with its accessors (database). The public face is these names."""

from studio.store.database import Store
from studio.store.migrations import MIGRATIONS
from studio.store.records import (FINISHED, AdapterRecord, DatasetRecord, EvaluationRecord, ExportRecord, JobRecord,
                                  MergeRecord, deleted_note, now)

__all__ = ["FINISHED", "MIGRATIONS", "AdapterRecord", "DatasetRecord", "EvaluationRecord", "ExportRecord", "JobRecord",
           "MergeRecord", "Store", "deleted_note", "now"]
