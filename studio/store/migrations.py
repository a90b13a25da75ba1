"""The schema as migrations, oldest first: a database at version N runs MIGRATIONS[N:] on open."""

from typing import Callable

import sqlite_utils


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


def _v16_people(db: sqlite_utils.Database) -> None:
    """The people of a shared studio (studio.people.users) and who did what (studio.people.activity)."""
    db["users"].create({"name": str, "password_hash": str, "role": str, "created": str, "created_by": str},
                       pk="name", not_null={"password_hash", "role"})
    db["activity"].create({"id": int, "at": str, "person": str, "kind": str, "what": str}, pk="id",
                          not_null={"at", "person", "kind"})
    db["activity"].create_index(["person"])
    db["activity"].create_index(["kind"])


def _v17_authors(db: sqlite_utils.Database) -> None:
    """Who made each record (studio.store.authors); what was made before the studio knew people is "unknown"."""
    for table in ("datasets", "jobs", "adapters", "evaluations", "merges", "exports", "votes", "corrections"):
        db[table].add_column("created_by", str, not_null_default="unknown")


def _v18_in_use(db: sqlite_utils.Database) -> None:
    """The adapter in use, as a history (studio.adapters.in_use): each choice with who made it; a roll back
    marks the choice it undoes, so the one before is in use again."""
    db["in_use"].create({"id": int, "adapter_id": int, "created": str, "created_by": str, "undone": int,
                         "undone_at": str, "undone_by": str}, pk="id", not_null={"adapter_id", "created"},
                        defaults={"undone": 0})


def _v19_deleting(db: sqlite_utils.Database) -> None:
    """Deleting with lineage kept (studio.storage): a deleted record keeps its row, with who deleted it and when,
    so what points at it still names it; its files are gone. A dataset adapters were trained on is archived instead:
    hidden from the lists, its rows kept."""
    for table in ("datasets", "jobs", "adapters", "merges", "exports"):
        db[table].add_column("deleted", str)
        db[table].add_column("deleted_by", str)
    db["datasets"].add_column("archived", str)
    db["datasets"].add_column("archived_by", str)


def _v20_forgetting(db: sqlite_utils.Database) -> None:
    """What an adapter forgot (studio.evaluate.forgetting): per evaluation the ordinary requests asked and how many
    answers changed, and each answer of base and adapter; per dataset the team's own "must not change" prompts; and the
    base model's answers, asked once per base (studio.evaluate.forgetting.probe_key)."""
    for column in ("general_asked", "general_changed", "kept_asked", "kept_changed"):
        db["evaluations"].add_column(column, int, not_null_default=0)
    db["evaluations"].add_column("general_drift", float, not_null_default=0.0)
    db["probe_answers"].create({"evaluation_id": int, "row": int, "kind": str, "prompt": str, "base_answer": str,
                                "adapter_answer": str, "changed": int, "drift": float}, pk=("evaluation_id", "row"))
    db["datasets"].add_column("keep_prompts", str, not_null_default="[]")
    db["base_answers"].create({"key": str, "answers": str, "created": str}, pk="key")  # the same for every adapter of a base


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1_datasets, _v2_jobs, _v3_artifacts, _v4_votes, _v5_utilisation,
                                                             _v6_unstopped_answers, _v7_sweeps, _v8_workers,
                                                             _v9_datasets_share_rows, _v10_job_notes,
                                                             _v11_exports, _v12_feedback, _v13_preference_metrics,
                                                             _v14_test_sets, _v15_job_chains, _v16_people, _v17_authors,
                                                             _v18_in_use, _v19_deleting, _v20_forgetting]
