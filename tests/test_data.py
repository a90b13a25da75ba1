"""Mapping, validation, preview figures, saving and splitting of instruction data."""

import json

import pytest
from conftest import FIXTURES

from studio.data.instructions import (detect_mapping, ignored_columns, inspect_file, length_histogram, load_records, preview_rows, save_dataset,
                         split_indices)
from studio.errors import DataError
from studio.store import Store

LIMIT = 10 * 2**20


def inspect(tokenizer, name, **options):
    return inspect_file(FIXTURES / name, tokenizer, max_bytes=LIMIT, **options)


@pytest.mark.parametrize("columns, expected", [
    (["instruction", "input", "output"], {"instruction": "instruction", "input": "input", "output": "output"}),
    (["prompt", "completion"], {"instruction": "prompt", "output": "completion"}),
    (["Question", "Context", "Answer"], {"instruction": "Question", "input": "Context", "output": "Answer"}),
    (["query", "response"], {"instruction": "query", "output": "response"}),
    (["messages"], {"messages": "messages"}),
    (["id", "conversations"], {"messages": "conversations"}),
])
def test_common_column_names_are_mapped_automatically(columns, expected):
    assert detect_mapping(columns) == expected


@pytest.mark.parametrize("name, shape, rows", [
    ("alpaca.json", "alpaca", 4), ("wrapped.json", "alpaca", 4), ("alpaca.jsonl", "alpaca", 4),
    ("question_answer.csv", "alpaca", 4), ("prompt_completion.tsv", "alpaca", 4), ("bom.csv", "alpaca", 4),
    ("alpaca.xlsx", "alpaca", 5), ("alpaca.parquet", "alpaca", 4), ("chat.parquet", "chat", 2),
    ("chat_messages.jsonl", "chat", 2), ("sharegpt.json", "chat", 2),
])
def test_every_format_and_shape_gives_usable_rows(tokenizer, name, shape, rows):
    report = inspect(tokenizer, name)
    assert (report.shape, report.usable_rows, report.issues) == (shape, rows, [])


def test_missing_output_column_names_the_columns_found(tokenizer):
    with pytest.raises(DataError) as refused:
        inspect(tokenizer, "missing_output.csv")
    assert str(refused.value) == (
        "missing_output.csv: no column holds the output (looked for output, completion, answer, response, target, reply). "
        "Columns found: instruction, notes. Rename a column to 'output' or choose it in the column mapping."
    )


def test_a_chosen_mapping_overrides_detection(tokenizer):
    report = inspect(tokenizer, "custom_columns.csv", mapping={"instruction": "ask", "output": "reply_text"})
    assert report.usable_rows == 4 and report.records[0] == {"instruction": "Translate to French.", "input": "", "output": "Bonjour"}


def test_a_mapping_naming_a_missing_column_is_refused(tokenizer):
    with pytest.raises(DataError, match="there is no column 'answer' \\(chosen for output\\). Columns found: ask, reply_text"):
        inspect(tokenizer, "custom_columns.csv", mapping={"instruction": "ask", "output": "answer"})


def test_row_problems_are_grouped_by_kind_with_row_numbers(tokenizer):
    report = inspect(tokenizer, "problems.jsonl", max_length=128)
    found = {issue.kind: issue.rows for issue in report.issues}
    assert found == {"empty": [7, 9], "duplicate": [5], "too_long": [8], "personal_data": [6]}
    assert report.usable_rows == 7
    assert report.kept_indices({"duplicate", "too_long", "personal_data"}) == [0, 1, 2, 3]


def test_sharegpt_roles_become_user_and_assistant(tokenizer):
    report = inspect(tokenizer, "sharegpt.json")
    assert report.records[0]["messages"] == [{"role": "user", "content": "Spell 'cat' backwards."}, {"role": "assistant", "content": "tac"}]


def test_a_conversation_without_an_answer_is_reported(tokenizer, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}) + "\n"
                    + json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hey"}]}) + "\n")
    report = inspect_file(path, tokenizer, max_bytes=LIMIT)
    assert [(i.kind, i.rows) for i in report.issues] == [("bad_conversation", [1])]


