"""Preference data in: pairs of answers to one prompt, the chosen one preferred over the rejected one.

Two shapes, in every format studio.data.readers reads:
- plain pairs: `prompt` (or `instruction` with an optional `input`), `chosen`, `rejected` as text;
- chat pairs: `chosen` and `rejected` as whole conversations whose turns agree up to the last
  assistant answer, which differs (the form studio.feedback.items exports and TRL reads).
Every row becomes {"prompt": [turns], "chosen": text, "rejected": text}. Problems are listed by
kind with 1-based row numbers, as studio.data.instructions does for instruction data: a row with a side
missing or empty, or with identical sides, is always left out; over-long and duplicate rows
can be dropped. `inspect_data_file` tells the two kinds of data file apart, for the Data tab and the CLI.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from studio.data.instructions import (DEFAULT_VALIDATION_FRACTION, DataReport, IssueKind, _text, inspect_table, parse_turns, save_dataset,
                         store_records)
from studio.data.prompts import token_ids
from studio.data.readers import Table, read_table
from studio.errors import DataError
from studio.store import DatasetRecord, Store

PROMPT_COLUMNS = ["prompt", "question", "query"]
DEFAULT_MAX_LENGTH = 512

ISSUE_KINDS = {k.name: k for k in [
    IssueKind("missing_side", "A prompt, chosen or rejected answer is missing or empty",
              "A pair needs a prompt and both answers. These rows are left out; fill them in to use them.", True),
    IssueKind("identical", "The chosen and rejected answers are the same",
              "Such a pair teaches nothing. These rows are left out; write a worse or better answer for one side.", True),
    IssueKind("duplicate", "Exact duplicate of an earlier row", "Duplicates weigh a pair twice. Drop them unless they are intended.", False),
    IssueKind("too_long", "Prompt and an answer together are longer than the maximum length",
              "These rows are cut in training, which may cut away the difference between the answers. Drop them, or raise the maximum length.", False),
]}


@dataclass
class PreferenceIssue:
    kind: str
    rows: list[int]  # 1-based

    @property
    def message(self) -> str:
        shown = ", ".join(map(str, self.rows[:20])) + (f" and {len(self.rows) - 20} more" if len(self.rows) > 20 else "")
        noun = "row" if len(self.rows) == 1 else "rows"
        return f"{ISSUE_KINDS[self.kind].title}: {len(self.rows)} {noun} ({noun} {shown}). {ISSUE_KINDS[self.kind].advice}"


@dataclass
class PreferenceReport:
    """A preference file read and checked: what the Data tab previews and `studio data check` prints."""

    file_name: str
    format: str
    shape: str  # "pairs", "chat-pairs", or "pairs and chat-pairs" in one file
    columns: list[str]
    max_length: int
    records: list[dict | None]  # {"prompt": [turns], "chosen", "rejected"}; None where a side is missing
    tokens: list[tuple[int, int, int]]  # (prompt, chosen, rejected) tokens per row
    issues: list[PreferenceIssue] = field(default_factory=list)
    template: str = "chat"  # the prompt format the pairs are shown in when saved

    @property
    def token_counts(self) -> list[int]:
        """Tokens per row as training cuts them: the prompt with the longer answer."""
        return [prompt + max(chosen, rejected) for prompt, chosen, rejected in self.tokens]

    def kept_indices(self, drop: set[str] = frozenset()) -> list[int]:
        """0-based indices of the rows that stay after dropping the chosen kinds of problem."""
        dropped = {r - 1 for i in self.issues if i.kind in drop or ISSUE_KINDS[i.kind].always_dropped for r in i.rows}
        return [i for i in range(len(self.records)) if i not in dropped]

    def side_by_side(self, indices: list[int] | None = None) -> list[dict]:
        """Rows (0-based `indices`, by default the first five kept) as the preview shows them: prompt, both answers
        and their token counts; a row with a side missing has its number alone."""
        shown = []
        for i in self.kept_indices()[:5] if indices is None else indices:
            record, (prompt, chosen, rejected) = self.records[i], self.tokens[i]
            shown.append({"row": i + 1} if record is None else
                         {"row": i + 1, "prompt": record["prompt"][-1]["content"], "turns": len(record["prompt"]),
                          "chosen": record["chosen"], "rejected": record["rejected"],
                          "prompt_tokens": prompt, "chosen_tokens": chosen, "rejected_tokens": rejected})
        return shown


def is_preference_table(columns: list[str]) -> bool:
    """Whether a file's columns hold preference pairs (a chosen and a rejected column)."""
    names = {c.strip().lower() for c in columns}
    return {"chosen", "rejected"} <= names


def inspect_preferences(path: Path, tokenizer, *, max_bytes: int, name: str | None = None,
                        max_length: int = DEFAULT_MAX_LENGTH, template: str = "chat") -> PreferenceReport:
    """Read, normalise, validate and count the tokens of a preference file.

    Raises DataError when the file cannot be read or has no chosen and rejected columns.
    """
    name = name or path.name
    return inspect_pairs(read_table(path, max_bytes, name), tokenizer, name=name, max_length=max_length, template=template)


