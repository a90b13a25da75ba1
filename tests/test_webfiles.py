"""The studio's private web folder: nothing it served stays on disk once it is no longer needed."""

import os
import subprocess
import sys
import time

from studio.ui.served_files import PREFIX, make_web_folder, remove_stale_files


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_crashed_studios_folder_is_removed_at_the_next_start_and_a_running_ones_kept(tmp_path):
    crashed = tmp_path / f"{PREFIX}{dead_pid()}-abc"
    running = tmp_path / f"{PREFIX}{os.getppid()}-def"
    legacy_recent, legacy_old = tmp_path / f"{PREFIX}recent", tmp_path / f"{PREFIX}old"
    for folder in (crashed, running, legacy_recent, legacy_old):
        folder.mkdir()
        (folder / "upload.jsonl").write_text("{}")
    day_ago = time.time() - 2 * 24 * 3600
    for path in (legacy_old / "upload.jsonl", legacy_old):
        os.utime(path, (day_ago, day_ago))

    mine = make_web_folder(tmp_path)

    assert not crashed.exists() and not legacy_old.exists()
    assert running.exists() and legacy_recent.exists() and mine.name.startswith(f"{PREFIX}{os.getpid()}-")


def test_download_zips_are_deleted_a_while_after_they_were_made(tmp_path):
    old, new = tmp_path / "adapter-1.zip", tmp_path / "adapter-2.zip"
    old.write_bytes(b"zip")
    new.write_bytes(b"zip")
    os.utime(old, (time.time() - 700, time.time() - 700))
    assert remove_stale_files(tmp_path, max_age_s=600) == [old]
    assert not old.exists() and new.exists()
