"""Deleting, with lineage kept safe: a deleted dataset, adapter, merged model, export or job keeps its row
(its name, who made it, who deleted it and when) so that what points at it still names it, and its files
are erased; votes and corrections are erased outright.

A dataset that adapters were trained on is archived instead (out of the lists, rows kept, so each adapter
still says where it came from) unless an admin erases what came from it too. Nothing a queued or running
job uses is deleted. Everything is decided and written in one write transaction, so of two people deleting
or using the same thing at once one wins and the other is told; the files are first moved aside, and moved
back if anything fails, so nothing is left half-deleted.
"""

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from studio.errors import DeleteRefused
from studio.people import activity
from studio.people.roles import NotAllowed, can, require
from studio.settings import Settings
from studio.storage.dependents import Dependents, Item, dependents_of, find_item, parse_ref
from studio.storage.disk import size_of
from studio.store import Store, now


@dataclass(frozen=True)
class Deletion:
    """What a deletion did."""

    item: Item
    archived: bool  # a dataset adapters were trained on: out of the lists, its rows kept
    erased: list[Item]
    freed_bytes: int
    left_in_place: list[Path]  # files outside STUDIO_HOME (an adapter registered from a folder of the user's own)

    def describe(self) -> str:
        if self.archived:
            return (f"Archived {self.item}: it is out of the lists, and its rows stay on disk for the adapters trained on it. "
                    "To erase it, an admin deletes it again with what came from it.")
        others = [e for e in self.erased if e != self.item]
        text = f"Deleted {self.item}" + (f" with {len(others)} record{'s' * (len(others) != 1)} that went with it" if others else "")
        text += f": {self.freed_bytes / 2**20:,.1f} MB freed."
        if self.left_in_place:
            text += " Left in place, outside the studio's folder: " + ", ".join(str(p) for p in self.left_in_place) + "."
        return text


def check_deletion(store: Store, ref: str) -> Dependents:
    """What deleting `ref` would touch, for the confirmation."""
    return dependents_of(store, find_item(store, *parse_ref(ref)))


def delete(store: Store, settings: Settings, ref: str, *, person: str, role: str, with_what_came_from_it: bool = False) -> Deletion:
    """Delete the item `ref` names ("adapter:3"), as `person` with `role`: a trainer what they made, an admin anything,
    and only an admin what came from it too. Raises NotAllowed, DeleteRefused, or Gone when someone deleted it first."""
    require(person, role, "delete")
    if with_what_came_from_it:
        require(person, role, "delete_any")
    trash = settings.home / ".trash" / uuid.uuid4().hex
    moved: list[tuple[Path, Path]] = []
    try:
        with store.db.atomic():  # the write lock, taken at once: decided and written as one
            found = check_deletion(store, ref)
            item = found.item
            if item.created_by != person and not can(role, "delete_any"):
                raise NotAllowed(f"{item} was made by {item.created_by}: a trainer deletes only what they made. Ask an admin.")
            if found.blockers:
                raise DeleteRefused(f"{item} cannot be deleted now: " + "; ".join(found.blockers) + ".")
            if item.kind == "dataset" and found.came_from_it and not with_what_came_from_it:
                store.db["datasets"].update(item.id, {"archived": now(), "archived_by": person})
                activity.record(store, person, "delete", f"archived {item} (adapters were trained on it)")
                return Deletion(item, True, [], 0, [])
            everything = [item, *found.parts, *(found.came_from_it if with_what_came_from_it else [])]
            erased = list({part.ref: part for part in everything}.values())
            files = [path for part in erased for path in _erase_record(store, settings, part, person)]
            inside = [p for p in files if p.exists() and p.resolve().is_relative_to(settings.home.resolve())]
            moved += [_move_aside(path, trash / f"{number}-{path.name}") for number, path in enumerate(inside)]
            if any(part.kind == "dataset" for part in erased) and settings.token_cache_dir.exists():
                moved.append(_move_aside(settings.token_cache_dir, trash / "encoded"))  # tokenised rows: rebuilt by the next training
            activity.record(store, person, "delete", f"deleted {item}" + "".join(f", {p}" for p in erased[1:]))
    except BaseException:
        for path, aside in reversed(moved):
            aside.rename(path)
        raise
    freed = size_of(trash)
    shutil.rmtree(trash, ignore_errors=True)
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the erased rows leave the write-ahead log too
    outside = [p for p in files if p.exists() and not p.resolve().is_relative_to(settings.home.resolve())]
    return Deletion(item, False, erased, freed, outside)


def _erase_record(store: Store, settings: Settings, item: Item, person: str) -> list[Path]:
    """Mark one record deleted (or erase its row) and return the files that go with it."""
    deleted = {"deleted": now(), "deleted_by": person}
    if item.kind == "dataset":
        dataset = store.dataset(item.id)
        store.db["datasets"].update(item.id, {**deleted, "keep_prompts": "[]"})
        store.db.execute("UPDATE datasets SET test_dataset_id = NULL WHERE test_dataset_id = ?", [item.id])
        shared = store.db.execute("SELECT count(*) FROM datasets WHERE path = ? AND deleted IS NULL", [str(dataset.path)]).fetchone()[0]
        return [] if shared else [dataset.path]
    if item.kind == "adapter":
        path = store.adapter(item.id).path
        store.db["adapters"].update(item.id, deleted)
        store.db.execute("UPDATE in_use SET undone = 1, undone_at = ?, undone_by = ? WHERE adapter_id = ? AND undone = 0",
                         [deleted["deleted"], person, item.id])  # a roll back never lands on it
        return [path]
    if item.kind in ("merge", "export"):
        path = (store.merge if item.kind == "merge" else store.export)(item.id).path
        store.db[f"{item.kind}s"].update(item.id, deleted)
        return [path]
    if item.kind == "job":
        store.db["jobs"].update(item.id, deleted)
        store.db["metrics"].delete_where("job_id = ?", [item.id])
        return [settings.jobs_dir / str(item.id)]
    if item.kind == "evaluation":
        store.db["answers"].delete_where("evaluation_id = ?", [item.id])
        store.db["probe_answers"].delete_where("evaluation_id = ?", [item.id])
        store.db["evaluations"].delete(item.id)
        return []
    store.db[f"{item.kind}s"].delete(item.id)  # a vote or a correction: its text is what is deleted
    return []


def _move_aside(path: Path, aside: Path) -> tuple[Path, Path]:
    aside.parent.mkdir(parents=True, exist_ok=True)
    path.rename(aside)
    return path, aside
