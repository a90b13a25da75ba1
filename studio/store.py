"""The one SQLite database behind the studio: schema as migrations, small typed accessors.

WAL mode lets the web app and the worker processes read and write it at the same time.
"""

import contextlib
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


def _v2_jobs(db: sqlite_utils.Database) -> None:
    db["jobs"].create(
        {
            "id": int,
            "kind": str,  # train, evaluate, merge, mix
            "state": str,  # queued, running, succeeded, failed, cancelled, interrupted
            "name": str,
            "dataset_id": int,
            "base_model": str,
            "spec": str,
            "task_id": str,
            "cancel_requested": int,
            "worker": str,
            "heartbeat": float,
            "step": int,
            "total_steps": int,
            "error": str,
            "adapter_id": int,
            "created": str,
            "started": str,
            "finished": str,
        },
        pk="id",
        defaults={"cancel_requested": 0, "step": 0, "total_steps": 0},
    )
    db["jobs"].create_index(["state"])
    db["metrics"].create(
        {"job_id": int, "step": int, "epoch": float, "loss": float, "eval_loss": float, "learning_rate": float,
         "grad_norm": float, "tokens_per_second": float, "memory_mb": float, "seconds": float},
        pk=("job_id", "step"),
    )
    db["adapters"].create(
        {
            "id": int,
            "name": str,
            "job_id": int,
            "path": str,
            "base_model": str,
            "dataset_hash": str,
            "method": str,
            "spec": str,
            "summary": str,  # JSON: steps, final loss, tokens, seconds
            "status": str,  # complete or cancelled (a usable adapter of a stopped run)
            "parent_id": int,
            "created": str,
        },
        pk="id",
    )


def _v3_artifacts(db: sqlite_utils.Database) -> None:
    db["evaluations"].create(
        {
            "id": int,
            "adapter_id": int,
            "job_id": int,
            "dataset_id": int,
            "rows": int,  # validation rows the losses are measured on
            "base_loss": float,
            "adapter_loss": float,
            "base_perplexity": float,
            "adapter_perplexity": float,
            "base_exact": float,  # share of answers equal to the reference
            "adapter_exact": float,
            "base_rouge": float,  # mean ROUGE-L F1 against the reference
            "adapter_rouge": float,
            "created": str,
        },
        pk="id",
    )
    db["evaluations"].create_index(["adapter_id"])
    db["answers"].create(
        {"evaluation_id": int, "row": int, "prompt": str, "reference": str, "base_answer": str, "adapter_answer": str,
         "base_rouge": float, "adapter_rouge": float},
        pk=("evaluation_id", "row"),
    )
    db["merges"].create(
        {"id": int, "adapter_id": int, "job_id": int, "dtype": str, "path": str, "verified_prompts": int, "created": str},
        pk="id",
    )


def _v4_votes(db: sqlite_utils.Database) -> None:
    db["votes"].create(
        {
            "id": int,
            "a_key": str,  # what answered on each side: "base:bundled", "adapter:3", "model:/path"
            "a_label": str,
            "b_key": str,
            "b_label": str,
            "winner": str,  # a, b or tie
            "prompt": str,
            "created": str,
        },
        pk="id",
        not_null={"a_key", "b_key", "winner"},
    )


def _v5_utilisation(db: sqlite_utils.Database) -> None:
    db["metrics"].add_column("utilisation", float)


def _v6_unstopped_answers(db: sqlite_utils.Database) -> None:
    db["evaluations"].add_column("adapter_unstopped", int, not_null_default=0)


def _v7_sweeps(db: sqlite_utils.Database) -> None:
    db["jobs"].add_column("sweep", str)  # the name of the sweep a training job belongs to


def _v8_workers(db: sqlite_utils.Database) -> None:
    db["workers"].create({"id": str, "host": str, "pid": int, "device": str, "state": str, "job_id": int,
                          "heartbeat": float, "started": str}, pk="id")


