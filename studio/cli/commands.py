"""`python -m studio ...`: each command opens the store or settings and calls one studio function.

A StudioError is printed to stderr and exits with code 2; bad arguments exit 2 too.
"""

import argparse
import dataclasses
import json
import logging
import shutil
import sys
from pathlib import Path

from studio.adapters.imports import resolve_adapter
from studio.cli.feedback import add_commands as add_feedback_commands
from studio.cli.people import add_commands as add_people_commands
from studio.cli.storage import add_commands as add_storage_commands
from studio.data.blending import blend_datasets, plan_blend
from studio.data.instructions import DEFAULT_MAX_LENGTH, inspect_file
from studio.data.preferences import inspect_data_file, save_report
from studio.device import pick_device
from studio.errors import DataError, StudioError
from studio.export.merge import DTYPES
from studio.models.catalog import load_tokenizer, resolve_model
from studio.settings import Settings, load_settings
from studio.store import DatasetRecord, JobRecord, Store
from studio.store.authors import COMMAND_LINE, acting_as
from studio.train.plan import PRESET_FLAGS, dataset_stats, make_plan, measured_tokens_per_second
from studio.train.spec import check_objective
from studio.train.spec import PREFERENCE_OBJECTIVES, TrainSpec
from studio.train.sweeps import parse_sweep, sweep_specs


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
    add_feedback_commands(commands, data)
    attach = data.add_parser("attach-test", help="judge a saved dataset's adapters on a test file of your own")
    attach.add_argument("dataset", help="a saved dataset's id or name")
    attach.add_argument("file", type=Path, help="held-out examples, in any format the Data tab reads")
    attach.set_defaults(run=attach_test_command)
    keep = data.add_parser("keep", help="prompts whose answers a saved dataset's adapters must not change: show them, or save new ones")
    keep.add_argument("dataset", help="a saved dataset's id or name")
    keep.add_argument("prompts", nargs="*", help="the prompts (they replace those saved); none shows those saved")
    keep.add_argument("--file", type=Path, help="a text file of prompts, one per line (they replace those saved)")
    keep.set_defaults(run=keep_command)

    train = commands.add_parser("train", help="train an adapter (here, or on the queue with --enqueue)")
    train.add_argument("--data", required=True, help="a data file, or a saved dataset's id or name")
    train.add_argument("--model", default="bundled", help="bundled, a local model folder, or a hub id")
    train.add_argument("--name", default="", help="the adapter's name (default: dataset and method)")
    train.add_argument("--output", type=Path, help="also copy the finished adapter folder here")
    train.add_argument("--enqueue", action="store_true", help="put the job on the queue instead of training here")
    train.add_argument("--json", action="store_true", help="print the outcome as one JSON object (one per line with --sweep)")
    train.add_argument("--blend", action="append", type=_blend_part, default=[], metavar="DATASET:SHARE",
                       help="blend in another dataset (a saved one by id or name, or a data file) as this share of the rows, e.g. general:0.1; repeatable")
    train.add_argument("--sweep", action="append", default=[], metavar="FIELD=V1,V2",
                       help="train one adapter per combination of these values, grouped as one sweep; repeatable")
    train.add_argument("--preset", default="auto", choices=list(PRESET_FLAGS),
                       help="how long and how fast to train, planned from the data (default auto); flags you give win")
    train.add_argument("--test-file", type=Path, help="your own held-out examples (a data file): the verdict is judged on them")
    train.add_argument("--verdict", action=argparse.BooleanOptionalAction, default=True,
                       help="after training, evaluate the adapter against its base and print the verdict (default on)")
    for field in dataclasses.fields(TrainSpec):
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if field.type in (bool, "bool"):
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            train.add_argument(flag, default=None, choices=field.metadata["choices"], help=help_text)
    train.set_defaults(run=train_command)

    jobs = commands.add_parser("jobs", help="list jobs and their state")
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(run=jobs_command)

    chat = commands.add_parser("chat", help="one answer from a model, with or without an adapter")
    chat.add_argument("--model", help="bundled, a local model folder (a merged model too) or a hub id "
                                      "(default: the adapter's base model, else bundled)")
    chat.add_argument("--adapter", help="a registered adapter's id or name, or an adapter folder")
    chat.add_argument("--prompt", required=True, help="the message to answer")
    chat.add_argument("--system", default="", help="a system prompt read before the message")
    chat.add_argument("--max-new-tokens", type=int, default=128, help="longest answer in tokens")
    chat.add_argument("--temperature", type=float, default=0.0, help="0 (the default) gives the same answer every time")
    chat.add_argument("--top-p", type=float, default=0.9, help="sample from the likeliest tokens that make up this share")
    chat.add_argument("--seed", type=int, default=0, help="makes a sampled answer repeatable")
    chat.add_argument("--json", action="store_true", help="print one JSON object")
    chat.set_defaults(run=chat_command)

    evaluate = commands.add_parser("evaluate", help="measure an adapter against its base on its validation rows")
    evaluate.add_argument("--adapter", required=True, help="a registered adapter's id, name or folder")
    evaluate.add_argument("--json", action="store_true", help="print the numbers as one JSON object")
    evaluate.add_argument("--test-file", type=Path, help="judge it on this data file of your own instead of its validation rows")
    evaluate.set_defaults(run=evaluate_command)

    merge = commands.add_parser("merge", help="merge an adapter into its base: a plain Hugging Face model folder")
    merge.add_argument("--adapter", required=True, help="a registered adapter's id, name or folder")
    merge.add_argument("--output", required=True, type=Path, help="the new folder for the merged model")
    merge.add_argument("--dtype", default="float32", choices=list(DTYPES), help="precision of the merged weights (default float32)")
    merge.set_defaults(run=merge_command)

    export = commands.add_parser("export", help="zip an adapter, or its merged model, with its model card")
    export.add_argument("--adapter", required=True, help="a registered adapter's id, name or folder")
    export.add_argument("--output", required=True, type=_zip_path, help="the zip file to write")
    export.add_argument("--merged", action="store_true", help="zip the adapter's newest merged model (merged in float32 now if there is none)")
    export.add_argument("--format", default="zip", choices=["zip", "gguf", "lora"],
                        help="zip: the adapter or merged model as it is; gguf: the merged model as GGUF files for llama.cpp "
                             "and Ollama, checked with llama.cpp; lora: the adapter alone for vLLM and as a GGUF LoRA for llama.cpp")
    export.add_argument("--kinds", default="f16,q8_0", type=lambda text: [k.strip() for k in text.split(",") if k.strip()],
                        help="GGUF kinds, separated by commas, among f16, q8_0, q4_k_m (default f16,q8_0)")
    export.set_defaults(run=export_command)

    add_people_commands(commands)
    add_storage_commands(commands)
    take_in = commands.add_parser("import", help="register an adapter trained elsewhere: a peft adapter folder or a zip of one")
    take_in.add_argument("source", type=Path, help="the adapter folder (holding adapter_config.json) or a .zip of it")
    take_in.add_argument("--name", default="", help="the adapter's name in the studio (default: the folder's or zip's name)")
    take_in.add_argument("--base", default="", help="its base model, when adapter_config.json names one not found here (bundled, a folder or a hub id)")
    take_in.add_argument("--template", choices=["alpaca", "chat"], help="the prompt format it was trained with (default: its spec.json, else chat where the base has a chat template)")
    take_in.set_defaults(run=import_command)

    in_use = commands.add_parser("in-use", help="the adapter in use: show it, put another in use, or roll back to the one before")
    change = in_use.add_mutually_exclusive_group()
    change.add_argument("--adapter", metavar="ID|NAME", help="put this registered adapter in use")
    change.add_argument("--roll-back", action="store_true", help="bring back the adapter in use before the current one")
    in_use.set_defaults(run=in_use_command)
    return parser


