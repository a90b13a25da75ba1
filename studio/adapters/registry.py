"""Adapters as first-class artifacts: what base, data and settings made them, and how they did."""

import re
from pathlib import Path



def slug(name: str) -> str:
    """A safe folder-name fragment from a user's label: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40] or "adapter"


def adapter_folder(home: Path, job_id: int, name: str) -> Path:
    return home / "adapters" / f"job{job_id}-{slug(name)}"

