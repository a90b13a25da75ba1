"""Where an adapter came from, in words: the adapter it continued and what it learned from on the way.

The store keeps each adapter's parent and the job (so the dataset) that made it; a feedback
dataset names the votes and corrections it was made of (studio.feedback.items). Chat, Compare and the
model card show the same sentence, e.g. "from tickets (#1) via 6 votes and 2 corrections".
"""

from studio.store import AdapterRecord, DatasetRecord, Store, deleted_note


def lineage(store: Store, adapter: AdapterRecord) -> str | None:
    """The lineage of a registered adapter; None for one trained afresh (or imported)."""
    if adapter.parent_id is None:
        return None
    return describe(store, store.adapter(adapter.parent_id, deleted_too=True), _dataset_of(store, adapter))


def describe(store: Store, parent: AdapterRecord, dataset: DatasetRecord | None) -> str:
    """The lineage of an adapter that continues `parent` on `dataset`; said before it is registered, for its card.

    Steps of feedback training are followed back to the adapter they started from, so an adapter taught
    its corrections first and its votes next still names the adapter the user gave feedback on.
    """
    steps = [_step(dataset)]
    while parent.parent_id is not None and feedback_refs(_dataset_of(store, parent)):
        steps.insert(0, _step(_dataset_of(store, parent)))
        parent = store.adapter(parent.parent_id, deleted_too=True)
    return f"from {parent.name} (#{parent.id}){deleted_note(parent)} " + ", then ".join(steps)


def _step(dataset: DatasetRecord | None) -> str:
    refs = feedback_refs(dataset)
    if refs:
        return f"via {items_in_words(refs)}" + ("" if dataset.shape == "preference" else " as instruction rows")
    return f"trained further on '{dataset.name}'{deleted_note(dataset)}" if dataset else "trained further"


def _dataset_of(store: Store, adapter: AdapterRecord) -> DatasetRecord | None:
    """The dataset the adapter's training job learned from; None for a mix or an imported adapter."""
    if adapter.job_id is None:
        return None
    job = store.job(adapter.job_id)
    return store.dataset(job.dataset_id, deleted_too=True) if job.dataset_id is not None else None


FEEDBACK_SOURCE = "chat feedback: "  # a feedback dataset's source: this, then the refs of the items it holds


def count_of(number: int, noun: str) -> str:
    """'1 vote', '6 votes'."""
    return f"{number} {noun}{'s' if number != 1 else ''}"


def items_in_words(refs) -> str:
    """'6 votes and 2 corrections' for a list of refs."""
    kinds = [ref.split(":")[0] for ref in refs]
    return " and ".join(count_of(kinds.count(kind), kind) for kind in ("vote", "correction") if kind in kinds)


def feedback_refs(dataset: DatasetRecord | None) -> list[str]:
    """The votes and corrections a feedback dataset was made of; none for any other dataset, or none."""
    if dataset is None or dataset.format != "feedback" or not dataset.source_file.startswith(FEEDBACK_SOURCE):
        return []
    return dataset.source_file[len(FEEDBACK_SOURCE):].split(", ")
