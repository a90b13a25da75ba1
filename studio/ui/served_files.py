"""The studio's private folder for files it serves to the page (uploads, download zips).

Uploads may hold personal data and merged-model zips are large, so nothing is left behind: the
folder is removed at every ordinary stop, a folder a crashed studio left is removed at the next
start (its name carries its owner's process id), and download zips are deleted a short while
after they were made.
"""

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

PREFIX = "adapter-studio-web-"
DOWNLOAD_LIFETIME_S = 600  # a download zip is deleted this long after it was made
SWEEP_EVERY_S = 60
LEGACY_IDLE_S = 24 * 3600


def make_web_folder(parent: Path | None = None) -> Path:
    """A new folder (mode 0700) named after this process, after removing those of studios no longer running."""
    parent = Path(parent or tempfile.gettempdir())
    remove_orphans(parent)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))


def remove_orphans(parent: Path) -> list[Path]:
    """Remove this user's web folders whose studio is no longer running; returns the folders removed.

    A folder whose name carries no process id (made before names carried one) is removed once untouched for a day.
    """
    removed = []
    for folder in sorted(parent.glob(f"{PREFIX}*")):
        if folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == os.getuid() and not _owner_alive(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _owner_alive(folder: Path) -> bool:
    pid = folder.name[len(PREFIX):].split("-")[0]
    if not pid.isdigit():  # named before names carried a process id: its studio may still run, unless it is long untouched
        return time.time() - max((p.stat().st_mtime for p in [folder, *folder.rglob("*")]), default=0) < LEGACY_IDLE_S
    if int(pid) == os.getpid():  # this process has not made its folder yet: a namesake is a leftover
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's process
        return True
    return True


def remove_stale_files(folder: Path, max_age_s: float = DOWNLOAD_LIFETIME_S) -> list[Path]:
    """Delete the files under `folder` made more than `max_age_s` ago; a download under way keeps its open file."""
    cutoff = time.time() - max_age_s
    stale = [p for p in folder.rglob("*") if p.is_file() and p.stat().st_mtime < cutoff] if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def sweep_downloads(folder: Path, max_age_s: float = DOWNLOAD_LIFETIME_S, every_s: float = SWEEP_EVERY_S) -> threading.Thread:
    """Delete old download zips in a background thread for as long as the studio runs."""
    def sweep() -> None:
        while True:
            remove_stale_files(folder, max_age_s)
            time.sleep(every_s)

    thread = threading.Thread(target=sweep, name="download-sweeper", daemon=True)
    thread.start()
    return thread