def _blend_part(text: str) -> tuple[str, float]:
    ref, _, share = text.rpartition(":")
    try:
        return ref, float(share)
    except ValueError:
        raise argparse.ArgumentTypeError(f"write a blended dataset as DATASET:SHARE, e.g. general:0.1, not '{text}'") from None


def _zip_path(text: str) -> Path:
    if not text.lower().endswith(".zip"):
        raise argparse.ArgumentTypeError(f"the output must be a .zip file name, not '{text}'")
    return Path(text)


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


def attach_test_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = Store(settings.db_path)
    dataset = store.find_dataset(args.dataset)
    test_set = test_set_for(args.file, settings, store, resolve_model("bundled", settings.models_dir))
    store.attach_test_set(dataset.id, test_set.id)
    print(f"Adapters of '{dataset.name}' are now judged on '{test_set.name}' ({test_set.rows} rows) instead of its validation rows.")
    return 0


def keep_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = Store(settings.db_path)
    dataset = store.find_dataset(args.dataset)
    prompts = list(args.prompts) + (_read_lines(args.file) if args.file else [])
    if prompts:
        dataset = store.keep_answers_of(dataset.id, prompts)
        count = len(dataset.keep_prompts)
        print(f"Every evaluation of the adapters of '{dataset.name}' asks {count} must-not-change prompt{'s' * (count != 1)} from now on:")
    elif not dataset.keep_prompts:
        print(f"'{dataset.name}' has no must-not-change prompts yet: give them after its name, or in a file with --file.")
    for prompt in dataset.keep_prompts:
        print(f"  {prompt}")
    return 0


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"Cannot read {path}: {error}. Give a UTF-8 text file with one prompt per line.") from None