def inspect_pairs(table: Table, tokenizer, *, name: str, max_length: int = DEFAULT_MAX_LENGTH, template: str = "chat") -> PreferenceReport:
    """Normalise, validate and count the tokens of a table of preference pairs already read. Raises DataError as above."""
    by_name = {c.strip().lower(): c for c in table.columns}
    if not is_preference_table(table.columns):
        raise DataError(f"{name}: preference data needs a 'chosen' and a 'rejected' column (columns found: "
                        f"{', '.join(table.columns) or 'none'}). A file of instructions and answers is instruction data: "
                        "train it with instruction tuning (SFT), or add the rejected answers.")
    if max_length < 16:
        raise DataError(f"The maximum length must be at least 16 tokens, not {max_length}.")
    prompt_column = next((by_name[c] for c in PROMPT_COLUMNS + ["instruction"] if c in by_name), None)
    input_column = by_name.get("input")
    chat_rows = [_is_conversation(row.get(by_name["chosen"])) for row in table.rows]
    shape = "chat-pairs" if all(chat_rows) else "pairs" if not any(chat_rows) else "pairs and chat-pairs"
    if not all(chat_rows) and prompt_column is None:
        raise DataError(f"{name}: no column holds the prompt (looked for {', '.join(PROMPT_COLUMNS)} and instruction). "
                        "Add a 'prompt' column, or give chosen and rejected as whole conversations.")
    records = [_chat_pair(row.get(by_name["chosen"]), row.get(by_name["rejected"])) if chat
               else _plain_pair(row, by_name["chosen"], by_name["rejected"], prompt_column, input_column)
               for row, chat in zip(table.rows, chat_rows)]
    tokens = count_pair_tokens(records, tokenizer)
    problems = {"missing_side": [i + 1 for i, r in enumerate(records) if r is None]}
    problems["identical"] = [i + 1 for i, r in enumerate(records) if r and r["chosen"] == r["rejected"]]
    seen, problems["duplicate"] = set(), []
    for i, record in enumerate(records):
        key = json.dumps(record, sort_keys=True)
        if record and key in seen:
            problems["duplicate"].append(i + 1)
        seen.add(key)
    problems["too_long"] = [i + 1 for i, (p, c, r) in enumerate(tokens) if records[i] and p + max(c, r) > max_length]
    issues = [PreferenceIssue(kind, problems[kind]) for kind in ISSUE_KINDS if problems.get(kind)]
    return PreferenceReport(name, table.format, shape, table.columns, max_length, records, tokens, issues, template)


def inspect_data_file(path: Path, tokenizer, *, max_bytes: int, name: str | None = None, mapping: dict[str, str] | None = None,
                      template: str | None = None, max_length: int = DEFAULT_MAX_LENGTH) -> DataReport | PreferenceReport:
    """Read a data file once and check it as what it holds: preference pairs (a chosen and a rejected column, and
    no column mapping chosen) or instruction data. Raises DataError if it cannot be used at all."""
    name = name or path.name
    table = read_table(path, max_bytes, name)
    if is_preference_table(table.columns) and not mapping:
        return inspect_pairs(table, tokenizer, name=name, max_length=max_length, template=template or "chat")
    return inspect_table(table, tokenizer, name=name, mapping=mapping, template=template, max_length=max_length)


def save_report(store: Store, datasets_dir: Path, report: DataReport | PreferenceReport, *, name: str, drop: set[str] = frozenset(),
                validation_fraction: float = DEFAULT_VALIDATION_FRACTION) -> DatasetRecord:
    """Save a checked file's kept rows as a dataset of its kind: "preference" for pairs, else its instruction shape."""
    save = save_preferences if isinstance(report, PreferenceReport) else save_dataset
    return save(store, datasets_dir, report, name=name, drop=drop, validation_fraction=validation_fraction)


def _is_conversation(value) -> bool:
    return isinstance(value, list) or (isinstance(value, str) and value.lstrip().startswith("[{"))


def _plain_pair(row: dict, chosen: str, rejected: str, prompt: str, given: str | None) -> dict | None:
    texts = [_text(row.get(column)) for column in (prompt, chosen, rejected)]
    if not all(texts):
        return None
    extra = _text(row.get(given)) if given else None
    question = f"{texts[0]}\n\n{extra}" if extra else texts[0]
    return {"prompt": [{"role": "user", "content": question}], "chosen": texts[1], "rejected": texts[2]}


def _chat_pair(chosen, rejected) -> dict | None:
    """Two conversations that agree up to their last turn, an assistant's answer on each side."""
    sides = [parse_turns(chosen), parse_turns(rejected)]
    if not all(sides) or any(side[-1]["role"] != "assistant" or len(side) < 2 for side in sides):
        return None
    if sides[0][:-1] != sides[1][:-1] or sides[0][-2]["role"] != "user":
        return None
    return {"prompt": sides[0][:-1], "chosen": sides[0][-1]["content"], "rejected": sides[1][-1]["content"]}


def count_pair_tokens(records: list[dict | None], tokenizer) -> list[tuple[int, int, int]]:
    """Tokens of each row's prompt (its turns' text) and of each answer, in one batch."""
    texts = [t for r in records if r for t in ("\n".join(m["content"] for m in r["prompt"]), r["chosen"], r["rejected"])]
    lengths = iter(len(ids) for ids in token_ids(texts, tokenizer))
    return [(next(lengths), next(lengths), next(lengths)) if r else (0, 0, 0) for r in records]


def save_preferences(store: Store, datasets_dir: Path, report: PreferenceReport, *, name: str, drop: set[str] = frozenset(),
                     template: str | None = None, validation_fraction: float = DEFAULT_VALIDATION_FRACTION, split_seed: int = 42) -> DatasetRecord:
    """Save the kept pairs as a dataset of shape "preference", which DPO and KTO train on. `template` is the prompt format
    the pairs are shown in (default: the report's); a run continuing from an adapter uses that adapter's own.
    Raises DataError when no pair is left."""
    records = [report.records[i] for i in report.kept_indices(drop)]
    if not records:
        raise DataError("No pairs are left to save. Fix the problems listed above, or drop fewer kinds of rows.")
    return store_records(store, datasets_dir, records, name=name.strip() or Path(report.file_name).stem, format=report.format,
                         shape="preference", mapping={}, template=template or report.template, validation_fraction=validation_fraction,
                         split_seed=split_seed, source_file=report.file_name)
