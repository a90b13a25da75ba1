"""Sweeps: one Train form, a small grid of settings (say rank 8/16/32 x learning rate 1e-4/2e-4),
each point its own job, the group's results ranked together in Compare."""

import dataclasses
import itertools
from dataclasses import dataclass

from studio.errors import SpecError
from studio.store import AdapterRecord, EvaluationRecord, Store
from studio.train.spec import TrainSpec

MAX_RUNS = 12  # a grid larger than this is more likely a typo than a plan


def parse_sweep(text: str) -> dict[str, list[str]]:
    """'rank=8,16; learning_rate=1e-4,2e-4' (or one FIELD=V1,V2 per line) as {field: values}."""
    grid: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.replace("\n", ";").split(";"))):
        field, equals, values = part.partition("=")
        field = field.strip().replace("-", "_")
        choices = [v.strip() for v in values.split(",") if v.strip()]
        if not equals or not choices:
            raise SpecError(f"Write each swept setting as NAME=VALUE1,VALUE2 (for example rank=8,16), not '{part}'.")
        if field in grid:
            raise SpecError(f"'{field}' appears twice in the sweep; give all its values once, separated by commas.")
        grid[field] = choices
    return grid


def sweep_specs(base: TrainSpec, grid: dict[str, list[str]]) -> list[tuple[str, TrainSpec]]:
    """Every combination of the grid on top of `base`, each validated, with a short label such as 'rank=8 learning_rate=0.0001'."""
    if not grid:
        raise SpecError("The sweep is empty: give at least one setting with two or more values, for example rank=8,16.")
    runs = []
    for values in itertools.product(*grid.values()):
        changes = dict(zip(grid, values))
        try:
            spec = TrainSpec.from_dict({**dataclasses.asdict(base), **changes})
        except SpecError as error:
            raise SpecError(f"In the sweep point {_label(changes)}: {error}") from None
        runs.append((_label({k: getattr(spec, k) for k in changes}), spec))
    if len(runs) > MAX_RUNS:
        raise SpecError(f"The sweep makes {len(runs)} jobs; at most {MAX_RUNS} are allowed. Sweep fewer values.")
    return runs


@dataclass(frozen=True)
class SweepResult:
    adapter: AdapterRecord
    swept: dict  # the swept settings of this run
    eval_loss: float | None
    rouge: float | None  # the adapter's ROUGE-L on held-out answers, from its latest evaluation


def rank_sweep(adapters: list[AdapterRecord], evaluations: dict[int, EvaluationRecord | None], fields: list[str]) -> list[SweepResult]:
    """Best first: lowest validation loss, then best held-out answers; runs without either last."""
    results = [SweepResult(a, {f: a.spec.get(f) for f in fields}, a.summary.get("eval_loss"),
                           evaluations[a.id].adapter_rouge if evaluations.get(a.id) else None) for a in adapters]
    return sorted(results, key=lambda r: (r.eval_loss is None, r.eval_loss or 0.0, -(r.rouge or 0.0)))


def sweep_results(store: Store, sweep: str) -> list[SweepResult]:
    """A sweep's finished runs, best first, with the settings that differ between them."""
    adapters = store.sweep_adapters(sweep)
    return rank_sweep(adapters, {a.id: store.latest_evaluation(a.id) for a in adapters}, swept_fields(adapters))


def swept_fields(adapters: list[AdapterRecord]) -> list[str]:
    """The settings that differ between the runs of a sweep."""
    keys = sorted({k for a in adapters for k in a.spec})
    return [k for k in keys if len({repr(a.spec.get(k)) for a in adapters}) > 1]


def _label(changes: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in changes.items())