def dataset_for(ref: str, settings: Settings, store: Store, base_dir: Path) -> DatasetRecord:
    """A saved dataset by id or name, or a data file (instructions or preference pairs) checked and saved as the Data tab does."""
    path = Path(ref)
    if not path.is_file():
        return store.find_dataset(ref)
    report = inspect_data_file(path, load_tokenizer(base_dir), max_bytes=settings.max_upload_bytes)
    return save_report(store, settings.datasets_dir, report, name=path.stem)


def test_set_for(path: Path | None, settings: Settings, store: Store, base_dir: Path) -> DatasetRecord | None:
    """A user's own test file, checked and saved as a dataset that holds nothing out."""
    from studio.evaluate.measure import save_test_set

    if path is None:
        return None
    return save_test_set(store, settings.datasets_dir, path, load_tokenizer(base_dir), settings.max_upload_bytes)


def train_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = Store(settings.db_path)
    names = [f.name for f in dataclasses.fields(TrainSpec)]
    given = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    TrainSpec.from_dict(given)  # a bad flag is refused before any data is read
    if args.sweep and args.output:
        raise StudioError("--output copies one adapter; leave it out with --sweep (each run's folder is printed).")
    base_dir = resolve_model(args.model, settings.models_dir)
    dataset = dataset_for(args.data, settings, store, base_dir)
    if args.blend:
        others = {dataset_for(ref, settings, store, base_dir).id: share for ref, share in args.blend}
        dataset = blend_datasets(store, settings.datasets_dir, plan_blend(store, dataset.id, others))
    test_set = test_set_for(args.test_file, settings, store, base_dir)
    plan = make_plan(dataset_stats(dataset, base_dir), PRESET_FLAGS[args.preset], given, pick_device().name, base_dir,
                     measured_tokens_per_second(store, args.model))
    check_objective(dataset, plan.spec)  # DPO or KTO on instructions, or SFT on pairs: refused before anything runs
    print(plan.describe().replace("**", ""), file=sys.stderr if args.json else sys.stdout)
    spec = plan.spec
    runs = sweep_specs(spec, parse_sweep(";".join(args.sweep))) if args.sweep else [("", spec)]
    name = args.name or f"{dataset.name}-{spec.method}"
    sweep = name if args.sweep else None
    if args.enqueue:
        from jobs.control import submit_training  # opens the queue only when it is used
        from jobs.queue import use_queue_of

        use_queue_of(settings)  # the queue of the studio these settings name, as the store is
        for label, run_spec in runs:
            job = submit_training(store, dataset_id=dataset.id, base_model=args.model, spec=run_spec, name=f"{name} {label}".strip(), sweep=sweep,
                                  test_dataset_id=test_set.id if test_set else None)
            print(json.dumps({"job_id": job.id, "state": job.state}) if args.json else f"Job {job.id} is queued.")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for label, run_spec in runs:
        _train_here(args, settings, store, dataset, run_spec, f"{name} {label}".strip(), sweep, test_set)
    return 0


