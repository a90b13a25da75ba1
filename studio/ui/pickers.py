"""The pickers' choices, read from the store: datasets, jobs, adapters, merged models, exports and chat models.
One module, so that a tab never imports another tab for them."""

from studio.adapters.in_use import in_use
from studio.adapters.lineage import lineage
from studio.models.catalog import BUNDLED_NAME
from studio.store import AdapterRecord, Store


def dataset_choices(store: Store) -> list[tuple[str, int]]:
    """Saved datasets as a picker's choices, newest first (the Train tab's too)."""
    return [(f"{d.name} ({d.rows} rows, #{d.id})", d.id) for d in store.datasets()]


def job_choices(store: Store) -> list[tuple[str, int]]:
    return [(f"#{j.id} {j.name} ({j.state})", j.id) for j in store.jobs()]


def adapters_in_use_first(store: Store) -> tuple[list[AdapterRecord], int | None]:
    """Every adapter, newest first but the adapter in use before all; and that adapter's id, if any."""
    current = in_use(store)
    chosen = current.adapter.id if current else None
    return sorted(store.adapters(), key=lambda a: a.id != chosen), chosen


def adapter_choices(store: Store) -> list[tuple[str, int]]:
    """Adapters as a picker's choices: the adapter in use first, marked so (Download, Merge, the exports)."""
    adapters, chosen = adapters_in_use_first(store)
    return [(f"#{a.id} {a.name} ({a.method}){' · in use' if a.id == chosen else ''}", a.id) for a in adapters]


def merged_choices(store: Store) -> list[tuple[str, int]]:
    names = {a.id: a.name for a in store.adapters()}
    return [(f"#{m.id} {names.get(m.adapter_id, '?')} merged ({m.dtype})", m.id) for m in store.merges()]


def export_choices(store: Store) -> list[tuple[str, int]]:
    names = {a.id: a.name for a in store.adapters()}
    return [(f"#{e.id} {names.get(e.adapter_id, '?')} {e.format}", e.id) for e in store.exports()]


def model_choices(store: Store) -> list[tuple[str, str]]:
    """The models Chat can answer with: the base, the adapter in use, the other adapters, merged models."""
    listed, chosen = adapters_in_use_first(store)
    adapters = [(f"{a.name} (adapter #{a.id}{', stopped early' if a.status == 'cancelled' else ''}{', in use' if a.id == chosen else ''})"
                 f"{f' - {origin}' if (origin := lineage(store, a)) else ''}", f"adapter:{a.id}") for a in listed]
    names = {a.id: a.name for a in store.adapters()}
    merged = [(f"{names.get(m.adapter_id, 'adapter')} merged ({m.dtype}, model #{m.id})", f"base:{m.path}") for m in store.merges()]
    return [(f"{BUNDLED_NAME} (base model)", "base:bundled")] + adapters + merged
