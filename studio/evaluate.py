"""How much an adapter helps, measured on the validation rows it never trained on.

For the adapter and for the base model without it: loss and perplexity on the answers,
and greedy answers to the validation prompts scored against the references (exact match
and ROUGE-L). The numbers and every answer are stored, so the Compare tab only reads.
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from studio.data import load_records, split_indices
from studio.errors import EvaluationError
from studio.models import load_base_model, resolve_model
from studio.prompts import encode, get_template, render
from studio.store import AdapterRecord, DatasetRecord, EvaluationRecord, Store

MAX_ANSWERS = 20  # validation prompts answered: enough to compare, quick on a CPU
MAX_NEW_TOKENS = 128
Progress = Callable[[int, int], None]  # (steps done, steps in all)


@dataclass(frozen=True)
class Example:
    prompt: str
    reference: str


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased words: the longest common subsequence against both lengths."""
    a, b = re.findall(r"\w+", candidate.lower()), re.findall(r"\w+", reference.lower())
    if not a or not b:
        return float(a == b)
    previous = [0] * (len(b) + 1)
    for word in a:
        row = [0]
        for j, other in enumerate(b):
            row.append(previous[j] + 1 if word == other else max(previous[j + 1], row[j]))
        previous = row
    common = previous[-1]
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(b)
    return 2 * precision * recall / (precision + recall)


def exact_match(candidate: str, reference: str) -> bool:
    """Equal up to case and spacing: a stray space or capital is not a wrong answer."""
    return " ".join(candidate.split()).lower() == " ".join(reference.split()).lower()


def adapter_dataset(store: Store, adapter: AdapterRecord) -> DatasetRecord:
    """The saved dataset, and so the split, an adapter was trained on: its training job's, else the first with its rows."""
    job = store.job(adapter.job_id) if adapter.job_id else None
    dataset = store.dataset(job.dataset_id) if job and job.kind == "train" and job.dataset_id else None
    if dataset is None or dataset.content_hash != adapter.dataset_hash:
        dataset = store.find_dataset_by_hash(adapter.dataset_hash) if adapter.dataset_hash else None
    if dataset is None:
        raise EvaluationError(f"The data adapter '{adapter.name}' was trained on is not saved in this studio (or it mixes "
                              "adapters trained on different data), so there are no validation rows to measure it on.")
    return dataset


def validation_records(dataset: DatasetRecord) -> list[dict]:
    """The rows held out from training, by the dataset's own seeded split."""
    records = load_records(dataset.path)
    _, held_out = split_indices(len(records), dataset.validation_fraction, dataset.split_seed)
    return [records[i] for i in held_out]


def examples(records: list[dict], template: str, tokenizer) -> list[Example]:
    """Each record as the prompt the model reads and the answer it should write (its last trained part)."""
    found = []
    for record in records:
        segments = render(record, get_template(template), tokenizer)
        last = max(i for i, s in enumerate(segments) if s.trained)
        prompt = "".join(s.text for s in segments[:last])
        found.append(Example(prompt, segments[last].text.replace(tokenizer.eos_token, "").strip()))
    return found


def greedy_ids(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """The new token ids of the model's greedy answer to an already rendered prompt."""
    import torch

    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=model.device)
    with torch.inference_mode():
        output = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return output[0, ids.shape[1]:].tolist()


def mean_loss(model, rows: list[dict]) -> float:
    """Loss per answer token over encoded rows, as training measures it."""
    import torch

    total, tokens = 0.0, 0
    with torch.inference_mode():
        for row in rows:
            ids = torch.tensor([row["input_ids"]], device=model.device)
            labels = torch.tensor([row["labels"]], device=model.device)
            counted = int((labels[0, 1:] != -100).sum())
            if counted:
                total += float(model(input_ids=ids, labels=labels).loss) * counted
                tokens += counted
    return total / max(tokens, 1)


