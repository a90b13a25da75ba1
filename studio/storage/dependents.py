"""What depends on a record, and what uses it now: read before anything is deleted (studio.storage.deleting),
so the confirmation lists it, and nothing a job or another record needs goes from under it.

An item is what a person can delete: a dataset, adapter, merged model, export, job, vote or correction,
named by a ref such as "adapter:3".
"""

from dataclasses import dataclass

from studio.adapters.in_use import in_use
from studio.adapters.lineage import feedback_refs
from studio.errors import Gone, NotFound
from studio.store import FINISHED, JobRecord, Store

KINDS = ("dataset", "adapter", "merge", "export", "job", "vote", "correction")
UNFINISHED = ("queued", "running", "interrupted")  # an interrupted job resumes: it still uses what it was given


@dataclass(frozen=True)
class Item:
    kind: str  # one of KINDS, or "evaluation" (a part of an adapter or a dataset, erased with it)
    id: int
    name: str
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.id}"

    def __str__(self) -> str:
        return f"{self.kind} #{self.id} '{self.name}'"


@dataclass(frozen=True)
class Dependents:
    """What deleting an item touches."""

    item: Item
    parts: list[Item]  # erased with it: an adapter's merged models, exports, evaluations and training job
    came_from_it: list[Item]  # adapters trained on a dataset, with their parts: erased only when asked, else it is archived
    kept: list[str]  # what points at it and stays, in words
    blockers: list[str]  # why it cannot be deleted now, in words

    def describe(self) -> str:
        """The confirmation, in Markdown."""
        lines = [f"**Delete {self.item}** (made by {self.item.created_by})"]
        if self.blockers:
            lines += ["", "It cannot be deleted now:", *[f"- {b}" for b in self.blockers]]
            return "\n".join(lines)
        if self.parts:
            lines += ["", "Erased with it:", *[f"- {p}" for p in self.parts]]
        if self.came_from_it:
            lines += ["", "Trained on it (kept unless an admin also erases what came from it; then the dataset is archived: "
                      "out of the lists, its rows kept for these):", *[f"- {c}" for c in self.came_from_it]]
        if self.kept:
            lines += ["", "Kept:", *[f"- {k}" for k in self.kept]]
        if not (self.parts or self.came_from_it or self.kept):
            lines += ["", "Nothing else depends on it."]
        return "\n".join(lines)


def parse_ref(ref: str) -> tuple[str, int]:
    """('adapter', 3) from 'adapter:3'; NotFound, in words, for anything else."""
    kind, _, number = str(ref).strip().partition(":")
    if kind not in KINDS or not number.strip().isdigit():
        raise NotFound(f"'{ref}' names nothing the studio deletes: write KIND:ID, the kind one of {', '.join(KINDS)} "
                       "(for example adapter:3), as the Storage tab and `python -m studio storage` list them.")
    return kind, int(number)


def find_item(store: Store, kind: str, item_id: int) -> Item:
    """The item a kind and id name: NotFound when there is none, Gone when it was deleted already."""
    if kind == "dataset":
        dataset = store.dataset(item_id)
        return Item(kind, dataset.id, dataset.name, dataset.created_by)
    if kind == "adapter":
        adapter = store.adapter(item_id)
        return Item(kind, adapter.id, adapter.name, adapter.created_by)
    if kind == "merge":
        merge = store.merge(item_id)
        return Item(kind, merge.id, merge.path.name, merge.created_by)
    if kind == "export":
        export = store.export(item_id)
        return Item(kind, export.id, export.path.name, export.created_by)
    if kind == "job":
        job = store.job(item_id)
        if job.deleted:
            raise Gone(f"Job #{job.id} '{job.name}' was deleted by {job.deleted_by} on {job.deleted[:10]}.")
        return Item(kind, job.id, job.name, job.created_by)
    if kind in ("vote", "correction"):
        rows = list(store.db[f"{kind}s"].rows_where("id = ?", [item_id]))
        if not rows:
            raise NotFound(f"There is no {kind} #{item_id}: it may have been deleted already. See the Feedback panel in Chat.")
        return _feedback_item(kind, rows[0])
    parse_ref(kind)  # raises the message that lists the kinds
    raise AssertionError(kind)


def feedback_items(store: Store) -> list[Item]:
    """Every vote and correction, as items a person can delete."""
    return [_feedback_item("vote", v) for v in store.votes()] + [_feedback_item("correction", c) for c in store.corrections()]


def _feedback_item(kind: str, row: dict) -> Item:
    """A vote is named by its prompt, a correction by its corrected answer."""
    return Item(kind, row["id"], _short((row["prompt"] if kind == "vote" else row["correction"]) or ""), row["created_by"])


