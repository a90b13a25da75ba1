"""Adapters as first-class artifacts: what base, data and settings made them, and how they did."""

import json
import re
from pathlib import Path

from studio.store import AdapterRecord


def slug(name: str) -> str:
    """A safe folder-name fragment from a user's label: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "adapter"


def adapter_folder(adapters_dir: Path, job_id: int, name: str) -> Path:
    return adapters_dir / f"job{job_id}-{slug(name)}"


def saved_template(folder: Path) -> str | None:
    """The template a studio adapter (spec.json) or a model merged from one (studio.json) was trained with."""
    for name in ("spec.json", "studio.json"):
        if (folder / name).is_file():
            return json.loads((folder / name).read_text()).get("template")
    return None


def adapter_template(adapter: AdapterRecord) -> str:
    """The prompt format a registered adapter was trained with: the one answer that export, chat and Train on
    feedback give. Training, imports and mixes save it in spec.json; an adapter whose spec.json does not say
    was trained before the studio offered a choice, on Alpaca."""
    return saved_template(adapter.path) or "alpaca"
