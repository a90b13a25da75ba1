"""The adapter in use: the one adapter a team has chosen to serve, with who chose it and when.

Every choice is kept. Rolling back marks the newest choice undone, so the adapter chosen before it
is in use again, and pressing it again goes one further back. Chat opens with the adapter in use,
and the pickers of Download, Merge and the exports offer it first (studio.ui.pickers).
"""

from dataclasses import dataclass

from studio.errors import InUseError
from studio.store import AdapterRecord, Store


@dataclass(frozen=True)
class InUse:
    """One choice of the adapter in use."""

    choice_id: int
    adapter: AdapterRecord
    since: str  # UTC, ISO 8601
    chosen_by: str

    def describe(self) -> str:
        return f"In use since {self.since[:16].replace('T', ' ')} UTC, chosen by {self.chosen_by}."


def history(store: Store) -> list[InUse]:
    """The choices not rolled back, newest first: the first is in use, the second is what a roll back brings back."""
    return [InUse(row["id"], store.adapter(row["adapter_id"]), row["created"], row["created_by"]) for row in store.in_use_choices()]


def in_use(store: Store) -> InUse | None:
    """The adapter in use, or None when none was chosen."""
    choices = history(store)
    return choices[0] if choices else None


def put_in_use(store: Store, adapter_id: int) -> InUse:
    """Make an adapter the one in use; the one before stays in the history, one roll back away.

    Raises NotFound for an unknown adapter, InUseError for one already in use or one that did not finish training."""
    adapter = store.adapter(adapter_id)
    current = in_use(store)
    if current and current.adapter.id == adapter.id:
        raise InUseError(f"Adapter #{adapter.id} '{adapter.name}' is in use already. {current.describe()}")
    if adapter.status != "complete":
        raise InUseError(f"Adapter #{adapter.id} '{adapter.name}' stopped before the end of its training ({adapter.status}), "
                         "so it cannot be the one in use. Train it to the end (Train longer in the Jobs tab), then choose it.")
    store.add_in_use(adapter.id)
    return in_use(store)


def roll_back(store: Store) -> InUse:
    """Undo the newest choice: the adapter in use before it is in use again. Raises InUseError when there is none."""
    choices = history(store)
    if len(choices) < 2:
        raise InUseError("There is no earlier adapter in use to go back to." if choices
                         else "No adapter is in use yet: choose one first.")
    if not store.undo_in_use(choices[0].choice_id):
        raise InUseError("Someone rolled back the adapter in use at the same moment; see which one is in use now.")
    return in_use(store)