def dependents_of(store: Store, item: Item) -> Dependents:
    unfinished = store.jobs(UNFINISHED)
    blockers = [f"job #{j.id} '{j.name}' ({j.state}) uses it: wait for it to finish, or cancel it in the Jobs tab"
                for j in unfinished if _uses(j, item)]
    if item.kind == "adapter":
        return _of_adapter(store, item, blockers)
    if item.kind == "dataset":
        return _of_dataset(store, item, blockers)
    if item.kind == "job":
        job = store.job(item.id)
        if job.state not in FINISHED:
            blockers.append(f"it is {job.state}: cancel it in the Jobs tab first")
        kept = []
        if job.kind == "train" and job.adapter_id and not store.adapter(job.adapter_id, deleted_too=True).deleted:
            kept.append(f"{_adapter_item(store, job.adapter_id)}, which it trained (delete the adapter to erase it)")
        return Dependents(item, [], [], kept, blockers)
    if item.kind in ("vote", "correction"):
        made_from = [d for d in store.datasets(archived_too=True) if item.ref in feedback_refs(d)]
        kept = [f"dataset #{d.id} '{d.name}', made from it for Train on feedback, keeps its copy" for d in made_from]
        return Dependents(item, [], [], kept, blockers)
    return Dependents(item, [], [], [], blockers)  # a merged model or an export: nothing is made from them


def _of_adapter(store: Store, item: Item, blockers: list[str]) -> Dependents:
    adapter = store.adapter(item.id)
    current = in_use(store)
    if current and current.adapter.id == adapter.id:
        blockers.append(f"it is the adapter in use ({current.describe()}): put another one in use, or roll back, in the Compare tab first")
    parts = _parts_of_adapter(store, adapter.id)
    children = [a for a in store.adapters() if a.parent_id == adapter.id]
    kept = [f"adapter #{a.id} '{a.name}', continued from it: it keeps its own weights, and its lineage names this one" for a in children]
    return Dependents(item, parts, [], kept, blockers)


def _parts_of_adapter(store: Store, adapter_id: int) -> list[Item]:
    adapter = store.adapter(adapter_id, deleted_too=True)
    parts = [Item("merge", m.id, m.path.name, m.created_by) for m in store.merges(adapter_id)]
    parts += [Item("export", e.id, e.path.name, e.created_by) for e in store.exports(adapter_id)]
    parts += [Item("evaluation", row["id"], f"on {row['rows']} rows", row["created_by"])
              for row in store.db["evaluations"].rows_where("adapter_id = ?", [adapter_id], order_by="id")]
    if adapter.job_id is not None and not store.job(adapter.job_id).deleted:
        job = store.job(adapter.job_id)
        parts.append(Item("job", job.id, f"{job.name}, which trained it (its checkpoints and log)", job.created_by))
    return parts


def _of_dataset(store: Store, item: Item, blockers: list[str]) -> Dependents:
    dataset = store.dataset(item.id)
    parts = [Item("evaluation", row["id"], f"of adapter #{row['adapter_id']}, with answers to its rows", row["created_by"])
             for row in store.db["evaluations"].rows_where("dataset_id = ?", [dataset.id], order_by="id")]
    came_from_it = []
    for job in store.jobs(FINISHED):
        if dataset.id not in (job.dataset_id, job.test_dataset_id):
            continue
        adapter = store.adapter(job.adapter_id, deleted_too=True) if job.kind == "train" and job.adapter_id else None
        if adapter is None or adapter.deleted:  # a run that left no adapter: its folder goes with the data
            parts.append(Item("job", job.id, f"{job.name} ({job.state})", job.created_by))
        elif job.dataset_id == dataset.id:
            came_from_it += [Item("adapter", adapter.id, adapter.name, adapter.created_by), *_parts_of_adapter(store, adapter.id)]
    came_from_it = [c for c in came_from_it if c.ref not in {p.ref for p in parts}]
    kept = [f"dataset #{d.id} '{d.name}', which it was the test file of: judged on its own validation rows again"
            for d in store.datasets(archived_too=True) if d.test_dataset_id == dataset.id]
    kept += [f"dataset #{d.id} '{d.name}' has the same rows: their file stays on disk for it"
             for d in store.datasets(archived_too=True) if d.path == dataset.path and d.id != dataset.id]
    return Dependents(item, parts, came_from_it, kept, blockers)


def _uses(job: JobRecord, item: Item) -> bool:
    """Whether an unfinished job needs the item: the data it trains or is judged on, or the adapter it starts from."""
    spec = job.spec
    if item.kind == "dataset":
        return item.id in (job.dataset_id, job.test_dataset_id, spec.get("test_dataset_id"))
    if item.kind == "adapter":
        return item.id in (spec.get("adapter_id"), spec.get("start_adapter_id"), *spec.get("adapter_ids", []))
    return False


def _adapter_item(store: Store, adapter_id: int) -> Item:
    adapter = store.adapter(adapter_id)
    return Item("adapter", adapter.id, adapter.name, adapter.created_by)


def _short(text: str, length: int = 48) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[:length - 1] + "…"
