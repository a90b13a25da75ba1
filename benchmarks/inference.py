"""Inference speed: greedy generation with the base, with an adapter unmerged and merged, and
the time to switch adapters on one base, side by side.

    .venv/bin/python -m benchmarks.inference [--new-tokens 64] [--repeats 3]

Two small adapters are trained first with `studio.train.recipe.train` (a few steps each, in a
temporary folder): what is measured is the adapter's cost, not its quality. The base model's
greedy tokens/s, measured in the same run, is the baseline every ratio is taken against.
"Unmerged" is how the chat serves adapters (a PeftModel on the base, the LoRA product added at
every layer); "merged" is the adapter folded into the weights (`merge_and_unload`), as an export
would ship it. Time to first token is a generation of one token (the prompt's forward pass);
switching is `load_adapter` for a new adapter and `set_adapter` between loaded ones, as
studio/chat/server.py does, so one base in memory serves many adapters.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.instructions import instruction_records
from studio.data.instructions import content_hash
from studio.data.prompts import get_template, render
from studio.device import pick_device
from studio.models.catalog import bundled_model_dir, load_base_model, load_tokenizer, prepare_bundled_model
from studio.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per answer")
    parser.add_argument("--repeats", type=int, default=3, help="answers timed per variant; the median counts")
    args = parser.parse_args()
    prepare_bundled_model(load_settings().models_dir)
    base_dir = bundled_model_dir(load_settings().models_dir)
    tokenizer = load_tokenizer(base_dir)
    prompt = render(instruction_records(1, seed=3)[0], get_template("alpaca"), tokenizer)[0].text
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with tempfile.TemporaryDirectory() as folder:
        first, second = train_adapters(Path(folder), base_dir)
        rows, switching = measure(base_dir, first, second, ids, args)
    print_table(rows, switching, ids.shape[1], args)


def train_adapters(folder: Path, base_dir: Path) -> tuple[Path, Path]:
    """Two LoRA adapters (rank 16, all linear layers), three short steps each, on different rows."""
    from studio.train.recipe import TrainInputs, train
    from studio.train.spec import TrainSpec

    class Quiet:
        def started(self, total_steps): ...
        def metrics(self, step, values): ...
        def should_stop(self): return False

    spec = TrainSpec.from_dict({"rank": 16, "lora_alpha": 32, "target_modules": "all-linear", "max_steps": 3, "batch_size": 4,
                                "max_length": 128, "save_steps": 100_000})
    adapters = []
    for seed in (1, 2):
        records = instruction_records(12, seed=seed)
        inputs = TrainInputs(spec=spec, name=f"adapter-{seed}", base_model="bundled", base_dir=base_dir,
                             records=records, template="alpaca", validation_fraction=0.0,
                             split_seed=0, dataset_hash=content_hash(records))
        adapters.append(train(inputs, folder / f"work-{seed}", folder / f"adapter-{seed}", Quiet()).adapter_dir)
    return adapters[0], adapters[1]


def measure(base_dir: Path, first: Path, second: Path, ids: torch.Tensor, args) -> tuple[dict, dict]:
    from peft import PeftModel

    device = pick_device()
    ids = ids.to(device.name)
    base = load_base_model(base_dir, quantize_4bit=False, device=device).eval()
    rows = {"base": generation_speed(base, ids, args)}
    served = PeftModel.from_pretrained(base, str(first), adapter_name="first").eval()
    rows["adapter, unmerged"] = generation_speed(served, ids, args)
    started = time.perf_counter()
    served.load_adapter(str(second), adapter_name="second")
    load_seconds = time.perf_counter() - started
    switch_seconds = []
    for name in ["second", "first"] * 10:
        started = time.perf_counter()
        served.set_adapter(name)
        switch_seconds.append(time.perf_counter() - started)
    served.set_adapter("first")
    started = time.perf_counter()
    merged = PeftModel.from_pretrained(load_base_model(base_dir, quantize_4bit=False, device=device), str(first)).merge_and_unload().eval()
    merge_seconds = time.perf_counter() - started
    rows["adapter, merged"] = generation_speed(merged, ids, args)
    return rows, {"load_adapter": load_seconds, "set_adapter": statistics.median(switch_seconds), "load + merge_and_unload": merge_seconds}


def generation_speed(model, ids: torch.Tensor, args) -> dict:
    """Median greedy tokens/s over `repeats` answers of exactly `new_tokens`, and the median time to the first token."""
    def seconds(new_tokens: int) -> float:
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens, pad_token_id=model.config.eos_token_id)
        return time.perf_counter() - started

    seconds(2)  # warm-up
    answers = [seconds(args.new_tokens) for _ in range(args.repeats)]
    first_tokens = [seconds(1) for _ in range(args.repeats)]
    return {"tokens_per_second": args.new_tokens / statistics.median(answers), "first_token": statistics.median(first_tokens)}


def print_table(rows: dict, switching: dict, prompt_tokens: int, args) -> None:
    base = rows["base"]["tokens_per_second"]
    print(f"\ngreedy, {prompt_tokens}-token prompt, {args.new_tokens} new tokens, median of {args.repeats}, "
          f"{pick_device().name}, {torch.get_num_threads()} threads, SmolLM2-135M-Instruct, LoRA r16 all-linear\n")
    print(f"{'model':<20}{'tokens/s':>10}{'vs base':>9}{'first token ms':>16}")
    for name, r in rows.items():
        print(f"{name:<20}{r['tokens_per_second']:>10.1f}{r['tokens_per_second'] / base:>8.2f}x{r['first_token'] * 1000:>16.1f}")
    print(f"\n{'adapter switching on one base':<32}{'ms':>8}")
    for name, value in switching.items():
        print(f"{name:<32}{value * 1000:>8.1f}")


if __name__ == "__main__":
    main()