def _train_here(args: argparse.Namespace, settings: Settings, store: Store, dataset: DatasetRecord, spec: TrainSpec,
                name: str, sweep: str | None, test_set: DatasetRecord | None) -> None:
    from jobs.run import run_job

    job = store.add_job(kind="train", name=name, dataset_id=dataset.id, base_model=args.model, spec=spec.to_json(), sweep=sweep)
    if test_set:
        store.update_job(job.id, test_dataset_id=test_set.id)
    result = run_job(settings, store, job.id)
    if result is None:
        raise StudioError(store.job(job.id).error)
    if args.output:
        shutil.copytree(result.adapter_dir, args.output, dirs_exist_ok=True)
    adapter_id = store.job(job.id).adapter_id
    outcome = {"job_id": job.id, "adapter_id": adapter_id, "adapter_dir": str(args.output or result.adapter_dir),
               "state": store.job(job.id).state, "dataset_id": dataset.id, **result.summary()}
    judge = args.verdict and spec.objective not in PREFERENCE_OBJECTIVES  # a preference run is judged by its reward margins
    if judge:
        outcome["verdict"] = str(_judge_here(settings, store, adapter_id))
    print(json.dumps(outcome) if args.json else f"Adapter saved in {outcome['adapter_dir']} after {result.steps} steps "
          f"(final loss {result.final_loss:.4f}, {result.tokens} tokens, {result.seconds:.0f} s).")
    if judge and not args.json:
        print(outcome["verdict"])


def _judge_here(settings: Settings, store: Store, adapter_id: int, test_dataset_id: int | None = None):
    """Evaluate an adapter in this process (batched answers: well under a minute for 20 prompts on a CPU) and
    return its verdict; it is written into the adapter's model card too."""
    from studio.evaluate.measure import evaluate_adapter
    from studio.evaluate.verdict import verdict_for, write_to_card

    evaluate_adapter(store, settings.models_dir, adapter_id, test_dataset_id=test_dataset_id,
                     general_requests_asked=settings.general_requests)
    verdict = verdict_for(store, adapter_id)
    write_to_card(store.adapter(adapter_id).path, verdict)
    return verdict


def jobs_command(args: argparse.Namespace) -> int:
    store = Store(load_settings().db_path)
    rows = [{"id": j.id, "name": j.name, "state": j.state, "step": j.step, "total_steps": j.total_steps,
             "created": j.created, "error": j.error, "notes": (j.notes or "").splitlines()} for j in store.jobs()]
    if args.json:
        print(json.dumps(rows))
    for row in rows if not args.json else []:
        print(f"{row['id']:>4}  {row['state']:<12} {row['step']}/{row['total_steps']:<8} {row['name']}  {row['error'] or ''}"
              + "".join(f"\n      {note}" for note in row["notes"]))
    return 0