def evaluate_adapter(store: Store, models_dir: Path, adapter_id: int, job_id: int | None = None,
                     progress: Progress = lambda done, total: None) -> EvaluationRecord:
    """Measure an adapter against its base on its dataset's validation rows and store the result.

    Raises EvaluationError when the dataset is gone or has no validation rows, ModelError
    when the base model cannot be loaded.
    """
    from peft import PeftModel

    from studio.device import pick_device

    adapter = store.adapter(adapter_id)
    dataset = adapter_dataset(store, adapter)
    records = validation_records(dataset)
    if not records:
        raise EvaluationError(f"Dataset '{dataset.name}' holds no validation rows, so there is nothing to measure on. "
                              "Save the data again with a share held out for validation (at least 10 rows), then train on it.")
    base_dir = resolve_model(adapter.base_model, models_dir)
    tokenizer = _tokenizer(adapter.path)
    base = load_base_model(base_dir, quantize_4bit=adapter.method == "qlora", device=pick_device())
    model = PeftModel.from_pretrained(base, str(adapter.path)).eval()

    spec = adapter.spec
    rows = encode([render(r, get_template(dataset.template), tokenizer) for r in records], tokenizer,
                  spec.get("max_length", 512), spec.get("responses_only", True))
    shown = examples(records[:MAX_ANSWERS], dataset.template, tokenizer)
    steps, done = 2 + 2 * len(shown), 0
    progress(done, steps)
    adapter_loss = mean_loss(model, rows)
    with model.disable_adapter():
        base_loss = mean_loss(model, rows)
    done += 2
    progress(done, steps)
    answers, unstopped = [], 0
    for row, example in enumerate(shown):
        limit = min(MAX_NEW_TOKENS, len(tokenizer(example.reference, add_special_tokens=False)["input_ids"]) + 16)
        adapter_ids = greedy_ids(model, tokenizer, example.prompt, limit)
        unstopped += len(adapter_ids) >= limit and tokenizer.eos_token_id not in adapter_ids
        adapter_answer = tokenizer.decode(adapter_ids, skip_special_tokens=True).strip()
        with model.disable_adapter():
            base_answer = tokenizer.decode(greedy_ids(model, tokenizer, example.prompt, limit), skip_special_tokens=True).strip()
        answers.append({"row": row, "prompt": example.prompt, "reference": example.reference, "base_answer": base_answer,
                        "adapter_answer": adapter_answer, "base_rouge": rouge_l(base_answer, example.reference),
                        "adapter_rouge": rouge_l(adapter_answer, example.reference)})
        done += 2
        progress(done, steps)

    def share_exact(key: str) -> float:
        return sum(exact_match(a[key], a["reference"]) for a in answers) / len(answers)

    values = {
        "adapter_id": adapter.id, "job_id": job_id, "dataset_id": dataset.id, "rows": len(rows),
        "base_loss": base_loss, "adapter_loss": adapter_loss,
        "base_perplexity": math.exp(min(base_loss, 50)), "adapter_perplexity": math.exp(min(adapter_loss, 50)),
        "base_exact": share_exact("base_answer"), "adapter_exact": share_exact("adapter_answer"),
        "base_rouge": sum(a["base_rouge"] for a in answers) / len(answers),
        "adapter_rouge": sum(a["adapter_rouge"] for a in answers) / len(answers),
        "adapter_unstopped": unstopped,
    }
    return store.add_evaluation(values, answers)


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@dataclass(frozen=True)
class Change:
    """One measure as "base → adapter (change)"; lower_is_better says which way is good."""

    name: str
    base: float
    adapter: float
    lower_is_better: bool
    percent: bool = False

    @property
    def improved(self) -> bool:
        return self.adapter < self.base if self.lower_is_better else self.adapter > self.base

    def __str__(self) -> str:
        if self.percent:
            return f"{self.base:.0%} → {self.adapter:.0%} ({(self.adapter - self.base) * 100:+.0f} points)"
        return f"{self.base:.4g} → {self.adapter:.4g} ({self.adapter - self.base:+.3g})"


def changes(evaluation: EvaluationRecord) -> list[Change]:
    """An evaluation's measures as base → adapter, in the order people read them."""
    e = evaluation
    return [
        Change("validation loss", e.base_loss, e.adapter_loss, True),
        Change("perplexity", e.base_perplexity, e.adapter_perplexity, True),
        Change("exact match", e.base_exact, e.adapter_exact, False, percent=True),
        Change("ROUGE-L", e.base_rouge, e.adapter_rouge, False),
    ]
