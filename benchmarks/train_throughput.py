"""Training speed: the standard recipe against the studio's default path, side by side.

    .venv/bin/python -m benchmarks.train_throughput [--steps 40] [--batch-size 8] [--max-length 512]

The standard recipe is TRL's SFTTrainer with its defaults (random batches padded to their
longest row, gradient checkpointing on) on prompt/completion text, in float32. TRL 1.16 turns
bf16 autocast on by default; it is turned off explicitly here (`bf16=False`), because the issue
defines the standard recipe as float32 and because a CPU without bf16 units emulates bf16
matrix products some hundred times slower, which would flatter the studio's path. The
studio's path is `studio.train.recipe.train`, exactly as a job runs it. Both train the same LoRA
(rank 16, alpha 32, all linear layers) for one pass over the same rows, so they see the same
real tokens; each runs in a process of its own so that peak memory is its own. Validation loss
is measured the same way for both afterwards: the base in float32 with the adapter, on held-out
rows, over answer tokens.

The tuned library recipe (`trl-tuned`) is the best one TRL offers here: gradient checkpointing
off, length-grouped batches (`train_sampling_strategy="group_by_length"`), LoRA dropout 0, bf16
autocast only where `studio.device` finds bf16 units that measure faster (float32 on a CPU
without them). Not `padding_free=True`: TRL 1.16 documents it for FlashAttention only and
refuses it without packing unless `max_length` is None; on a CPU with `sdpa`, Transformers 5
does keep the packed rows apart (it derives a block-diagonal mask from the restarting
`position_ids`; the losses match the padded batch's), but attends over the whole batch's length
under that mask: on a batch of eight rows of 86-91 tokens one training step took 6.6 CPU s
against 5.3 s padded. Its `packing=True` changes what a step holds: no longer the same recipe.

Recipes run in rounds (A B C, A B C, ...) so that a change in the machine's load falls on all
of them alike, and each table cell is the median over rounds. Each recipe's process measures
the matrix-multiply speed (float32, or bf16 where it trains in bf16) before and after
training: `% ceiling` is real tokens/s x FLOPs per token / that speed. On a machine shared
with other work, `--cpu-time` (with OMP_NUM_THREADS=1) times each recipe by its process's CPU
seconds, model loading and saving included, and the ceiling the same way.
"""

import argparse
import json
import math
import statistics
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.instructions import instruction_records
from studio.data.instructions import content_hash
from studio.data.prompts import encode, get_template, render
from studio.device import memory_mb, pick_device
from studio.models.catalog import bundled_model_dir, load_tokenizer, prepare_bundled_model
from studio.settings import load_settings

RECIPES = ["standard", "trl-tuned", "studio-lora", "studio-qlora", "studio-lora-gc"]  # -gc: gradient checkpointing on, for less memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per recipe (rows = steps x batch size)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated, from: " + ", ".join(RECIPES))
    parser.add_argument("--validation-rows", type=int, default=32, help="held-out rows the validation loss is measured on")
    parser.add_argument("--cpu-time", action="store_true", help="time by each process's CPU seconds, not the wall clock: "
                        "with OMP_NUM_THREADS=1, what a recipe costs whatever else loads a shared machine")
    parser.add_argument("--rounds", type=int, default=3, help="each recipe runs once per round, interleaved; the table shows medians")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one recipe, in a child process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_recipe(args.run, args)))
        return
    prepare_bundled_model(load_settings().models_dir)
    records = instruction_records(args.steps * args.batch_size + args.validation_rows, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "records.json").write_text(json.dumps(records))
        runs = {recipe: [] for recipe in args.recipes.split(",")}
        for round_ in range(args.rounds):
            for recipe in runs:
                command = [sys.executable, "-m", "benchmarks.train_throughput", "--run", recipe, "--folder", folder,
                           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
                           "--validation-rows", str(args.validation_rows)] + (["--cpu-time"] if args.cpu_time else [])
                print(f"round {round_ + 1}: running {recipe} ...", file=sys.stderr, flush=True)
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{recipe} failed:\n{done.stderr[-3000:]}")
                runs[recipe].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"  {json.dumps(runs[recipe][-1])}", file=sys.stderr, flush=True)
    flops = flops_per_token(bundled_model_dir(load_settings().models_dir))
    print_table({recipe: medians(measured, flops) for recipe, measured in runs.items()}, args)


