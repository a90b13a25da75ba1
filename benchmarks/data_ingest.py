"""Seconds to validate and preview 100,000 rows of each format (run by hand).

    .venv/bin/python -m benchmarks.data_ingest [--rows 100000]

Baseline, measured in the same run: reading the file alone. The ratio shows what the
studio's validation, rendering and token counting add on top of reading.
"""

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import pyarrow
import pyarrow.parquet
from openpyxl import Workbook

from benchmarks.instructions import instruction_records
from studio.data.instructions import inspect_file, length_histogram
from studio.data.readers import read_table
from studio.models.catalog import load_tokenizer, prepare_bundled_model
from studio.settings import load_settings
from studio.ui.html import preview

COLUMNS = ["instruction", "input", "output"]


def write_all(records: list[dict], folder: Path) -> list[Path]:
    (folder / "data.json").write_text(json.dumps(records))
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for name, delimiter in (("data.csv", ","), ("data.tsv", "\t")):
        with open(folder / name, "w", newline="") as out:
            writer = csv.DictWriter(out, COLUMNS, delimiter=delimiter)
            writer.writeheader()
            writer.writerows(records)
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(records), folder / "data.parquet")
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append(COLUMNS)
    for r in records:
        sheet.append([r[c] for c in COLUMNS])
    workbook.save(folder / "data.xlsx")
    return sorted(folder.iterdir(), key=lambda p: p.suffix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    settings = load_settings()
    tokenizer = load_tokenizer(prepare_bundled_model(settings.models_dir))
    with tempfile.TemporaryDirectory() as tmp:
        files = write_all(instruction_records(args.rows), Path(tmp))
        print(f"{args.rows:,} rows per file\n")
        print(f"{'format':<10}{'MB':>7}{'read s':>9}{'validate+preview s':>21}{'ratio':>8}{'rows/s':>10}")
        for path in files:
            started = time.perf_counter()
            read_table(path, 2**40)
            read_seconds = time.perf_counter() - started
            started = time.perf_counter()
            report = inspect_file(path, tokenizer, max_bytes=2**40)
            preview(report, set())
            length_histogram(report)
            total = time.perf_counter() - started
            print(f"{path.suffix[1:]:<10}{path.stat().st_size / 2**20:>7.1f}{read_seconds:>9.2f}{total:>21.2f}"
                  f"{total / read_seconds:>8.1f}{args.rows / total:>10,.0f}")


if __name__ == "__main__":
    main()
