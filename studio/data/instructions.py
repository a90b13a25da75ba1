"""Instruction data in: detect or apply a column mapping, validate, preview, save, split.

`inspect_file` turns an uploaded file into a DataReport: the normalised records, the
problems found grouped by kind with their row numbers, and token counts. Row numbers
are 1-based: row 1 is the first record (the line under the header in a table).
"""

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from studio.data.prompts import DEFAULT_TEMPLATE, Segment, get_template, render, token_ids
from studio.data.readers import Table, read_table
from studio.errors import DataError
from studio.settings import EXAMPLES_DIR
from studio.staging import staged_file
from studio.store import DatasetRecord, Store

ROLE_ALIASES = {
    "instruction": ["instruction", "prompt", "question", "query", "instruct", "task"],
    "input": ["input", "context", "passage", "document"],
    "output": ["output", "completion", "answer", "response", "target", "reply"],
}
CHAT_COLUMNS = ["messages", "conversations", "conversation", "chat"]
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system", "model": "assistant", "bot": "assistant"}
DEFAULT_MAX_LENGTH = 512
# A small dataset for a task the bundled model cannot do (a made-up library's rules), so that a
# first training run shows its effect in the Chat tab.
EXAMPLE_DATASET = EXAMPLES_DIR / "library_helpdesk.jsonl"
DEFAULT_VALIDATION_FRACTION = 0.05
MIN_VALIDATION_ROWS = 5
PREVIEW_ROWS = 5  # rendered examples shown at a time

EMAIL = r"[\w.+-]+@[\w-]+\.[A-Za-z]{2,}"
PHONE = r"(?<![\w+])\+?(?:\d{1,3}[ .-]?)?\(?\d{2,4}\)?[ .-]\d{3,4}[ .-]?\d{3,4}(?![\w])"
PERSONAL_DATA = re.compile(f"{EMAIL}|{PHONE}")


@dataclass(frozen=True)
class IssueKind:
    name: str
    title: str
    advice: str
    always_dropped: bool  # rows that cannot be trained on at all


ISSUE_KINDS = {k.name: k for k in [
    IssueKind("empty", "Empty or non-text instruction or output", "These rows cannot be trained on and are left out. Fill them in to use them.", True),
    IssueKind("bad_conversation", "Conversation that cannot be used", "Each conversation needs user and assistant turns with text. These rows are left out.", True),
    IssueKind("duplicate", "Exact duplicate of an earlier row", "Duplicates make the model memorise. Drop them unless they are intended.", False),
    IssueKind("too_long", "Longer than the maximum length", "These rows are cut at the maximum length in training. Drop them, or raise the maximum length.", False),
    IssueKind("personal_data", "Looks like it contains personal data (e-mail address or phone number)", "Check these rows; drop them or remove the personal data before training.", False),
]}
DROPPABLE_KINDS = [k.name for k in ISSUE_KINDS.values() if not k.always_dropped]


@dataclass
class RowIssue:
    kind: str
    rows: list[int]  # 1-based row numbers

    @property
    def message(self) -> str:
        shown = ", ".join(map(str, self.rows[:20])) + (f" and {len(self.rows) - 20} more" if len(self.rows) > 20 else "")
        noun = "row" if len(self.rows) == 1 else "rows"
        return f"{ISSUE_KINDS[self.kind].title}: {len(self.rows)} {noun} ({noun} {shown}). {ISSUE_KINDS[self.kind].advice}"

    def as_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "rows": self.rows}


@dataclass
class DataReport:
    """Everything learnt about one file: shown in the Data tab, printed by `studio data check`."""

    file_name: str
    format: str
    shape: str  # "alpaca" or "chat"
    columns: list[str]
    mapping: dict[str, str]
    template: str
    max_length: int
    records: list[dict | None]  # normalised, None where the row cannot be used
    segments: list[list[Segment] | None]
    token_counts: list[int]
    issues: list[RowIssue] = field(default_factory=list)

    def kept_indices(self, drop: set[str] = frozenset()) -> list[int]:
        """0-based indices of the rows that stay after dropping the chosen kinds of problem."""
        dropped = {r - 1 for i in self.issues if i.kind in drop or ISSUE_KINDS[i.kind].always_dropped for r in i.rows}
        return [i for i in range(len(self.records)) if i not in dropped]

    @property
    def usable_rows(self) -> int:
        return len(self.kept_indices())

    def as_dict(self) -> dict:
        return {"ok": True, "file": self.file_name, "rows": self.usable_rows, "total_rows": len(self.records),
                "format": self.format, "shape": self.shape, "mapping": self.mapping, "template": self.template,
                "max_length": self.max_length, "errors": [], "warnings": [i.as_dict() for i in self.issues]}


