"""Which learning rate moves a fresh LoRA adapter on the bundled model with DPO or KTO, and what a pair costs.

    OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python -m benchmarks.preference_rate dpo:5e-5 dpo:2e-4 kto:2e-4 ...

Each run trains a fresh rank-16 LoRA adapter on 24 pairs (2 passes, 4 pairs a step) whose chosen answer is the bare result of a sum and whose
rejected answer adds a filler sentence, then scores 12 held-out pairs (other sums, other fillers): held-out preference
accuracy is the share whose implicit reward (log-likelihood change from the base) favours the chosen answer. It also
prints the seconds a pair took, against a short instruction-tuning run on the chosen answers, the cost the plan uses.
"""

import json
import sys
import tempfile
from pathlib import Path

import torch

from studio.data.instructions import content_hash
from studio.models.catalog import bundled_model_dir, new_tokenizer, prepare_bundled_model
from studio.settings import load_settings
from studio.train.preference import train_preferences
from studio.train.recipe import TrainInputs, train
from studio.train.spec import TrainSpec

FILLERS = ["I hope this helps, and feel free to ask me anything else!", "Let me know if you have any other questions.",
           "Math is fun, isn't it? There is always more to learn.", "That is the answer, worked out carefully for you.",
           "Thanks for asking such a great question today!"]


def pairs(first: int, count: int, fillers: list[str]) -> list[dict]:
    rows = []
    for n in range(first, first + count):
        a, b = 3 + n * 7 % 41, 5 + n * 11 % 37
        rows.append({"prompt": [{"role": "user", "content": f"What is {a} plus {b}?"}], "chosen": f"{a + b}.",
                     "rejected": f"{a + b}. {fillers[n % len(fillers)]}"})
    return rows


class Quiet:
    def started(self, total_steps): ...
    def metrics(self, step, values): ...
    def should_stop(self): return False


def answer_logp(model, tokenizer, prompt: str, answer: str) -> float:
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(prompt + answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float().log_softmax(-1)
    picked = logits.gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return float(picked[len(prompt_ids) - 1:].sum())


def held_out_accuracy(adapter_dir: Path, base_dir: Path, held_out: list[dict]) -> float:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from studio.data.prompts import build_prompt

    tokenizer = new_tokenizer(base_dir, pad_with_eos=True)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32), str(adapter_dir))
    right = 0
    for pair in held_out:
        prompt = build_prompt(pair["prompt"], "chat", tokenizer)
        trained = [answer_logp(model, tokenizer, prompt, pair[side]) for side in ("chosen", "rejected")]
        with model.disable_adapter():
            base = [answer_logp(model, tokenizer, prompt, pair[side]) for side in ("chosen", "rejected")]
        right += (trained[0] - base[0]) > (trained[1] - base[1])
    return right / len(held_out)


def main(runs: list[str]) -> None:
    settings = load_settings()
    base_dir = prepare_bundled_model(settings.models_dir, report=lambda message: None) and bundled_model_dir(settings.models_dir)
    train_pairs, held_out = pairs(0, 24, FILLERS[:3]), pairs(100, 12, FILLERS[3:])
    common = {"batch_size": 4, "epochs": 2, "max_length": 128, "warmup_ratio": 0.0, "save_steps": 1000}
    for run in runs:
        objective, rate = run.split(":")
        spec = TrainSpec.from_dict({**common, "objective": objective, "learning_rate": float(rate)})
        records = train_pairs if objective != "sft" else [{"messages": p["prompt"] + [{"role": "assistant", "content": p["chosen"]}]}
                                                           for p in train_pairs]
        inputs = TrainInputs(spec=spec, name=run, base_model="bundled", base_dir=base_dir, records=records, template="chat",
                             validation_fraction=0.0, split_seed=42, dataset_hash=content_hash(records))
        with tempfile.TemporaryDirectory() as folder:
            work, adapter = Path(folder) / "work", Path(folder) / "adapter"
            work.mkdir()
            result = (train if objective == "sft" else train_preferences)(inputs, work, adapter, Quiet())
            accuracy = held_out_accuracy(adapter, base_dir, held_out) if objective != "sft" else None
        print(json.dumps({"run": run, "steps": result.steps, "final_loss": round(result.final_loss, 4),
                          "seconds_per_pair": round(result.train_seconds / (result.steps * spec.batch_size), 3),
                          "held_out_accuracy": accuracy}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
