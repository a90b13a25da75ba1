"""`python -m studio ...`: each command opens the store or settings and calls one studio function.

A StudioError is printed to stderr and exits with code 2; bad arguments exit 2 too.
"""

import argparse
import json
import sys
from pathlib import Path

from studio.data import DEFAULT_MAX_LENGTH, inspect_file
from studio.errors import StudioError
from studio.models import load_tokenizer, resolve_model
from studio.settings import load_settings


def _mapping(text: str) -> dict[str, str]:
    pairs = [p.split("=", 1) for p in text.split(",") if p]
    if any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError("use ROLE=COLUMN pairs separated by commas, e.g. instruction=question,output=answer")
    return dict(pairs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m studio", description="Adapter Studio from the command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data", help="work with instruction data files").add_subparsers(dest="action", required=True)
    check = data.add_parser("check", help="validate a data file as the Data tab does")
    check.add_argument("file", type=Path)
    check.add_argument("--template", help="prompt template: alpaca or chat (default: by the file's shape)")
    check.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="longest row in tokens")
    check.add_argument("--mapping", type=_mapping, help="columns to use, e.g. instruction=question,output=answer")
    check.add_argument("--model", default="bundled", help="base model whose tokenizer counts tokens")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.set_defaults(run=data_check)
    return parser


def data_check(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        tokenizer = load_tokenizer(resolve_model(args.model, settings.models_dir))
        report = inspect_file(args.file, tokenizer, max_bytes=settings.max_upload_bytes, mapping=args.mapping,
                              template=args.template, max_length=args.max_length)
    except StudioError as error:
        if args.json:
            print(json.dumps({"ok": False, "rows": 0, "format": None, "mapping": None, "errors": [str(error)], "warnings": []}))
        raise
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        print(f"{report.file_name}: {report.format}, {report.shape} records, mapping {report.mapping}, template {report.template}")
        print(f"{report.usable_rows} usable rows of {len(report.records)}.")
        for issue in report.issues:
            print(f"- {issue.message}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