def ignored_columns(report: DataReport) -> list[str]:
    """The file's columns that no role reads: their contents are not trained on."""
    used = set(report.mapping.values())
    return [column for column in report.columns if column not in used]


def preview_rows(report: DataReport, drop: set[str], show: str = "", start: int = 1, limit: int = PREVIEW_ROWS) -> list[int]:
    """0-based indices of the rows to preview from row `start` (1-based) on: the rows that will be used,
    or, when `show` names a kind of problem, the rows flagged with it (dropped or not)."""
    if show:
        candidates = [r - 1 for issue in report.issues if issue.kind == show for r in issue.rows]
    else:
        candidates = report.kept_indices(drop)
    return [i for i in candidates if i >= start - 1][:limit]


def detect_mapping(columns: list[str]) -> dict[str, str]:
    """Guess which columns hold the instruction, input and output, or the conversation."""
    by_name = {c.strip().lower(): c for c in columns}
    mapping = {}
    for role, aliases in ROLE_ALIASES.items():
        found = next((by_name[a] for a in aliases if a in by_name), None)
        if found:
            mapping[role] = found
    if "instruction" in mapping and "output" in mapping:
        return mapping
    chat = next((by_name[c] for c in CHAT_COLUMNS if c in by_name), None)
    return {"messages": chat} if chat else mapping


def check_mapping(mapping: dict[str, str], columns: list[str], name: str) -> None:
    """Refuse a mapping that misses a required role or names a column the file lacks."""
    found = ", ".join(columns) or "none"
    for role, column in mapping.items():
        if column and column not in columns:
            raise DataError(f"{name}: there is no column '{column}' (chosen for {role}). Columns found: {found}.")
    if mapping.get("messages"):
        return
    for role in ("instruction", "output"):
        if not mapping.get(role):
            raise DataError(
                f"{name}: no column holds the {role} (looked for {', '.join(ROLE_ALIASES[role])}). Columns found: {found}. "
                f"Rename a column to '{role}' or choose it in the column mapping."
            )


def inspect_file(path: Path, tokenizer, *, max_bytes: int, name: str | None = None, mapping: dict[str, str] | None = None,
                 template: str | None = None, max_length: int = DEFAULT_MAX_LENGTH) -> DataReport:
    """Read, map, validate and tokenise a file. Raises DataError if the file cannot be used at all."""
    name = name or path.name
    return inspect_table(read_table(path, max_bytes, name), tokenizer, name=name, mapping=mapping, template=template, max_length=max_length)


def inspect_table(table: Table, tokenizer, *, name: str, mapping: dict[str, str] | None = None, template: str | None = None,
                  max_length: int = DEFAULT_MAX_LENGTH) -> DataReport:
    """Map, validate and tokenise a table already read. Raises DataError if it cannot be used at all."""
    mapping = {k: v for k, v in (mapping or detect_mapping(table.columns)).items() if v}
    check_mapping(mapping, table.columns, name)
    shape = "chat" if mapping.get("messages") else "alpaca"
    template = template or ("chat" if shape == "chat" else DEFAULT_TEMPLATE)
    chosen = get_template(template)
    if max_length < 16:
        raise DataError(f"The maximum length must be at least 16 tokens, not {max_length}.")
    records, problems = _normalise(table, mapping, shape)
    segments = [render(r, chosen, tokenizer) if r else None for r in records]
    token_counts = count_tokens(segments, tokenizer)
    report = DataReport(name, table.format, shape, table.columns, mapping, template, max_length, records, segments, token_counts)
    problems["too_long"] = [i + 1 for i, n in enumerate(token_counts) if n > max_length]
    problems["duplicate"] = _duplicates(records)
    problems["personal_data"] = [i + 1 for i, r in enumerate(records) if r and _has_personal_data(r)]
    report.issues = [RowIssue(kind, problems[kind]) for kind in ISSUE_KINDS if problems.get(kind)]
    return report


def _normalise(table: Table, mapping: dict[str, str], shape: str) -> tuple[list[dict | None], dict[str, list[int]]]:
    records: list[dict | None] = []
    problems: dict[str, list[int]] = {"empty": [], "bad_conversation": []}
    for number, row in enumerate(table.rows, start=1):
        record = _conversation(row.get(mapping["messages"])) if shape == "chat" else _alpaca(row, mapping)
        if record is None:
            problems["bad_conversation" if shape == "chat" else "empty"].append(number)
        records.append(record)
    return records, problems