def test_token_counts_and_histogram_use_the_model_tokenizer(tokenizer):
    report = inspect(tokenizer, "alpaca.jsonl", max_length=64)
    expected = [len(tokenizer("".join(s.text for s in segs), add_special_tokens=False)["input_ids"]) for segs in report.segments]
    assert all(abs(a - b) <= 2 for a, b in zip(report.token_counts, expected))
    histogram = length_histogram(report)
    assert histogram[-1][0] == "over 64" and sum(count for _, count in histogram) == 4


def test_multi_turn_chat_cannot_use_the_alpaca_template(tokenizer):
    with pytest.raises(DataError, match="multi-turn conversations. Choose the 'chat' template"):
        inspect(tokenizer, "chat_messages.jsonl", template="alpaca")


def test_saving_the_same_rows_again_never_changes_the_saved_dataset(tokenizer, settings, store):
    report = inspect(tokenizer, "problems.jsonl")
    first = save_dataset(store, settings.datasets_dir, report, name="support", drop={"duplicate"})
    assert save_dataset(store, settings.datasets_dir, report, name="support", drop={"duplicate"}) == first  # same settings: reused
    renamed = save_dataset(store, settings.datasets_dir, report, name="support v2", drop={"duplicate"})
    resplit = save_dataset(store, settings.datasets_dir, report, name="support", drop={"duplicate"}, validation_fraction=0.2)
    assert len({first.id, renamed.id, resplit.id}) == 3 and len(store.datasets()) == 3
    assert store.dataset(first.id) == first and (first.name, first.validation_fraction) == ("support", 0.05)
    assert renamed.path == resplit.path == first.path and len(load_records(first.path)) == first.rows == 6
    assert list(settings.datasets_dir.iterdir()) == [first.path]  # the rows are stored once


def test_saved_datasets_survive_a_restart(tokenizer, settings):
    report = inspect(tokenizer, "alpaca.json")
    saved = save_dataset(Store(settings.db_path), settings.datasets_dir, report, name="../../etc/passwd")
    reopened = Store(settings.db_path).dataset(saved.id)
    assert reopened.name == "../../etc/passwd" and reopened.path.parent == settings.datasets_dir
    assert load_records(reopened.path) == [r for r in report.records]


def test_split_is_seeded_and_keeps_a_handful_for_validation():
    train, validation = split_indices(200, 0.05, seed=7)
    assert len(validation) == 10 and sorted(train + validation) == list(range(200))
    assert split_indices(200, 0.05, seed=7) == (train, validation) != split_indices(200, 0.05, seed=8)
    assert len(split_indices(40, 0.05, seed=1)[1]) == 5
    assert split_indices(8, 0.05, seed=1) == (list(range(8)), [])


def test_the_preview_pages_through_used_rows_or_shows_the_rows_of_one_kind_of_problem(tokenizer):
    report = inspect(tokenizer, "problems.jsonl")  # rows 7 and 9 empty, 5 a duplicate, 6 with an e-mail address
    assert preview_rows(report, set()) == [0, 1, 2, 3, 4] and preview_rows(report, set(), start=6) == [5, 7]
    assert preview_rows(report, {"personal_data"}, "personal_data") == [5]  # shown although it will be dropped
    assert preview_rows(report, set(), "empty") == [6, 8]


def test_columns_no_role_reads_are_named_as_ignored(tokenizer, tmp_path):
    path = tmp_path / "with_notes.csv"
    path.write_text("question,answer,reviewer,notes\nWhat is 2+2?,4,ana,easy\n")
    report = inspect_file(path, tokenizer, max_bytes=2**20)
    assert ignored_columns(report) == ["reviewer", "notes"]


def test_the_preview_marks_left_out_rows_explains_special_tokens_and_dates_read_as_dates(tokenizer):
    from studio.ui import html

    report = inspect(tokenizer, "problems.jsonl")
    shown = html.preview(report, {"personal_data"}, preview_rows(report, set(), "personal_data") + preview_rows(report, set(), "empty"))
    assert "Row 6 · " in shown and "<b>left out</b>" in shown and "Row 7 · <b>left out</b>" in shown and "This row cannot be used" in shown
    assert "&lt;|im_end|&gt;" in shown and "teaches the model where to stop" in shown
    assert html.readable_time("2026-11-30T10:18:35+00:00") == "30 Nov 2026, 10:18 UTC"
    assert [html.file_size(n) for n in (5000, 10 * 2**20, 3 * 2**30)] == ["5 KB", "10.0 MB", "3.0 GB"]
