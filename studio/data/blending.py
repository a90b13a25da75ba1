"""Dataset blending against forgetting: the team's dataset mixed with others by share (say 90 % the
team's data, 10 % a general instruction set) into a new saved dataset, sampled reproducibly.

The blend is an ordinary saved dataset, so training, resuming and evaluating need nothing new,
and its source names what it was mixed from.
"""

import random
from dataclasses import dataclass
from pathlib import Path

from studio.data.instructions import load_records, store_records
from studio.errors import DataError
from studio.store import DatasetRecord, Store


@dataclass(frozen=True)
class BlendPart:
    dataset: DatasetRecord
    share: float  # of the blend's rows, the shares summing to 1
    rows: int  # rows drawn from this dataset


def plan_blend(store: Store, main_id: int, others: dict[int, float]) -> list[BlendPart]:
    """How many rows each dataset gives: `others` maps dataset ids to their shares (each above 0,
    together below 1); the main dataset has the rest. The dataset that runs out first is used
    whole, and the others are sampled to match, without repeating a row."""
    if not others:
        raise DataError("Pick at least one dataset to blend in.")
    if main_id in others:
        raise DataError("The main dataset cannot also be blended into itself; pick other datasets to blend in.")
    if any(not 0 < share < 1 for share in others.values()) or sum(others.values()) >= 1:
        raise DataError(f"Each blended-in share must be above 0, and together below 1 (the main dataset has the rest), "
                        f"not {', '.join(f'{s:g}' for s in others.values())}.")
    main = store.dataset(main_id)
    shares = {main_id: 1 - sum(others.values()), **others}
    datasets = {i: main if i == main_id else store.dataset(i) for i in shares}
    formats = {d.template for d in datasets.values()}
    if len(formats) > 1:
        raise DataError(f"These datasets use different prompt formats ({', '.join(sorted(formats))}); blend datasets of one "
                        "format, or save them again with the same prompt format in the Data tab.")
    size = min(d.rows / shares[i] for i, d in datasets.items())
    return [BlendPart(datasets[i], shares[i], min(datasets[i].rows, max(1, round(size * shares[i])))) for i in shares]


def describe_blend(parts: list[BlendPart], mean_tokens: dict[int, float]) -> str:
    """The mix in rows and tokens, e.g. for the Train tab: `mean_tokens` per dataset id."""
    lines = [f"- {p.dataset.name}: {p.rows} rows, about {round(p.rows * mean_tokens[p.dataset.id]):,} tokens ({p.share:.0%})" for p in parts]
    rows = sum(p.rows for p in parts)
    tokens = sum(p.rows * mean_tokens[p.dataset.id] for p in parts)
    return f"The blend: {rows} rows, about {round(tokens):,} tokens.\n" + "\n".join(lines)


def blend_datasets(store: Store, datasets_dir: Path, parts: list[BlendPart], *, name: str = "", seed: int = 42) -> DatasetRecord:
    """Sample each part's rows (seeded: the same blend every time), shuffle them together and save them."""
    chooser = random.Random(seed)
    records = []
    for part in parts:
        records += chooser.sample(load_records(part.dataset.path), part.rows)
    chooser.shuffle(records)
    main = parts[0].dataset
    source = " + ".join(f"{p.dataset.name} {p.share:.0%}" for p in parts)
    return store_records(store, datasets_dir, records, name=name.strip() or f"{main.name} blend", format="blend", shape=main.shape,
                         mapping=main.mapping, template=main.template, validation_fraction=main.validation_fraction,
                         split_seed=seed, source_file=f"blend of {source}")
