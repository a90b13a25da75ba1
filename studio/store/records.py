"""The typed records the store hands out, one per table, built from a row."""

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path


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
    created_by: str = "unknown"  # who saved it (studio.store.authors)
    deleted: str | None = None  # when its rows were erased (studio.storage.deleting); None while it is kept
    deleted_by: str | None = None
    archived: str | None = None  # when it was archived: out of the lists, rows kept for the adapters trained on it
    archived_by: str | None = None
    keep_prompts: tuple[str, ...] = ()  # the team's prompts whose answers its adapters must not change (studio.evaluate.forgetting)

    @classmethod
    def from_row(cls, row: dict) -> "DatasetRecord":
        return cls(**{**row, "mapping": json.loads(row["mapping"]), "path": Path(row["path"]),
                      "keep_prompts": tuple(json.loads(row.get("keep_prompts") or "[]"))})


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
    after_job_id: int | None = None  # the job this one waits for (studio.feedback.items: corrections first, then DPO)
    created_by: str = "unknown"  # who queued it
    deleted: str | None = None  # when it left the Jobs list and its folder was erased
    deleted_by: str | None = None

    @classmethod
    def from_row(cls, row: dict) -> "JobRecord":
        return cls(**{**row, "spec": json.loads(row["spec"])})

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED


FINISHED = ("succeeded", "failed", "cancelled")


def deleted_note(record) -> str:
    """' (deleted by ana on 2026-12-03)' for a deleted record, '' for a kept one: what its name is shown with."""
    return f" (deleted by {record.deleted_by} on {record.deleted[:10]})" if record.deleted else ""


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
    created_by: str = "unknown"  # who queued the job that made it, or imported it
    deleted: str | None = None  # when its files were erased; the record stays for the lineage of what came from it
    deleted_by: str | None = None

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
    created_by: str = "unknown"
    general_asked: int = 0  # ordinary requests asked of base and adapter (studio.evaluate.forgetting)
    general_changed: int = 0  # of them, answered otherwise by the adapter
    general_drift: float = 0.0  # nats a token the base's own answers lost under the adapter
    kept_asked: int = 0  # the dataset's must-not-change prompts asked
    kept_changed: int = 0


@dataclass(frozen=True)
class ExportRecord:
    id: int
    adapter_id: int
    job_id: int | None
    format: str  # gguf (merged model for llama.cpp and Ollama) or lora (the adapter alone for vLLM and llama.cpp)
    path: Path  # the zip offered for download
    report: dict
    created: str
    created_by: str = "unknown"
    deleted: str | None = None
    deleted_by: str | None = None

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
    created_by: str = "unknown"
    deleted: str | None = None
    deleted_by: str | None = None

    @classmethod
    def from_row(cls, row: dict) -> "MergeRecord":
        return cls(**{**row, "path": Path(row["path"])})