def flops_per_token(base_dir: Path) -> float:
    """What studio.device.training_flops_per_token counts for a LoRA model, the same for every recipe: 4 per weight of the base."""
    from safetensors import safe_open

    with safe_open(str(base_dir / "model.safetensors"), "pt") as weights:
        return 4 * sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())


def medians(runs: list[dict], flops: float) -> dict:
    """Each measure's median over the rounds; tokens/s and % of the ceiling per run first, then their medians."""
    per_run = [{**r, "rate": r["real_tokens"] / r["seconds"], "utilisation": r["real_tokens"] / r["seconds"] * flops / r["ceiling"]}
               for r in runs]
    return {key: statistics.median(r[key] for r in per_run) for key in per_run[0]}


def run_recipe(recipe: str, args) -> dict:
    records = json.loads((args.folder / "records.json").read_text())
    train_records, validation_records = records[:-args.validation_rows], records[-args.validation_rows:]
    base_dir = bundled_model_dir(load_settings().models_dir)
    adapter_dir = args.folder / f"adapter-{recipe}"
    tokenizer = load_tokenizer(base_dir)
    clock = time.process_time if args.cpu_time else time.perf_counter
    ceiling_before = matmul_ceiling(clock)
    if recipe in ("standard", "trl-tuned"):
        measured = train_trl(train_records, base_dir, adapter_dir, tokenizer, recipe == "trl-tuned", args)
    else:
        method = recipe.removeprefix("studio-").removesuffix("-gc")
        measured = train_studio(train_records, base_dir, adapter_dir, method, recipe.endswith("-gc"), args)
    measured["ceiling"] = (ceiling_before + matmul_ceiling(clock)) / 2
    measured["peak_memory_mb"] = memory_mb(pick_device())
    measured["validation_loss"] = validation_loss(base_dir, adapter_dir, validation_records, tokenizer, args.max_length)
    return measured


