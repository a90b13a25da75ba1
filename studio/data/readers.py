"""Read instruction files of every supported format into plain rows.

Each reader returns the column names and a list of dict rows, or raises DataError
naming the file and, where it applies, the line, row or column that is wrong.
"""

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from studio.errors import DataError

FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".xlsx": "excel", ".parquet": "parquet"}


@dataclass
class Table:
    format: str
    columns: list[str]
    rows: list[dict]


def read_table(path: Path, max_bytes: int, name: str | None = None) -> Table:
    """Read `path` by its extension. `name` is the file name to show (uploads have temp names)."""
    name = name or path.name
    fmt = FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise DataError(f"{name}: the studio cannot read '{Path(name).suffix or 'no extension'}' files. Use one of: {', '.join(FORMATS)}.")
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(
            f"{name} is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB upload limit. "
            "Split it into smaller files or raise STUDIO_MAX_UPLOAD_MB."
        )
    if size == 0:
        raise DataError(f"{name} is empty. Upload a file with at least one row.")
    table = {"json": _read_json, "jsonl": _read_jsonl, "csv": _read_csv, "tsv": _read_csv,
             "excel": _read_excel, "parquet": _read_parquet}[fmt](path, name, fmt)
    if not table.rows:
        what = f"a header ({', '.join(table.columns)}) but no rows" if table.columns else "no rows"
        raise DataError(f"{name} has {what}. Add at least one row of data.")
    return table


def _decode(path: Path, name: str) -> str:
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"{name}, line {line}: the file is not UTF-8 text (byte 0x{raw[error.start]:02x} cannot be decoded). "
            "It was probably saved as Windows-1252 or Latin-1: save it again as UTF-8 "
            "(in Excel: 'CSV UTF-8'), then upload it again."
        ) from None
    if not text.strip():
        raise DataError(f"{name} holds only blank space. Upload a file with at least one row.")
    return text


def _records(items: list, name: str, where: str) -> Table:
    columns: dict[str, None] = {}
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise DataError(f"{name}, {where} {number}: expected an object like {{\"instruction\": ..., \"output\": ...}}, found {type(item).__name__}.")
        columns.update(dict.fromkeys(item))
    return Table("", list(columns), items)


def _read_json(path: Path, name: str, fmt: str) -> Table:
    text = _decode(path, name)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # one object per line in a .json file: read it as JSON Lines
            return _read_jsonl(path, name, "jsonl")
        raise DataError(f"{name}, line {error.lineno}, column {error.colno}: not valid JSON ({error.msg}). Fix the file and upload it again.") from None
    if isinstance(data, dict):
        lists = [key for key, value in data.items() if isinstance(value, list)]
        if len(lists) != 1:
            raise DataError(f"{name}: expected a list of records, or an object holding exactly one list of records; found an object with keys {', '.join(data) or 'none'}.")
        data = data[lists[0]]
    if not isinstance(data, list):
        raise DataError(f"{name}: expected a list of records, found a single {type(data).__name__}.")
    table = _records(data, name, "record")
    table.format = fmt
    return table


def _read_jsonl(path: Path, name: str, fmt: str) -> Table:
    items = []
    for number, line in enumerate(_decode(path, name).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise DataError(f"{name}, line {number}, column {error.colno}: not valid JSON ({error.msg}). Each line must hold one complete JSON object.") from None
        if not isinstance(items[-1], dict):
            raise DataError(f"{name}, line {number}: expected a JSON object, found {type(items[-1]).__name__}.")
    table = _records(items, name, "line")
    table.format = fmt
    return table


def _read_csv(path: Path, name: str, fmt: str) -> Table:
    csv.field_size_limit(2**31 - 1)
    delimiter = "\t" if fmt == "tsv" else ","
    reader = csv.reader(io.StringIO(_decode(path, name), newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        _check_header(header, name)
        rows = []
        for values in reader:
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(header):
                raise DataError(
                    f"{name}, line {reader.line_num}: {len(values)} values but the header has {len(header)} columns. "
                    f"A value probably contains a '{'tab' if fmt == 'tsv' else ','}' without quotes: put such values in double quotes."
                )
            rows.append(dict(zip(header, values)))
    except csv.Error as error:
        raise DataError(f"{name}, line {reader.line_num}: {error}. Check the quotes on that line.") from None
    return Table(fmt, header, rows)


def _check_header(header: list, name: str) -> None:
    clean = [str(h).strip() if h is not None else "" for h in header]
    if "" in clean:
        raise DataError(f"{name}: column {clean.index('') + 1} of the header has no name. Give every column a name in the first row.")
    repeated = sorted({h for h in clean if clean.count(h) > 1})
    if repeated:
        raise DataError(f"{name}: the header names column '{repeated[0]}' more than once. Give each column its own name.")


def _read_excel(path: Path, name: str, fmt: str) -> Table:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:
        raise DataError(f"{name} is not a readable Excel .xlsx workbook ({_reason(error, path, name)}). "
                        "Open it in Excel and save it as .xlsx.") from None
    lines = [row for row in workbook.worksheets[0].iter_rows(values_only=True) if any(v not in (None, "") for v in row)]
    workbook.close()
    if not lines:
        raise DataError(f"{name}: the first sheet is empty. Put a header row and the data on the first sheet.")
    header = [str(h).strip() if h is not None else "" for h in lines[0]]
    while header and header[-1] == "":
        header.pop()
    _check_header(header, name)
    return Table(fmt, header, [dict(zip(header, row)) for row in lines[1:]])


def _read_parquet(path: Path, name: str, fmt: str) -> Table:
    import pyarrow.parquet

    try:
        table = pyarrow.parquet.read_table(path)
    except Exception as error:
        raise DataError(f"{name} is not a readable Parquet file ({_reason(error, path, name)}). "
                        "Write it again from the tool that made it (for example pandas' to_parquet).") from None
    return Table(fmt, table.column_names, table.to_pylist())


def _reason(error: Exception, path: Path, name: str) -> str:
    """A library's error text with the file named as the user knows it, not by the server's temporary path."""
    return str(error).replace(str(path), name).replace(str(path.resolve()), name)