def chat_command(args: argparse.Namespace) -> int:
    from studio.chat.server import GenerationSettings, ModelServer, choose_with_base  # loads torch: only for this command

    settings = load_settings()
    store = Store(settings.db_path)
    adapter_ref = f"adapter:{resolve_adapter(store, settings, args.adapter).id}" if args.adapter else None
    choice = choose_with_base(adapter_ref, args.model, settings, store)
    generation = GenerationSettings(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                    seed=args.seed, system_prompt=args.system)
    answer = ModelServer(settings.chat_memory_mb).answer(choice, [{"role": "user", "content": args.prompt}], generation)
    if args.json:
        print(json.dumps({"model": choice.label, "key": choice.key, "template": choice.template, "answer": answer.text,
                          "tokens": answer.tokens, "tokens_per_second": round(answer.tokens_per_second, 2)}, ensure_ascii=False))
    else:
        print(answer.text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with acting_as(COMMAND_LINE):  # what a command makes is stamped as made on the command line
            return args.run(args)
    except StudioError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run_here(settings: Settings, store: Store, kind: str, name: str, base_model: str, spec: dict) -> JobRecord:
    """Run an evaluate, merge, mix or export job in this process, recorded in the store like a queued one."""
    from jobs.artifact_run import run_artifact_job
    from jobs.run import quiet_libraries

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    quiet_libraries()
    job = store.add_job(kind=kind, name=name, dataset_id=None, base_model=base_model, spec=json.dumps(spec))
    if not run_artifact_job(settings, store, job.id):
        raise StudioError(store.job(job.id).error)
    return store.job(job.id)


def evaluate_command(args: argparse.Namespace) -> int:
    from studio.evaluate.measure import changes

    settings = load_settings()
    store = Store(settings.db_path)
    from studio.evaluate.verdict import verdict_for

    adapter = resolve_adapter(store, settings, args.adapter)
    test_set = test_set_for(args.test_file, settings, store, resolve_model(adapter.base_model, settings.models_dir))
    spec = {"adapter_id": adapter.id, **({"test_dataset_id": test_set.id} if test_set else {})}
    _run_here(settings, store, "evaluate", f"evaluate {adapter.name}", adapter.base_model, spec)
    evaluation = store.latest_evaluation(adapter.id)
    verdict = verdict_for(store, adapter.id)
    if args.json:
        print(json.dumps({"adapter_id": adapter.id, **dataclasses.asdict(evaluation), "verdict": verdict.kind,
                          "verdict_text": str(verdict), "answers": store.answers(evaluation.id)}))
        return 0
    print(verdict)
    print(f"Adapter {adapter.id} '{adapter.name}' on {evaluation.rows} {evaluation.source} (base → adapter):")
    for change in changes(evaluation):
        print(f"  {change.name:<16} {change}")
    return 0


def merge_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = Store(settings.db_path)
    adapter = resolve_adapter(store, settings, args.adapter)
    output = args.output.expanduser().resolve()
    spec = {"adapter_id": adapter.id, "dtype": args.dtype, "output": str(output)}
    _run_here(settings, store, "merge", f"merge {adapter.name} ({args.dtype})", adapter.base_model, spec)
    merge = store.merges(adapter.id)[0]
    print(f"Merged model saved in {merge.path} ({merge.dtype}; before saving, it answered {merge.verified_prompts} check prompts exactly as the adapter does).")
    return 0


def export_command(args: argparse.Namespace) -> int:
    from studio.export.merge import export_adapter, export_merged

    settings = load_settings()
    store = Store(settings.db_path)
    adapter = resolve_adapter(store, settings, args.adapter)
    if args.format in ("gguf", "lora"):
        if args.output.exists():
            raise StudioError(f"'{args.output}' already exists. Choose a new file name, or remove the old one first.")
        spec = {"adapter_id": adapter.id, **({"kinds": args.kinds} if args.format == "gguf" else {})}
        job = _run_here(settings, store, args.format, f"{args.format} {adapter.name}", adapter.base_model, spec)
        exported = next(e for e in store.exports(adapter.id) if e.job_id == job.id)
        path = Path(shutil.copyfile(exported.path, args.output))
        prompts = exported.report["prompts"]
        for kind in exported.report.get("kinds", []):
            print(f"{kind['file']}: {kind['mb']} MB, {kind['agree']} of {prompts} check answers equal to the merged model's")
        if args.format == "lora":
            print(f"GGUF LoRA on llama.cpp: {exported.report['gguf_lora_agree']} of {prompts} check answers equal to the merged model's")
    elif not args.merged:
        path = export_adapter(store, adapter.id, args.output)
    else:
        if not store.merges(adapter.id):
            _run_here(settings, store, "merge", f"merge {adapter.name} (float32)", adapter.base_model,
                      {"adapter_id": adapter.id, "dtype": "float32"})
        path = export_merged(store, store.merges(adapter.id)[0].id, args.output)
    print(f"Wrote {path} ({path.stat().st_size / 2**20:.1f} MB).")
    return 0


def import_command(args: argparse.Namespace) -> int:
    from studio.adapters.imports import import_adapter

    settings = load_settings()
    adapter = import_adapter(Store(settings.db_path), settings, args.source.expanduser(), name=args.name, base_model=args.base,
                             template=args.template or "")
    print(f"Adapter {adapter.id} '{adapter.name}' is registered (base {adapter.base_model}, folder {adapter.path}).")
    return 0


def in_use_command(args: argparse.Namespace) -> int:
    from studio.adapters.in_use import in_use, put_in_use, roll_back
    from studio.people import activity

    store = Store(load_settings().db_path)
    if args.adapter:
        chosen = put_in_use(store, store.find_adapter(args.adapter).id)
        activity.record(store, COMMAND_LINE, "in use", f"put adapter #{chosen.adapter.id} '{chosen.adapter.name}' in use")
    elif args.roll_back:
        chosen = roll_back(store)
        activity.record(store, COMMAND_LINE, "in use", f"rolled back to adapter #{chosen.adapter.id} '{chosen.adapter.name}'")
    else:
        chosen = in_use(store)
    if chosen is None:
        print("No adapter is in use yet: choose one with --adapter ID|NAME.")
    else:
        print(f"Adapter #{chosen.adapter.id} '{chosen.adapter.name}' is in use. {chosen.describe()}")
    return 0
