"""Disk space: what each kept artifact takes in STUDIO_HOME, and what can be cleared without losing anything
anyone can still use — intermediate checkpoints of finished jobs, the token cache, download zips over an hour
old, and what interrupted writes and deletions left behind.
"""

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from studio.people import activity
from studio.settings import Settings
from studio.store import FINISHED, Store

DOWNLOAD_ZIP_HOURS = 1  # a download zip older than this was fetched long ago, or never will be
LEFTOVER_MINUTES = 10  # a half-written file untouched this long belongs to a write that died


@dataclass(frozen=True)
class Stored:
    """One kept artifact on disk."""

    ref: str  # "adapter:3": what studio.storage.deleting deletes
    what: str  # in words: "adapter 'tickets-lora' (ana)"
    path: Path
    bytes: int


@dataclass(frozen=True)
class Clearable:
    """Files that are safe to clear, of one kind."""

    what: str  # in words, with why it is safe
    paths: list[Path]
    bytes: int


def size_of(path: Path) -> int:
    """Bytes a file or folder takes (0 when it is gone)."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except FileNotFoundError:  # removed while being counted
                pass
    return total


def stored(store: Store, settings: Settings) -> list[Stored]:
    """Every kept dataset, adapter, merged model, export and job folder with its size, largest first."""
    found = [Stored(f"dataset:{d.id}", f"dataset '{d.name}' ({d.created_by}{', archived' if d.archived else ''})", d.path, size_of(d.path))
             for d in store.datasets(archived_too=True)]
    found += [Stored(f"adapter:{a.id}", f"adapter '{a.name}' ({a.created_by})", a.path, size_of(a.path)) for a in store.adapters()]
    found += [Stored(f"merge:{m.id}", f"merged model {m.path.name} ({m.created_by})", m.path, size_of(m.path)) for m in store.merges()]
    found += [Stored(f"export:{e.id}", f"export {e.path.name} ({e.created_by})", e.path, size_of(e.path)) for e in store.exports()]
    for job in store.jobs():
        folder = settings.jobs_dir / str(job.id)
        if folder.exists():
            found.append(Stored(f"job:{job.id}", f"job '{job.name}' ({job.state}, {job.created_by}): checkpoints and log", folder,
                                size_of(folder)))
    return sorted(found, key=lambda s: -s.bytes)


def clearable(store: Store, settings: Settings, downloads_dir: Path | None = None) -> list[Clearable]:
    """What is safe to clear now. The token cache and half-written files only while no job is queued or running:
    a job may be reading the one or writing the other."""
    kinds = []
    checkpoints = [settings.jobs_dir / str(j.id) / "checkpoints" for j in store.jobs(FINISHED)]  # studio.train.recipe writes them
    kinds.append(_kind("Intermediate checkpoints of finished jobs (their adapters are saved apart; only an interrupted job resumes "
                       "from checkpoints)", [p for p in checkpoints if p.exists()]))
    idle = not store.jobs(("queued", "running", "interrupted"))
    if idle:
        kinds.append(_kind("The token cache (tokenised datasets, made again by the next training on them)",
                           [settings.token_cache_dir] if settings.token_cache_dir.exists() else []))
        kinds.append(_kind(f"Half-written files of interrupted writes, untouched for {LEFTOVER_MINUTES} minutes", _leftovers(settings.home)))
    trash = settings.home / ".trash"
    kinds.append(_kind("What a deletion that failed left aside", list(trash.iterdir()) if trash.exists() else []))
    if downloads_dir is not None and downloads_dir.exists():
        old = time.time() - DOWNLOAD_ZIP_HOURS * 3600
        kinds.append(_kind(f"Download zips made over {DOWNLOAD_ZIP_HOURS} hour ago", [p for p in downloads_dir.rglob("*.zip")
                                                                                     if p.stat().st_mtime < old]))
    return [k for k in kinds if k.paths]


def clear(store: Store, settings: Settings, person: str, downloads_dir: Path | None = None) -> int:
    """Clear what `clearable` lists now; returns the bytes freed."""
    freed = 0
    for kind in clearable(store, settings, downloads_dir):
        for path in kind.paths:
            freed += size_of(path)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    activity.record(store, person, "storage", f"cleared {freed / 2**20:,.1f} MB of checkpoints, caches and leftovers")
    return freed


def _kind(what: str, paths: list[Path]) -> Clearable:
    return Clearable(what, paths, sum(size_of(p) for p in paths))


def _leftovers(home: Path) -> list[Path]:
    """Staging folders and partial files (studio.staging) that no live write has touched for a while."""
    old = time.time() - LEFTOVER_MINUTES * 60
    found = [*home.rglob(".staging-*"), *home.rglob(".*.partial*")]
    return [p for p in found if p.exists() and p.stat().st_mtime < old and not any(q in p.parents for q in found)]