def _v9_datasets_share_rows(db: sqlite_utils.Database) -> None:
    """Several datasets may hold the same rows (under other names or splits): the content hash is no longer unique."""
    db.execute("drop index if exists idx_datasets_content_hash")
    db["datasets"].create_index(["content_hash"], index_name="idx_datasets_content")


def _v10_job_notes(db: sqlite_utils.Database) -> None:
    db["jobs"].add_column("notes", str)  # what happened to a job on the way, one line each: "interrupted at step 7 …"


def _v11_exports(db: sqlite_utils.Database) -> None:
    db["exports"].create({"id": int, "adapter_id": int, "job_id": int, "format": str,  # gguf or lora
                          "path": str, "report": str, "created": str}, pk="id")


def _v12_feedback(db: sqlite_utils.Database) -> None:
    """Chat feedback: a vote keeps what it judged; a correction is the answer the user wanted instead."""
    db["votes"].add_column("a_turns", str)  # JSON: A's conversation up to the user's message both sides answered
    db["votes"].add_column("b_turns", str)  # B's: each side keeps its own conversation, so earlier answers differ
    db["votes"].add_column("a_answer", str)
    db["votes"].add_column("b_answer", str)
    db["votes"].add_column("generation", str)  # JSON: the settings both sides answered with
    db["votes"].add_column("dropped", int, not_null_default=0)  # left out of training by the user
    db["corrections"].create(
        {"id": int, "model_key": str, "model_label": str, "turns": str, "answer": str, "correction": str,
         "generation": str, "dropped": int, "created": str},
        pk="id", not_null={"model_key", "correction"}, defaults={"dropped": 0},
    )


def _v13_preference_metrics(db: sqlite_utils.Database) -> None:
    """What a preference (DPO) run reports beside its loss."""
    db["metrics"].add_column("reward_margin", float)  # how much more the adapter prefers chosen over rejected than its start did
    db["metrics"].add_column("reward_accuracy", float)  # share of pairs where it prefers the chosen answer more than its start did
    db["metrics"].add_column("chosen_logp", float)  # log-likelihood of the chosen answers: falling far means it unlearns them too


def _v14_test_sets(db: sqlite_utils.Database) -> None:
    db["datasets"].add_column("test_dataset_id", int)  # a user's own test file, saved as a dataset, attached to this one
    db["jobs"].add_column("test_dataset_id", int)  # ... or to one training job
    db["evaluations"].add_column("source", str, not_null_default="validation rows")  # what the answers were judged on
    db["evaluations"].add_column("overlap", int, not_null_default=0)  # test rows whose prompt is also a training row


def _v15_job_chains(db: sqlite_utils.Database) -> None:
    """A job that waits for another: it goes on the queue, continuing that job's adapter, once that job succeeds."""
    db["jobs"].add_column("after_job_id", int)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1_datasets, _v2_jobs, _v3_artifacts, _v4_votes, _v5_utilisation,
                                                             _v6_unstopped_answers, _v7_sweeps, _v8_workers,
                                                             _v9_datasets_share_rows, _v10_job_notes,
                                                             _v11_exports, _v12_feedback, _v13_preference_metrics,
                                                             _v14_test_sets, _v15_job_chains]


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
    test_dataset_id: int | None = None  # the user's own test file, when one is attached

    @classmethod
    def from_row(cls, row: dict) -> "DatasetRecord":
        return cls(**{**row, "mapping": json.loads(row["mapping"]), "path": Path(row["path"])})


@dataclass(frozen=True)
class JobRecord:
    id: int
    kind: str
    state: str
    name: str
    dataset_id: int | None
    base_model: str
    spec: dict
    task_id: str | None
    cancel_requested: int
    worker: str | None
    heartbeat: float | None
    step: int
    total_steps: int
    error: str | None
    adapter_id: int | None
    created: str
    started: str | None
    finished: str | None
    sweep: str | None
    notes: str | None = None  # one line per event the state alone does not tell (interrupted, resumed)
    test_dataset_id: int | None = None  # the user's own test file for this job's verdict
    after_job_id: int | None = None  # the job this one waits for (studio.feedback: corrections first, then DPO)

    @classmethod
    def from_row(cls, row: dict) -> "JobRecord":
        return cls(**{**row, "spec": json.loads(row["spec"])})

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED


FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class AdapterRecord:
    id: int
    name: str
    job_id: int | None
    path: Path
    base_model: str
    dataset_hash: str
    method: str
    spec: dict
    summary: dict
    status: str
    parent_id: int | None
    created: str

    @classmethod
    def from_row(cls, row: dict) -> "AdapterRecord":
        return cls(**{**row, "spec": json.loads(row["spec"]), "summary": json.loads(row["summary"]), "path": Path(row["path"])})


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    adapter_id: int
    job_id: int | None
    dataset_id: int
    rows: int
    base_loss: float
    adapter_loss: float
    base_perplexity: float
    adapter_perplexity: float
    base_exact: float
    adapter_exact: float
    base_rouge: float
    adapter_rouge: float
    created: str
    adapter_unstopped: int  # adapter answers that ran to the length limit without an end-of-sequence token
    source: str = "validation rows"  # what the answers were judged on: validation rows, a test file, training rows
    overlap: int = 0  # rows of a test file whose prompt is also a training row


@dataclass(frozen=True)
class ExportRecord:
    id: int
    adapter_id: int
    job_id: int | None
    format: str  # gguf (merged model for llama.cpp and Ollama) or lora (the adapter alone for vLLM and llama.cpp)
    path: Path  # the zip offered for download
    report: dict
    created: str

    @classmethod
    def from_row(cls, row: dict) -> "ExportRecord":
        return cls(**{**row, "path": Path(row["path"]), "report": json.loads(row["report"])})


