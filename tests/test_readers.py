"""Reading every supported format, and refusing broken files with file, line and column."""

import pytest
from conftest import FIXTURES

from studio.data.readers import read_table
from studio.errors import DataError

LIMIT = 10 * 2**20


@pytest.mark.parametrize("name, fmt, rows, columns", [
    ("alpaca.json", "json", 4, ["instruction", "input", "output"]),
    ("wrapped.json", "json", 4, ["instruction", "input", "output"]),
    ("alpaca.jsonl", "jsonl", 4, ["instruction", "input", "output"]),
    ("question_answer.csv", "csv", 4, ["question", "context", "answer"]),
    ("prompt_completion.tsv", "tsv", 4, ["prompt", "completion"]),
    ("bom.csv", "csv", 4, ["instruction", "input", "output"]),
    ("alpaca.xlsx", "excel", 5, ["Instruction", "Input", "Output"]),
    ("alpaca.parquet", "parquet", 4, ["instruction", "input", "output"]),
    ("chat.parquet", "parquet", 2, ["messages"]),
    ("sharegpt.json", "json", 2, ["conversations"]),
])
def test_each_format_is_read_into_rows_and_columns(name, fmt, rows, columns):
    table = read_table(FIXTURES / name, LIMIT)
    assert (table.format, len(table.rows), table.columns) == (fmt, rows, columns)


def test_bom_does_not_leak_into_the_first_column_name():
    assert read_table(FIXTURES / "bom.csv", LIMIT).rows[0]["instruction"] == "Translate to French."


def test_utf16_with_bom_is_decoded():
    assert read_table(FIXTURES / "utf16.csv", LIMIT).rows == [{"instruction": "Say héllo", "output": "Héllo!"}]


def test_excel_numbers_and_blank_cells_are_kept_as_values():
    rows = read_table(FIXTURES / "alpaca.xlsx", LIMIT).rows
    assert rows[1]["Input"] is None and rows[4]["Output"] == 42


@pytest.mark.parametrize("name, expected", [
    ("latin1.csv", ["latin1.csv, line 2", "not UTF-8", "byte 0xe9", "save it again as UTF-8"]),
    ("broken.jsonl", ["broken.jsonl, line 2", "not valid JSON", "one complete JSON object"]),
    ("broken.json", ["broken.json, line 2, column", "not valid JSON"]),
    ("header_only.csv", ["header_only.csv has a header (instruction, input, output) but no rows"]),
    ("empty.jsonl", ["empty.jsonl is empty"]),
    ("ragged.csv", ["ragged.csv, line 3", "3 values but the header has 2 columns", "double quotes"]),
])
def test_broken_files_are_refused_with_where_and_how_to_fix(name, expected):
    with pytest.raises(DataError) as refused:
        read_table(FIXTURES / name, LIMIT)
    for part in expected:
        assert part in str(refused.value)


def test_unknown_extension_names_the_supported_ones(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match=r"cannot read '\.txt' files\. Use one of: \.json, \.jsonl"):
        read_table(path, LIMIT)


def test_file_over_the_upload_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.jsonl"
    path.write_text("x" * 3 * 2**20)
    with pytest.raises(DataError, match="big.jsonl is 3 MB, over the 1 MB upload limit"):
        read_table(path, 2**20)


def test_uploaded_temp_file_is_named_by_its_original_name(tmp_path):
    path = tmp_path / "upload-123"
    path.write_text("")
    with pytest.raises(DataError, match="^mine.csv is empty"):
        read_table(path, LIMIT, name="mine.csv")


@pytest.mark.parametrize("suffix, kind", [(".parquet", "Parquet"), (".xlsx", "Excel")])
def test_a_corrupt_binary_file_is_named_by_its_own_name_never_the_servers_path(tmp_path, suffix, kind):
    stored = tmp_path / "upload-7f3a" / f"tmpx9{suffix}"
    stored.parent.mkdir()
    stored.write_bytes(b"PAR1 this is not really a table at all" * 10)
    with pytest.raises(DataError) as refused:
        read_table(stored, LIMIT, f"customers{suffix}")
    message = str(refused.value)
    assert message.startswith(f"customers{suffix} is not a readable {kind}") and str(tmp_path) not in message and "tmpx9" not in message
