"""The one SQLite database behind the studio, migrated on open, with small typed accessors.

WAL mode lets the web app and the worker processes read and write it at the same time.
"""

import contextlib
import json
import threading
from pathlib import Path

import sqlite_utils

from studio.errors import Gone, NotFound
from studio.store.authors import acting
from studio.store.migrations import MIGRATIONS
from studio.store.records import AdapterRecord, DatasetRecord, EvaluationRecord, ExportRecord, JobRecord, MergeRecord, now

KEPT = "deleted IS NULL"  # the records not deleted (studio.storage.deleting keeps a deleted one's row, for its lineage)


def _usable(record, what: str, deleted_too: bool):
    """The record, or Gone when it was deleted and the caller wants to use it, not just name it."""
    if record.deleted and not deleted_too:
        raise Gone(f"{what} '{record.name if hasattr(record, 'name') else record.path.name}' was deleted by {record.deleted_by} "
                   f"on {record.deleted[:10]}: its files are gone. Pick another from the list.")
    return record


def _stamp() -> dict:
    """When a record was made and by whom (studio.store.authors)."""
    return {"created": now(), "created_by": acting()}


class _Database(sqlite_utils.Database):
    """sqlite-utils' database whose transactions take SQLite's write lock as they begin (BEGIN IMMEDIATE).

    A deferred BEGIN that reads before it writes (sqlite-utils checks that a table exists before an insert)
    cannot wait for the lock when it comes to write: if another connection wrote in between, SQLite fails
    it at once with "database is locked", whatever the busy timeout. A QLoRA job on a GPU worker, writing a
    step's metrics a few times a second beside its worker's heartbeat, failed that way (benchmarks/cuda_path.py).
    """

    @contextlib.contextmanager
    def atomic(self):
        if self.conn.in_transaction:  # nested: sqlite-utils' savepoint
            with super().atomic():
                yield self
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.conn.execute("COMMIT")


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
            self._local.db = _Database(self.path)
            self._local.db.execute("PRAGMA busy_timeout = 30000")
            self._local.db.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, not left in free pages
        return self._local.db

    def _migrate(self) -> None:
        """Bring the schema up to date: one process migrates while another opening the same new file waits for it
        (a worker and the command line that queues its first job), then reads the version again and finds it done."""
        if self._version() == len(MIGRATIONS):
            return
        with self.db.atomic():
            version = self._version()  # again, under the write lock
            for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
                migration(self.db)
                self.db.execute(f"PRAGMA user_version = {number}")

    def _version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    # datasets

    def add_dataset(self, **fields) -> DatasetRecord:
        """Insert a dataset row, or return the saved one with the same rows, name, split and template.

        A saved dataset never changes: adapters were trained, and are evaluated, on its split.
        The same rows under another name or split become a dataset of their own.
        """
        fields = {**fields, "mapping": json.dumps(fields["mapping"]), "path": str(fields["path"])}
        with self.db.atomic():
            same = list(self.db["datasets"].rows_where(
                f"content_hash = ? and name = ? and validation_fraction = ? and split_seed = ? and template = ? and {KEPT}",
                [fields[k] for k in ("content_hash", "name", "validation_fraction", "split_seed", "template")], limit=1))
            if same:  # saved again: an archived one is back in the lists
                self.db["datasets"].update(same[0]["id"], {"archived": None, "archived_by": None})
                return self.dataset(same[0]["id"])
            table = self.db["datasets"].insert({**fields, **_stamp()})
            return self.dataset(table.last_pk)

    def dataset(self, dataset_id: int, deleted_too: bool = False) -> DatasetRecord:
        """A saved dataset, archived ones too; a deleted one only `deleted_too` (to name it), else Gone."""
        try:
            record = DatasetRecord.from_row(self.db["datasets"].get(dataset_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no saved dataset with id {dataset_id}. Pick one from the list of saved datasets.") from None
        return _usable(record, f"Dataset #{dataset_id}", deleted_too)

    def find_dataset_by_hash(self, content_hash: str) -> DatasetRecord | None:
        """The first dataset saved with these rows."""
        rows = list(self.db["datasets"].rows_where(f"content_hash = ? and {KEPT}", [content_hash], order_by="id", limit=1))
        return DatasetRecord.from_row(rows[0]) if rows else None

    def find_dataset(self, ref: str) -> DatasetRecord:
        """A saved dataset by id or by name (the newest of that name)."""
        for dataset in self.datasets():
            if ref.strip() in (str(dataset.id), dataset.name):
                return dataset
        raise NotFound(f"No saved dataset is called '{ref}', and it is not a file. Give a data file or a saved dataset's id or name.")

    def attach_test_set(self, dataset_id: int, test_dataset_id: int | None) -> DatasetRecord:
        """Judge adapters of a dataset on the user's own test file (a saved dataset) instead of its validation rows."""
        self.dataset(dataset_id)
        self.db["datasets"].update(dataset_id, {"test_dataset_id": test_dataset_id})
        return self.dataset(dataset_id)

    def keep_answers_of(self, dataset_id: int, prompts: list[str]) -> DatasetRecord:
        """Save the team's prompts whose answers the dataset's adapters must not change (blank lines dropped)."""
        self.dataset(dataset_id)
        kept = [p.strip() for p in prompts if p.strip()]
        self.db["datasets"].update(dataset_id, {"keep_prompts": json.dumps(list(dict.fromkeys(kept)))})
        return self.dataset(dataset_id)

    def datasets(self, archived_too: bool = False) -> list[DatasetRecord]:
        """The saved datasets, newest first: not the deleted ones, nor the archived ones unless asked."""
        where = KEPT if archived_too else f"{KEPT} and archived IS NULL"
        return [DatasetRecord.from_row(r) for r in self.db["datasets"].rows_where(where, order_by="id desc")]

    # jobs

    def add_job(self, *, kind: str, name: str, dataset_id: int | None, base_model: str, spec: str, sweep: str | None = None) -> JobRecord:
        table = self.db["jobs"].insert({"kind": kind, "state": "queued", "name": name, "dataset_id": dataset_id,
                                        "base_model": base_model, "spec": spec, "sweep": sweep, **_stamp()})
        return self.job(table.last_pk)

    def job(self, job_id: int) -> JobRecord:
        try:
            return JobRecord.from_row(self.db["jobs"].get(job_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no job {job_id}. Pick one from the Jobs list.") from None

    def jobs(self, states: tuple[str, ...] | None = None) -> list[JobRecord]:
        """The jobs not deleted, newest first, in these states when given."""
        where = f"{KEPT} and state in ({', '.join('?' * len(states))})" if states else KEPT
        return [JobRecord.from_row(r) for r in self.db["jobs"].rows_where(where, list(states or []), order_by="id desc")]

    def update_job(self, job_id: int, **fields) -> None:
        self.db["jobs"].update(job_id, fields)

    def note_job(self, job_id: int, note: str) -> None:
        """Add a line to a job's history: an interruption or a resume stays visible after the job ends."""
        self.db.execute("update jobs set notes = coalesce(notes || char(10), '') || ? where id = ?", [note, job_id])
        self.db.conn.commit()

    def claim_job(self, job_id: int, worker: str, heartbeat: float) -> bool:
        """Mark a queued or interrupted job running on `worker`; False when another worker has it
        or it was cancelled. One statement, so two workers can never both claim a job."""
        cursor = self.db.execute("update jobs set state = 'running', worker = ?, heartbeat = ?, cancel_requested = 0 "
                                 "where id = ? and state in ('queued', 'interrupted')", [worker, heartbeat, job_id])
        self.db.conn.commit()
        return cursor.rowcount == 1

    def interrupt_job(self, job_id: int, heartbeat: float | None, error: str) -> bool:
        """Mark a running job interrupted unless its worker reported since `heartbeat` was read:
        of two workers that find the same orphan, only one gets True and resumes it."""
        cursor = self.db.execute("update jobs set state = 'interrupted', error = ? where id = ? and state = 'running' "
                                 "and heartbeat is ?", [error, job_id, heartbeat])
        self.db.conn.commit()
        return cursor.rowcount == 1

    def queue_position(self, job_id: int) -> int | None:
        """1 for the next queued job to run; None when the job is not queued."""
        queued = [r["id"] for r in self.db.query("select id from jobs where state = 'queued' order by id")]
        return queued.index(job_id) + 1 if job_id in queued else None

    def add_metrics(self, job_id: int, step: int, values: dict) -> None:
        """Record one step's metrics, merging with what that step already has (loss and eval loss come apart)."""
        with self.db.atomic():
            self.db["metrics"].upsert({"job_id": job_id, "step": step, **values}, pk=("job_id", "step"))

    def metrics(self, job_id: int) -> list[dict]:
        return list(self.db["metrics"].rows_where("job_id = ?", [job_id], order_by="step"))

    def drop_metrics_after(self, job_id: int, step: int) -> None:
        """Forget metrics past a checkpoint: a resumed run writes them again."""
        self.db["metrics"].delete_where("job_id = ? and step > ?", [job_id, step])

    # workers

    def record_worker(self, worker_id: str, **fields) -> None:
        """Create or update a worker's row: its device and state when it starts, a heartbeat while it lives."""
        self.db["workers"].upsert({"id": worker_id, **fields}, pk="id")

    def workers(self) -> list[dict]:
        return list(self.db["workers"].rows_where(order_by="started"))

    # adapters

    def add_adapter(self, **fields) -> AdapterRecord:
        fields = {**fields, "spec": json.dumps(fields["spec"]), "summary": json.dumps(fields["summary"]), "path": str(fields["path"])}
        table = self.db["adapters"].insert({**fields, **_stamp()})
        return self.adapter(table.last_pk)

    def adapter(self, adapter_id: int, deleted_too: bool = False) -> AdapterRecord:
        """A registered adapter; a deleted one only `deleted_too` (to name it in a lineage), else Gone."""
        try:
            record = AdapterRecord.from_row(self.db["adapters"].get(adapter_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no adapter {adapter_id}. Pick one from the list of adapters.") from None
        return _usable(record, f"Adapter #{adapter_id}", deleted_too)

    def adapters(self) -> list[AdapterRecord]:
        return [AdapterRecord.from_row(r) for r in self.db["adapters"].rows_where(KEPT, order_by="id desc")]

    def sweeps(self) -> list[str]:
        """Names of the sweeps, newest first."""
        rows = self.db.execute("select sweep from jobs where sweep is not null group by sweep order by max(id) desc").fetchall()
        return [row[0] for row in rows]

    def sweep_adapters(self, sweep: str) -> list[AdapterRecord]:
        """The adapters the jobs of a sweep produced so far."""
        rows = self.db.query("select adapters.* from adapters join jobs on adapters.job_id = jobs.id where jobs.sweep = ? "
                             "and adapters.deleted IS NULL order by adapters.id", [sweep])
        return [AdapterRecord.from_row(r) for r in rows]

    def find_adapter(self, ref: str) -> AdapterRecord:
        """A registered adapter by id, by name (the newest of that name) or by its folder."""
        ref = str(ref).strip()
        folder = Path(ref).expanduser().resolve() if ref else None
        for adapter in self.adapters():
            if ref in (str(adapter.id), adapter.name) or adapter.path.resolve() == folder:
                return adapter
        if ref.isdigit():
            self.adapter(int(ref))  # raises Gone, with who deleted it, for a deleted adapter's id
        raise NotFound(f"No registered adapter has the id, name or folder '{ref}'. "
                       "Give the id or name of an adapter listed in the studio (a training job registers it), or its folder.")

    # votes

    def add_vote(self, *, a_key: str, a_label: str, b_key: str, b_label: str, winner: str, prompt: str,
                 details: dict | None = None) -> int:
        """`details` holds what the vote judged (a_turns, b_turns, a_answer, b_answer, generation), stored as given."""
        table = self.db["votes"].insert({"a_key": a_key, "a_label": a_label, "b_key": b_key, "b_label": b_label,
                                         "winner": winner, "prompt": prompt, **(details or {}), **_stamp()})
        return table.last_pk

    def add_correction(self, **fields) -> int:
        return self.db["corrections"].insert({**fields, "dropped": 0, **_stamp()}).last_pk

    def corrections(self) -> list[dict]:
        """Every correction, oldest first."""
        return list(self.db["corrections"].rows_where(order_by="id"))

    def drop_feedback(self, table: str, ids: list[int]) -> None:
        """Leave votes or corrections out of training; they still count in the rankings."""
        with self.db.atomic():
            for row_id in ids:
                self.db[table].update(row_id, {"dropped": 1})

    def votes(self) -> list[dict]:
        """Every vote, oldest first."""
        return list(self.db["votes"].rows_where(order_by="id"))

    # evaluations

    def add_evaluation(self, values: dict, answers: list[dict], probe_answers: list[dict] = ()) -> EvaluationRecord:
        """Record an evaluation, its answers and its probe's answers (studio.evaluate.forgetting) together: all or none."""
        with self.db.atomic():
            evaluation_id = self.db["evaluations"].insert({**values, **_stamp()}).last_pk
            self.db["answers"].insert_all([{**a, "evaluation_id": evaluation_id} for a in answers], pk=("evaluation_id", "row"))
            self.db["probe_answers"].insert_all([{**a, "evaluation_id": evaluation_id} for a in probe_answers],
                                                pk=("evaluation_id", "row"))
        return self.evaluation(evaluation_id)

    def evaluation(self, evaluation_id: int) -> EvaluationRecord:
        try:
            return EvaluationRecord(**self.db["evaluations"].get(evaluation_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no evaluation {evaluation_id}.") from None

    def latest_evaluation(self, adapter_id: int) -> EvaluationRecord | None:
        rows = list(self.db["evaluations"].rows_where("adapter_id = ?", [adapter_id], order_by="id desc", limit=1))
        return EvaluationRecord(**rows[0]) if rows else None

    def answers(self, evaluation_id: int) -> list[dict]:
        return list(self.db["answers"].rows_where("evaluation_id = ?", [evaluation_id], order_by="row"))

    def base_answers(self, key: str) -> list[dict] | None:
        """A base model's answers to a probe, kept by studio.evaluate.forgetting.probe_key; None before it was asked."""
        rows = list(self.db["base_answers"].rows_where("key = ?", [key]))
        return json.loads(rows[0]["answers"]) if rows else None

    def keep_base_answers(self, key: str, answers: list[dict]) -> None:
        self.db["base_answers"].upsert({"key": key, "answers": json.dumps(answers), "created": now()}, pk="key")

    def probe_answers(self, evaluation_id: int) -> list[dict]:
        """Base and adapter answers to the ordinary requests and must-not-change prompts of an evaluation."""
        return list(self.db["probe_answers"].rows_where("evaluation_id = ?", [evaluation_id], order_by="row"))

    # merged models

    def add_merge(self, **fields) -> MergeRecord:
        table = self.db["merges"].insert({**fields, "path": str(fields["path"]), **_stamp()})
        return self.merge(table.last_pk)

    def merge(self, merge_id: int, deleted_too: bool = False) -> MergeRecord:
        try:
            record = MergeRecord.from_row(self.db["merges"].get(merge_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no merged model {merge_id}. Pick one from the list of merged models.") from None
        return _usable(record, f"Merged model #{merge_id}", deleted_too)

    def merges(self, adapter_id: int | None = None) -> list[MergeRecord]:
        where = f"adapter_id = ? and {KEPT}" if adapter_id is not None else KEPT
        return [MergeRecord.from_row(r) for r in self.db["merges"].rows_where(where, [adapter_id] if adapter_id is not None else [],
                                                                             order_by="id desc")]

    # exports for other runtimes

    def add_export(self, **fields) -> ExportRecord:
        table = self.db["exports"].insert({**fields, "path": str(fields["path"]), "report": json.dumps(fields["report"]), **_stamp()})
        return self.export(table.last_pk)

    def export(self, export_id: int, deleted_too: bool = False) -> ExportRecord:
        try:
            record = ExportRecord.from_row(self.db["exports"].get(export_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no export {export_id}. Pick one from the list of exports.") from None
        return _usable(record, f"Export #{export_id}", deleted_too)

    def exports(self, adapter_id: int | None = None) -> list[ExportRecord]:
        where = f"adapter_id = ? and {KEPT}" if adapter_id is not None else KEPT
        return [ExportRecord.from_row(r) for r in self.db["exports"].rows_where(where, [adapter_id] if adapter_id is not None else [],
                                                                               order_by="id desc")]

    # the adapter in use

    def add_in_use(self, adapter_id: int) -> None:
        self.adapter(adapter_id)
        self.db["in_use"].insert({"adapter_id": adapter_id, "undone": 0, **_stamp()})

    def in_use_choices(self) -> list[dict]:
        """The choices not rolled back, newest first: the first is the adapter in use."""
        return list(self.db["in_use"].rows_where("undone = 0", order_by="id desc"))

    def undo_in_use(self, choice_id: int) -> bool:
        """Roll back one choice; False when it was rolled back already (two people pressing at once)."""
        cursor = self.db.execute("update in_use set undone = 1, undone_at = ?, undone_by = ? where id = ? and undone = 0",
                                 [now(), acting(), choice_id])
        self.db.conn.commit()
        return cursor.rowcount == 1