def _text(value) -> str | None:
    """A cell as text: numbers become text, lists, objects and blanks do not."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
        return str(value)
    return None


def _alpaca(row: dict, mapping: dict[str, str]) -> dict | None:
    instruction, output = _text(row.get(mapping["instruction"])), _text(row.get(mapping["output"]))
    if not instruction or not output:
        return None
    given = row.get(mapping["input"]) if mapping.get("input") else None
    return {"instruction": instruction, "input": _text(given) or "", "output": output}


def parse_turns(value) -> list[dict] | None:
    """A conversation (a list, or its JSON text) of {"role", "content"} or ShareGPT {"from", "value"}
    turns as {"role", "content"} dicts; None when it is empty or any turn is malformed."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if not isinstance(value, list) or not value:
        return None
    turns = []
    for turn in value:
        if not isinstance(turn, dict):
            return None
        role = SHAREGPT_ROLES.get(str(turn.get("role", turn.get("from", ""))).lower())
        content = _text(turn.get("content", turn.get("value")))
        if role is None or not content:
            return None
        turns.append({"role": role, "content": content})
    return turns


def _conversation(value) -> dict | None:
    messages = parse_turns(value)
    return {"messages": messages} if messages and {"user", "assistant"} <= {m["role"] for m in messages} else None


def _duplicates(records: list[dict | None]) -> list[int]:
    seen, repeated = set(), []
    for number, record in enumerate(records, start=1):
        if record is None:
            continue
        key = json.dumps(record, sort_keys=True)
        if key in seen:
            repeated.append(number)
        seen.add(key)
    return repeated


def _has_personal_data(record: dict) -> bool:
    texts = [m["content"] for m in record["messages"]] if "messages" in record else record.values()
    return bool(PERSONAL_DATA.search("\n".join(texts)))


def count_tokens(segments: list[list[Segment] | None], tokenizer) -> list[int]:
    """Tokens per rendered row (0 for unusable rows), tokenised in one batch for speed."""
    lengths = iter(len(ids) for ids in token_ids([s.text for row in segments if row for s in row], tokenizer))
    return [sum(next(lengths) for _ in row) if row else 0 for row in segments]


def length_histogram(report: DataReport, bins: int = 8) -> list[tuple[str, int]]:
    """Counts of usable rows per token-length bin, with one last bin for rows over the maximum."""
    width = max(1, -(-report.max_length // bins))
    counts = [0] * (bins + 1)
    for i in report.kept_indices():
        counts[min(report.token_counts[i] // width, bins) if report.token_counts[i] <= report.max_length else bins] += 1
    labels = [f"{b * width + 1}-{min((b + 1) * width, report.max_length)}" for b in range(bins)] + [f"over {report.max_length}"]
    return list(zip(labels, counts))


def content_hash(records: list[dict]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def save_dataset(store: Store, datasets_dir: Path, report: DataReport, *, name: str, drop: set[str] = frozenset(),
                 validation_fraction: float = DEFAULT_VALIDATION_FRACTION, split_seed: int = 42) -> DatasetRecord:
    """Save the kept rows as a normalised JSONL copy and register it; the same content is saved once.

    The name is only ever a label: the file is named by its content hash.
    """
    records = [report.records[i] for i in report.kept_indices(drop)]
    if not records:
        raise DataError("No rows are left to save. Fix the problems listed above, or drop fewer kinds of rows.")
    return store_records(store, datasets_dir, records, name=name.strip() or Path(report.file_name).stem, format=report.format,
                         shape=report.shape, mapping=report.mapping, template=report.template,
                         validation_fraction=validation_fraction, split_seed=split_seed, source_file=report.file_name)


def store_records(store: Store, datasets_dir: Path, records: list[dict], *, validation_fraction: float, **fields) -> DatasetRecord:
    """Write normalised records to a file named by their content hash (once) and register them as a dataset."""
    if not 0 <= validation_fraction < 0.5:
        raise DataError(f"The validation share must be between 0 and 0.5, not {validation_fraction}.")
    digest = content_hash(records)
    path = datasets_dir / f"{digest[:24]}.jsonl"
    if not path.exists():
        with staged_file(path) as partial:
            partial.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return store.add_dataset(content_hash=digest, rows=len(records), validation_fraction=validation_fraction, path=path, **fields)


def load_records(path: Path) -> list[dict]:
    """The normalised records of a saved dataset file."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def split_indices(rows: int, validation_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded train/validation split of row indices.

    The validation part has at least MIN_VALIDATION_ROWS rows; a dataset too small to
    spare that many keeps every row for training.
    """
    order = list(range(rows))
    random.Random(seed).shuffle(order)
    size = validation_size(rows, validation_fraction)
    return sorted(order[size:]), sorted(order[:size])


def validation_size(rows: int, validation_fraction: float) -> int:
    """How many rows split_indices holds out, without drawing them."""
    size = max(MIN_VALIDATION_ROWS, round(rows * validation_fraction)) if validation_fraction > 0 else 0
    return 0 if rows < 2 * size else size
