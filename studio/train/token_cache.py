"""A dataset's training rows (token ids and labels), tokenised once and cached by content.

A sweep trains many adapters on one dataset, and a resumed job starts over its setup: each
would render and tokenise every row again (about 0.1 ms a row). The key covers everything the
rows depend on: the dataset's content hash, the tokenizer's files, the template, the maximum
length, responses-only and the split. Rows are stored as flat int32 arrays in an .npz file
(read without pickle), written beside and renamed into place, so a crash leaves no half file.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from studio.data.prompts import get_template
from studio.staging import staged_file

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "tokenizer.model")


def cache_key(base_dir: Path, dataset_hash: str, template: str, max_length: int, responses_only: bool,
              validation_fraction: float, split_seed: int) -> str:
    """A digest of everything the encoded rows depend on."""
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = base_dir / name
        if path.exists():
            digest.update(name.encode() + path.read_bytes())
    settings = [dataset_hash, repr(get_template(template)), max_length, responses_only, validation_fraction, split_seed]
    digest.update(json.dumps(settings).encode())
    return digest.hexdigest()


def load(folder: Path, key: str) -> tuple[list[dict], list[dict]] | None:
    """The cached (train, validation) rows for `key`, or None when not cached."""
    path = folder / f"{key}.npz"
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as arrays:
        return _rows(arrays, "train"), _rows(arrays, "validation")


def save(folder: Path, key: str, train_rows: list[dict], validation_rows: list[dict]) -> None:
    with staged_file(folder / f"{key}.npz") as partial:
        np.savez(partial, **_arrays(train_rows, "train"), **_arrays(validation_rows, "validation"))


def _arrays(rows: list[dict], prefix: str) -> dict[str, np.ndarray]:
    lengths = [len(row["input_ids"]) for row in rows]
    def flat(field: str) -> np.ndarray:
        return np.array([t for row in rows for t in row[field]], dtype=np.int32)
    return {f"{prefix}_lengths": np.array(lengths, dtype=np.int64), f"{prefix}_input_ids": flat("input_ids"), f"{prefix}_labels": flat("labels")}


def _rows(arrays, prefix: str) -> list[dict]:
    ends = np.cumsum(arrays[f"{prefix}_lengths"])
    input_ids = np.split(arrays[f"{prefix}_input_ids"], ends[:-1]) if len(ends) else []
    labels = np.split(arrays[f"{prefix}_labels"], ends[:-1]) if len(ends) else []
    return [{"input_ids": i.tolist(), "labels": l.tolist()} for i, l in zip(input_ids, labels)]
