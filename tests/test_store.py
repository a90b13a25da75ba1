"""The SQLite store: migrated once, shared safely, honest about missing rows."""

import sqlite3
import threading
import time

import pytest

from studio.errors import NotFound
from studio.store import MIGRATIONS, Store


def test_opening_twice_migrates_once(tmp_path):
    Store(tmp_path / "s.db")
    store = Store(tmp_path / "s.db")
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.journal_mode == "wal"


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(NotFound, match="no saved dataset with id 9"):
        Store(tmp_path / "s.db").dataset(9)


def test_the_store_can_be_used_from_other_threads(tmp_path):
    import threading

    store = Store(tmp_path / "s.db")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(store.datasets()))
    thread.start()
    thread.join()
    assert seen == [[]]


def test_a_transaction_that_reads_first_waits_for_another_writer_instead_of_failing(tmp_path):
    first, second = Store(tmp_path / "s.db"), Store(tmp_path / "s.db")
    job = first.add_job(kind="train", name="j", dataset_id=None, base_model="bundled", spec="{}")
    heartbeat = threading.Thread(target=lambda: second.record_worker("w", state="idle", heartbeat=1.0))
    with first.db.atomic():
        assert first.db["metrics"].exists()  # a read: with a deferred BEGIN the write below could no longer wait
        heartbeat.start()
        time.sleep(0.5)  # the other writer's turn: it waits for this transaction rather than writing in between
        first.add_metrics(job.id, 1, {"loss": 1.0})
    heartbeat.join()
    assert [m["loss"] for m in first.metrics(job.id)] == [1.0] and second.workers()[0]["state"] == "idle"


def test_two_processes_opening_a_new_database_at_once_migrate_it_once(tmp_path):
    path = tmp_path / "s.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=wal")
    writer.execute("BEGIN IMMEDIATE")  # another process busy writing: both openers read version 0, then wait
    errors = []
    openers = [threading.Thread(target=lambda: _open_or_record(path, errors)) for _ in range(2)]
    for opener in openers:
        opener.start()
    time.sleep(1)
    writer.execute("COMMIT")
    for opener in openers:
        opener.join()
    assert errors == [] and Store(path).db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def _open_or_record(path, errors: list) -> None:
    try:
        Store(path)
    except Exception as error:  # noqa: BLE001 - the test reports what an opener ran into
        errors.append(error)


def test_records_made_before_the_studio_knew_people_are_by_unknown_and_new_ones_by_whoever_acts(tmp_path):
    import sqlite_utils

    from studio.store.authors import acting_as

    path = tmp_path / "studio.db"
    before = MIGRATIONS[:[m.__name__ for m in MIGRATIONS].index("_v17_authors")]  # the schema before authors, with a job in it
    db = sqlite_utils.Database(path)
    for migration in before:
        migration(db)
    db.execute("INSERT INTO jobs (kind, state, name, base_model, spec, created) VALUES ('train', 'queued', 'old', 'bundled', '{}', 'then')")
    db.execute(f"PRAGMA user_version = {len(before)}")
    db.conn.commit()
    db.close()
    store = Store(path)
    assert store.jobs()[0].created_by == "unknown"
    with acting_as("ana"):
        job = store.add_job(kind="train", name="new", dataset_id=None, base_model="bundled", spec="{}")
    assert job.created_by == "ana" and store.job(job.id).created == job.created