@dataclass(frozen=True)
class MergeRecord:
    id: int
    adapter_id: int
    job_id: int | None
    dtype: str
    path: Path
    verified_prompts: int
    created: str

    @classmethod
    def from_row(cls, row: dict) -> "MergeRecord":
        return cls(**{**row, "path": Path(row["path"])})


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
                "content_hash = ? and name = ? and validation_fraction = ? and split_seed = ? and template = ?",
                [fields[k] for k in ("content_hash", "name", "validation_fraction", "split_seed", "template")], limit=1))
            if same:
                return DatasetRecord.from_row(same[0])
            table = self.db["datasets"].insert({**fields, "created": now()})
            return self.dataset(table.last_pk)

    def dataset(self, dataset_id: int) -> DatasetRecord:
        try:
            return DatasetRecord.from_row(self.db["datasets"].get(dataset_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no saved dataset with id {dataset_id}. Pick one from the list of saved datasets.") from None

    def find_dataset_by_hash(self, content_hash: str) -> DatasetRecord | None:
        """The first dataset saved with these rows."""
        rows = list(self.db["datasets"].rows_where("content_hash = ?", [content_hash], order_by="id", limit=1))
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

    def datasets(self) -> list[DatasetRecord]:
        return [DatasetRecord.from_row(r) for r in self.db["datasets"].rows_where(order_by="id desc")]

    # jobs

    def add_job(self, *, kind: str, name: str, dataset_id: int | None, base_model: str, spec: str, sweep: str | None = None) -> JobRecord:
        table = self.db["jobs"].insert({"kind": kind, "state": "queued", "name": name, "dataset_id": dataset_id,
                                        "base_model": base_model, "spec": spec, "sweep": sweep, "created": now()})
        return self.job(table.last_pk)

    def job(self, job_id: int) -> JobRecord:
        try:
            return JobRecord.from_row(self.db["jobs"].get(job_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no job {job_id}. Pick one from the Jobs list.") from None

    def jobs(self, states: tuple[str, ...] | None = None) -> list[JobRecord]:
        where = f"state in ({', '.join('?' * len(states))})" if states else None
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
        table = self.db["adapters"].insert({**fields, "created": now()})
        return self.adapter(table.last_pk)

    def adapter(self, adapter_id: int) -> AdapterRecord:
        try:
            return AdapterRecord.from_row(self.db["adapters"].get(adapter_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no adapter {adapter_id}. Pick one from the list of adapters.") from None

    def adapters(self) -> list[AdapterRecord]:
        return [AdapterRecord.from_row(r) for r in self.db["adapters"].rows_where(order_by="id desc")]

    def sweeps(self) -> list[str]:
        """Names of the sweeps, newest first."""
        rows = self.db.execute("select sweep from jobs where sweep is not null group by sweep order by max(id) desc").fetchall()
        return [row[0] for row in rows]

    def sweep_adapters(self, sweep: str) -> list[AdapterRecord]:
        """The adapters the jobs of a sweep produced so far."""
        rows = self.db.query("select adapters.* from adapters join jobs on adapters.job_id = jobs.id where jobs.sweep = ? "
                             "order by adapters.id", [sweep])
        return [AdapterRecord.from_row(r) for r in rows]

    def find_adapter(self, ref: str) -> AdapterRecord:
        """A registered adapter by id, by name (the newest of that name) or by its folder."""
        ref = str(ref).strip()
        folder = Path(ref).expanduser().resolve() if ref else None
        for adapter in self.adapters():
            if ref in (str(adapter.id), adapter.name) or adapter.path.resolve() == folder:
                return adapter
        raise NotFound(f"No registered adapter has the id, name or folder '{ref}'. "
                       "Give the id or name of an adapter listed in the studio (a training job registers it), or its folder.")

    # votes

    def add_vote(self, *, a_key: str, a_label: str, b_key: str, b_label: str, winner: str, prompt: str,
                 details: dict | None = None) -> int:
        """`details` holds what the vote judged (a_turns, b_turns, a_answer, b_answer, generation), stored as given."""
        table = self.db["votes"].insert({"a_key": a_key, "a_label": a_label, "b_key": b_key, "b_label": b_label,
                                         "winner": winner, "prompt": prompt, **(details or {}), "created": now()})
        return table.last_pk

    def add_correction(self, **fields) -> int:
        return self.db["corrections"].insert({**fields, "dropped": 0, "created": now()}).last_pk

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

    def add_evaluation(self, values: dict, answers: list[dict]) -> EvaluationRecord:
        """Record an evaluation and its answers together: both or neither."""
        with self.db.atomic():
            evaluation_id = self.db["evaluations"].insert({**values, "created": now()}).last_pk
            self.db["answers"].insert_all([{**a, "evaluation_id": evaluation_id} for a in answers], pk=("evaluation_id", "row"))
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

    # merged models

    def add_merge(self, **fields) -> MergeRecord:
        table = self.db["merges"].insert({**fields, "path": str(fields["path"]), "created": now()})
        return self.merge(table.last_pk)

    def merge(self, merge_id: int) -> MergeRecord:
        try:
            return MergeRecord.from_row(self.db["merges"].get(merge_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no merged model {merge_id}. Pick one from the list of merged models.") from None

    def merges(self, adapter_id: int | None = None) -> list[MergeRecord]:
        where = "adapter_id = ?" if adapter_id is not None else None
        return [MergeRecord.from_row(r) for r in self.db["merges"].rows_where(where, [adapter_id] if where else [], order_by="id desc")]

    # exports for other runtimes

    def add_export(self, **fields) -> ExportRecord:
        table = self.db["exports"].insert({**fields, "path": str(fields["path"]), "report": json.dumps(fields["report"]), "created": now()})
        return self.export(table.last_pk)

    def export(self, export_id: int) -> ExportRecord:
        try:
            return ExportRecord.from_row(self.db["exports"].get(export_id))
        except sqlite_utils.db.NotFoundError:
            raise NotFound(f"There is no export {export_id}. Pick one from the list of exports.") from None

    def exports(self, adapter_id: int | None = None) -> list[ExportRecord]:
        where = "adapter_id = ?" if adapter_id is not None else None
        return [ExportRecord.from_row(r) for r in self.db["exports"].rows_where(where, [adapter_id] if where else [], order_by="id desc")]
