"""Training speed: the standard recipe against the studio's default path, side by side.

    .venv/bin/python -m benchmarks.train_throughput [--steps 40] [--batch-size 8] [--max-length 512]

The standard recipe is TRL's SFTTrainer with its defaults (random batches padded to their
longest row, gradient checkpointing on) on prompt/completion text, in float32. TRL 1.16 turns
bf16 autocast on by default; it is turned off explicitly here (`bf16=False`), because the issue
defines the standard recipe as float32 and because a CPU without bf16 units emulates bf16
matrix products some hundred times slower, which would flatter the studio's path. The
studio's path is `studio.training.train`, exactly as a job runs it. Both train the same LoRA
(rank 16, alpha 32, all linear layers) for one pass over the same rows, so they see the same
real tokens; each runs in a process of its own so that peak memory is its own. Validation loss
is measured the same way for both afterwards: the base in float32 with the adapter, on held-out
rows, over answer tokens.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.instructions import instruction_records
from studio.data import content_hash
from studio.device import memory_mb, pick_device
from studio.models import bundled_model_dir, load_tokenizer, prepare_bundled_model
from studio.prompts import encode, get_template, render
from studio.settings import load_settings

VALIDATION_ROWS = 32
RECIPES = ["standard", "studio-lora", "studio-qlora", "studio-lora-gc"]  # -gc: gradient checkpointing on, for less memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per recipe (rows = steps x batch size)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated, from: " + ", ".join(RECIPES))
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one recipe, in a child process
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_recipe(args.run, args)))
        return
    prepare_bundled_model(load_settings().models_dir)
    records = instruction_records(args.steps * args.batch_size + VALIDATION_ROWS, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "records.json").write_text(json.dumps(records))
        results = {}
        for recipe in args.recipes.split(","):
            command = [sys.executable, "-m", "benchmarks.train_throughput", "--run", recipe, "--folder", folder,
                       "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
            print(f"running {recipe} ...", file=sys.stderr, flush=True)
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{recipe} failed:\n{done.stderr[-3000:]}")
            results[recipe] = json.loads(done.stdout.strip().splitlines()[-1])
    print_table(results, args)


def run_recipe(recipe: str, args) -> dict:
    records = json.loads((args.folder / "records.json").read_text())
    train_records, validation_records = records[:-VALIDATION_ROWS], records[-VALIDATION_ROWS:]
    base_dir = bundled_model_dir(load_settings().models_dir)
    adapter_dir = args.folder / f"adapter-{recipe}"
    tokenizer = load_tokenizer(base_dir)
    if recipe == "standard":
        measured = train_standard(train_records, base_dir, adapter_dir, tokenizer, args)
    else:
        method = recipe.removeprefix("studio-").removesuffix("-gc")
        measured = train_studio(train_records, base_dir, adapter_dir, method, recipe.endswith("-gc"), args)
    measured["peak_memory_mb"] = memory_mb(pick_device())
    measured["validation_loss"] = validation_loss(base_dir, adapter_dir, validation_records, tokenizer, args.max_length)
    return measured


def train_standard(records, base_dir: Path, adapter_dir: Path, tokenizer, args) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    template = get_template("alpaca")
    rows = [render(r, template, tokenizer) for r in records]
    dataset = Dataset.from_list([{"prompt": r[0].text, "completion": "".join(s.text for s in r[1:])} for r in rows])
    config = SFTConfig(output_dir=str(args.folder / "standard"), per_device_train_batch_size=args.batch_size,
                       max_length=args.max_length, num_train_epochs=1, learning_rate=2e-4, logging_steps=1,
                       save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available(), seed=42,
                       bf16=False)  # float32, by definition of the standard recipe (TRL's own default is bf16)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
    counted = {"real": 0, "computed": 0}
    collate = trainer.data_collator

    def counting_collator(examples):
        batch = collate(examples)
        counted["real"] += int(batch["attention_mask"].sum())
        counted["computed"] += batch["input_ids"].numel()
        return batch

    trainer.data_collator = counting_collator
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    trainer.save_model(str(adapter_dir))
    return {"steps": trainer.state.global_step, "seconds": seconds, "real_tokens": counted["real"], "computed_tokens": counted["computed"]}


def train_studio(records, base_dir: Path, adapter_dir: Path, method: str, checkpointing: bool, args) -> dict:
    from studio.spec import TrainSpec
    from studio.training import TrainInputs, train

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
    result = train(inputs, args.folder / f"work-{adapter_dir.name}", adapter_dir, Quiet())
    return {"steps": result.steps, "seconds": result.train_seconds, "real_tokens": result.tokens, "computed_tokens": result.computed_tokens}


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
    base = results.get("standard")
    print(f"\n{args.steps} steps x batch {args.batch_size}, max length {args.max_length}, LoRA r16 alpha 32 all-linear, "
          f"{pick_device().name}, {torch.get_num_threads()} threads, SmolLM2-135M-Instruct\n")
    print(f"{'recipe':<16}{'real tok/s':>11}{'s/step':>8}{'padding':>9}{'peak MB':>9}{'val loss':>10}{'speed-up':>10}")
    for recipe, r in results.items():
        rate = r["real_tokens"] / r["seconds"]
        ratio = f"{rate / (base['real_tokens'] / base['seconds']):.2f}x" if base else "n/a"
        padding = 1 - r["real_tokens"] / r["computed_tokens"]
        print(f"{recipe:<16}{rate:>11.0f}{r['seconds'] / r['steps']:>8.2f}{padding:>9.1%}{r['peak_memory_mb']:>9.0f}"
              f"{r['validation_loss']:>10.4f}{ratio:>10}")


if __name__ == "__main__":
    main()