def train_trl(records, base_dir: Path, adapter_dir: Path, tokenizer, tuned: bool, args) -> dict:
    """TRL's SFTTrainer with its defaults in float32 (the standard recipe), or tuned for speed."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    template = get_template("alpaca")
    rows = [render(r, template, tokenizer) for r in records]
    dataset = Dataset.from_list([{"prompt": r[0].text, "completion": "".join(s.text for s in r[1:])} for r in rows])
    # The standard recipe is float32 by definition (TRL's own default is bf16); the tuned one takes bf16 where it is faster.
    cpu_started = time.process_time()  # with --cpu-time, model loading and saving count too, as in the studio's train()
    tuning = {"gradient_checkpointing": False, "train_sampling_strategy": "group_by_length", "bf16": pick_device().bf16} if tuned else {"bf16": False}
    config = SFTConfig(output_dir=str(args.folder / "trl"), per_device_train_batch_size=args.batch_size,
                       max_length=args.max_length, num_train_epochs=1, learning_rate=2e-4, logging_steps=1,
                       save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available(), seed=42,
                       **tuning)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0 if tuned else 0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    counted = {"real": 0, "computed": 0}
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)
        counted["real"] += int(batch["attention_mask"].sum())
        counted["computed"] += batch["input_ids"].numel()
        return batch

    trainer.data_collator = counting_collator
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(str(adapter_dir))
    return {"steps": trainer.state.global_step, "seconds": time.process_time() - cpu_started if args.cpu_time else seconds, "real_tokens": counted["real"], "computed_tokens": counted["computed"]}


def train_studio(records, base_dir: Path, adapter_dir: Path, method: str, checkpointing: bool, args) -> dict:
    import datasets  # noqa: F401  what train() imports on first use (datasets, TRL through studio.train.trainer): imported
    import studio.train.trainer  # noqa: F401  before the clock starts, as train_trl's imports are (about 0.5 CPU s)
    from studio.train.recipe import TrainInputs, train
    from studio.train.spec import TrainSpec

    class Quiet:
        def started(self, total_steps): ...
        def metrics(self, step, values): ...
        def should_stop(self): return False

    spec = TrainSpec.from_dict({"method": method, "rank": 16, "lora_alpha": 32, "target_modules": "all-linear", "epochs": 1,
                                "batch_size": args.batch_size, "max_length": args.max_length, "learning_rate": 2e-4,
                                "warmup_ratio": 0.0, "scheduler": "linear", "save_steps": 100_000,
                                "gradient_checkpointing": checkpointing})
    inputs = TrainInputs(spec=spec, name="benchmark", base_model="bundled", base_dir=base_dir, records=records, template="alpaca",
                         validation_fraction=0.0, split_seed=0, dataset_hash=content_hash(records))
    cpu_started = time.process_time()
    result = train(inputs, args.folder / f"work-{adapter_dir.name}", adapter_dir, Quiet())
    cpu_seconds = time.process_time() - cpu_started
    shutil.rmtree(args.folder / f"work-{adapter_dir.name}")  # the next round starts afresh, not from this one's checkpoints
    return {"steps": result.steps, "seconds": cpu_seconds if args.cpu_time else result.train_seconds, "real_tokens": result.tokens, "computed_tokens": result.computed_tokens}


def matmul_ceiling(clock) -> float:
    """FLOP/s of float32 (bf16 where the device trains in it) 1024x1024 matrix products, by `clock`, over at least
    a second: a loaded machine's CPU clock may advance by scheduler ticks, which a shorter window would catch wrong."""
    matrix = torch.randn(1024, 1024, dtype=torch.bfloat16 if pick_device().bf16 else torch.float32)
    matrix @ matrix  # warm-up
    products, started = 0, clock()
    while products < 4 or clock() - started < 1.0:
        matrix @ matrix
        products += 1
    return 2 * 1024**3 * products / (clock() - started)


def validation_loss(base_dir: Path, adapter_dir: Path, records, tokenizer, max_length: int) -> float:
    """Mean loss over the answer tokens of held-out rows, the base in float32: the same yardstick for every recipe."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32), str(adapter_dir)).eval()
    rows = encode([render(r, get_template("alpaca"), tokenizer) for r in records], tokenizer, max_length, True)
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            labels = torch.tensor([row["labels"]])
            logits = model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1].float()
            targets = labels[0, 1:]
            keep = targets != -100
            total += torch.nn.functional.cross_entropy(logits[keep], targets[keep], reduction="sum").item()
            count += int(keep.sum())
    return total / count


def print_table(results: dict, args) -> None:
    tuned, standard = results.get("trl-tuned"), results.get("standard")
    print(f"\n{args.steps} steps x batch {args.batch_size}, max length {args.max_length}, LoRA r16 alpha 32 all-linear, "
          f"{pick_device().name}, {torch.get_num_threads()} threads, SmolLM2-135M-Instruct, median of {args.rounds} rounds\n")
    print(f"{'recipe':<16}{'real tok/s':>11}{'vs tuned':>9}{'vs std':>8}{'padding':>9}{'peak MB':>9}{'val loss':>10}{'vs tuned':>9}"
          f"{'GFLOP/s':>9}{'% ceiling':>10}")
    for recipe, r in results.items():
        def ratio(other):
            return f"{r['rate'] / other['rate']:.2f}x" if other else "n/a"
        loss_change = f"{r['validation_loss'] / tuned['validation_loss'] - 1:+.1%}" if tuned else "n/a"
        padding = 1 - r["real_tokens"] / r["computed_tokens"]
        print(f"{recipe:<16}{r['rate']:>11.1f}{ratio(tuned):>9}{ratio(standard):>8}{padding:>9.1%}{r['peak_memory_mb']:>9.0f}"
              f"{r['validation_loss']:>10.4f}{loss_change:>9}{r['ceiling'] / 1e9:>9.1f}{r['utilisation']:>10.1%}")


if __name__ == "__main__":
    main()
