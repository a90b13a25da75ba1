"""The SQLite store: migrated once, shared safely, honest about missing rows."""

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
