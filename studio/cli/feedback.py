"""`python -m studio feedback list|export` and `python -m studio data pairs`: chat feedback and
preference files from the command line, through the same functions as the Chat and Data tabs."""

import argparse
import json
from pathlib import Path

from studio.data.preferences import DEFAULT_MAX_LENGTH, ISSUE_KINDS, inspect_preferences, save_preferences
from studio.feedback.items import export, feedback_items, parse_weights
from studio.models.catalog import load_tokenizer, resolve_model
from studio.settings import load_settings
from studio.store import Store


def add_commands(commands, data) -> None:
    """Add the feedback commands to the top-level parser and `pairs` to the data commands."""
    feedback = commands.add_parser("feedback", help="votes and corrections collected in the Chat tab").add_subparsers(dest="action", required=True)
    listing = feedback.add_parser("list", help="the feedback not dropped, newest first")
    listing.add_argument("--model", help="only items about this model key, e.g. adapter:3 or base:bundled")
    listing.add_argument("--json", action="store_true", help="print one JSON list")
    listing.set_defaults(run=list_command)
    exporting = feedback.add_parser("export", help="write the pairs (corrections as pairs too) as a preference file the Data tab reads")
    exporting.add_argument("file", type=Path, help="the JSONL file to write")
    exporting.add_argument("--items", help="comma-separated refs to export, e.g. vote:3,correction:2 (default: all)")
    exporting.set_defaults(run=export_command)
    training = feedback.add_parser("train", help="queue a DPO job continuing an adapter on chosen feedback items (instruction tuning on the corrections first, with enough of them)")
    training.add_argument("--adapter", required=True, help="the adapter to continue: its id, name or folder")
    training.add_argument("--items", required=True, help="comma-separated refs of the items to train on, e.g. vote:3,correction:2")
    training.add_argument("--weights", default="", help="raters' weights, e.g. ana=2,ben=0: each item of ana's is trained on twice, "
                                                        "ben's not at all (a rater not named weighs 1)")
    training.set_defaults(run=train_command)

    pairs = data.add_parser("pairs", help="validate a preference file (prompt, chosen, rejected) as the Data tab does")
    pairs.add_argument("file", type=Path)
    pairs.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="longest prompt and answer together, in tokens")
    pairs.add_argument("--model", default="bundled", help="base model whose tokenizer counts tokens")
    pairs.add_argument("--json", action="store_true", help="print one JSON object")
    pairs.add_argument("--save", metavar="NAME", help="save the usable pairs as a dataset of this name, for DPO or KTO (train --data NAME; --objective kto for KTO)")
    pairs.add_argument("--drop", default="", help=f"kinds of rows to leave out when saving, comma-separated: "
                                                  f"{', '.join(k for k, v in ISSUE_KINDS.items() if not v.always_dropped)}")
    pairs.add_argument("--template", default="chat", choices=["chat", "alpaca"], help="the prompt format the pairs are shown in")
    pairs.set_defaults(run=pairs_command)


def list_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    items = feedback_items(Store(settings.db_path), args.model)
    if args.json:
        print(json.dumps([{"ref": i.ref, "created": i.created, "verdict": i.verdict, "prompt": i.prompt, "chosen": i.chosen,
                           "rejected": i.rejected, "pair": i.is_pair} for i in items], ensure_ascii=False))
    for item in items if not args.json else []:
        print(f"{item.ref:<14} {item.created}  {item.verdict}: {item.prompt[:60]}")
    return 0


def export_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    refs = [ref.strip() for ref in args.items.split(",") if ref.strip()] if args.items is not None else None
    written = export(Store(settings.db_path), args.file, refs)
    print(f"Wrote {written} preference pair{'s' if written != 1 else ''} to {args.file}.")
    return 0


def pairs_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    tokenizer = load_tokenizer(resolve_model(args.model, settings.models_dir))
    report = inspect_preferences(args.file, tokenizer, max_bytes=settings.max_upload_bytes, max_length=args.max_length)
    drop = {kind.strip() for kind in args.drop.split(",") if kind.strip()}
    kept = len(report.kept_indices(drop))
    saved = save_preferences(Store(settings.db_path), settings.datasets_dir, report, name=args.save, drop=drop,
                             template=args.template) if args.save else None
    if args.json:
        print(json.dumps({"ok": True, "file": report.file_name, "format": report.format, "shape": report.shape, "rows": kept,
                          "total_rows": len(report.records), "warnings": [{"kind": i.kind, "message": i.message, "rows": i.rows}
                                                                           for i in report.issues],
                          "preview": report.side_by_side(), "dataset_id": saved.id if saved else None}, ensure_ascii=False))
        return 0
    print(f"{report.file_name}: {report.format}, {report.shape}; {kept} usable pairs of {len(report.records)}.")
    for issue in report.issues:
        print(f"- {issue.message}")
    if saved:
        print(f"Saved as '{saved.name}' (dataset {saved.id}, {saved.rows} pairs): train it with `train --data {saved.id}` (DPO; --objective kto for KTO).")
    return 0


def train_command(args: argparse.Namespace) -> int:
    from jobs.control import feedback_plan, submit_feedback_training  # opens the queue: only for this command
    from jobs.queue import use_queue_of

    settings = load_settings()
    use_queue_of(settings)  # the queue of the studio these settings name, as the store is
    store = Store(settings.db_path)
    refs = [ref.strip() for ref in args.items.split(",") if ref.strip()]
    adapter, weights = store.find_adapter(args.adapter), parse_weights(args.weights)
    print(feedback_plan(store, adapter.id, refs, weights).describe(adapter.name))
    for job in submit_feedback_training(store, settings.datasets_dir, adapter.id, refs, weights):
        waits = f", after job {job.after_job_id}" if job.after_job_id else ""
        print(f"Queued job {job.id} '{job.name}': {job.spec['objective'].upper()} on dataset {job.dataset_id}{waits}.")
    return 0
