"""Continue training from a registered adapter: its weights are the new run's starting point.

Weights of one shape cannot start a run of another, so the parent's shape (rank, alpha, target
layers, DoRA or rsLoRA) wins over the spec's, and the log says so. The new adapter records the
parent as its parent_id, so its card and Compare can say where it came from.
"""

import dataclasses
import json
from pathlib import Path

from studio.errors import SpecError
from studio.models.catalog import BUNDLED, resolve_model
from studio.store import AdapterRecord, Store
from studio.train.spec import TrainSpec

ATTENTION = {"q_proj", "k_proj", "v_proj", "o_proj"}


@dataclasses.dataclass(frozen=True)
class StartAdapter:
    adapter: AdapterRecord
    spec: TrainSpec  # the requested spec with the parent's shape
    note: str | None  # which requested settings the parent's replaced, in words


def start_adapter(store: Store, spec: TrainSpec, base_model: str, models_dir: Path) -> StartAdapter | None:
    """The adapter a spec continues from, with the spec reshaped to it; None when it starts afresh.

    Raises NotFound for an unknown adapter, SpecError when it was trained on another base model.
    """
    if spec.start_adapter_id is None:
        return None
    parent = store.adapter(spec.start_adapter_id)
    if not _same_base(parent.base_model, base_model, models_dir):
        raise SpecError(f"Adapter #{parent.id} '{parent.name}' was trained on the base model '{parent.base_model}', not "
                        f"'{base_model}': an adapter's weights only fit the base it was trained on. Pick that base model, "
                        "or start afresh (leave 'continue from' empty).")
    shape = _shape(parent.path, spec)
    changed = [f"{name.replace('_', ' ')} {getattr(spec, name)} → {value}" for name, value in shape.items() if getattr(spec, name) != value]
    note = (f"Continuing from adapter #{parent.id} '{parent.name}': its shape is kept ({', '.join(changed)})." if changed
            else f"Continuing from adapter #{parent.id} '{parent.name}'.")
    return StartAdapter(parent, dataclasses.replace(spec, **shape), note)


def _same_base(parent_ref: str, base_ref: str, models_dir: Path) -> bool:
    """The same reference, or two local references (bundled, folders) to the same folder; hub ids are
    compared by name, never fetched for this."""
    if parent_ref.strip() == base_ref.strip():
        return True
    local = [ref for ref in (parent_ref, base_ref) if ref.strip() in ("", BUNDLED) or Path(ref).expanduser().exists()]
    return len(local) == 2 and resolve_model(parent_ref, models_dir) == resolve_model(base_ref, models_dir)


def _shape(adapter_dir: Path, spec: TrainSpec) -> dict:
    """The settings an adapter's saved config fixes, as TrainSpec values."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    targets = config.get("target_modules") or []
    method = "dora" if config.get("use_dora") else "rslora" if config.get("use_rslora") else (
        spec.method if spec.method in ("lora", "qlora") else "lora")
    return {"rank": int(config["r"]), "lora_alpha": int(config["lora_alpha"]), "method": method,
            "target_modules": "attention" if targets and set(targets) <= ATTENTION else "all-linear"}
