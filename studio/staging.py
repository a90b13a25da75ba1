"""Writing beside, then renaming: whoever reads a folder or file the studio writes sees the old one or
the whole new one, never half of one, even when the process dies mid-write.

Every artifact the studio writes (adapters, merged models, exports, the bundled model, datasets,
the token cache, download zips) goes through these three functions.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """An empty folder beside `target` to write into; it becomes `target` when the block ends without
    an error (replacing an old `target`) and is removed when the block fails."""
    with scratch_folder(target.parent) as staging:
        yield staging
        move_into_place(staging, target)


@contextmanager
def scratch_folder(parent: Path) -> Iterator[Path]:
    """A working folder in `parent` (the target's disk, so a rename out of it is one step), removed when the block ends."""
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def move_into_place(folder: Path, target: Path) -> None:
    """Rename a finished folder to `target`, replacing an old one (which is removed only at this last moment)."""
    if target.exists():
        shutil.rmtree(target)
    folder.rename(target)


@contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """A path beside `target` to write one file to (it keeps target's suffix, which some writers insist on);
    it replaces `target` in one step when the block ends without an error and is removed when it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.{os.getpid()}.partial{target.suffix}")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
