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
from studio.errors import DataError, EvaluationError
from studio.models import load_base_model, resolve_model
from studio.prompts import encode, get_template, render
from studio.store import AdapterRecord, DatasetRecord, EvaluationRecord, Store

MAX_ANSWERS = 20  # validation prompts answered: enough to compare, quick on a CPU
MAX_NEW_TOKENS = 128
ANSWER_BATCH = 10  # prompts answered at once: two batches for MAX_ANSWERS, little padding, bounded memory
MAX_TRAINING_ROWS_JUDGED = 100  # a dataset with no rows held out is judged on this many of its training rows
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


def split_records(dataset: DatasetRecord) -> tuple[list[dict], list[dict]]:
    """The rows trained on and the rows held out from training, by the dataset's own seeded split."""
    records = load_records(dataset.path)
    kept, held_out = split_indices(len(records), dataset.validation_fraction, dataset.split_seed)
    return [records[i] for i in kept], [records[i] for i in held_out]


def validation_records(dataset: DatasetRecord) -> list[dict]:
    return split_records(dataset)[1]


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


@dataclass(frozen=True)
class HeldOut:
    """The rows an adapter is judged on, and what they are, in words."""

    records: list[dict]
    source: str  # "validation rows", "test file 'NAME'" or "training rows"
    overlap: int  # test rows whose prompt is also a training row


def held_out(store: Store, dataset: DatasetRecord, test_dataset_id: int | None, tokenizer) -> HeldOut:
    """The user's own test file when one is attached, else the validation rows, else (a dataset too
    small to hold rows out) a sample of the training rows, which the verdict says."""
    if test_dataset_id is not None:
        test = store.dataset(test_dataset_id)
        records = load_records(test.path)
        trained = set(e.prompt for e in examples(training_records(dataset), dataset.template, tokenizer))
        overlap = sum(e.prompt in trained for e in examples(records, dataset.template, tokenizer))
        return HeldOut(records, f"test file '{test.name}'", overlap)
    records = validation_records(dataset)
    if records:
        return HeldOut(records, "validation rows", 0)
    return HeldOut(training_records(dataset)[:MAX_TRAINING_ROWS_JUDGED], "training rows", 0)


def save_test_set(store: Store, datasets_dir: Path, path: Path, tokenizer, max_bytes: int, name: str | None = None) -> DatasetRecord:
    """A user's own test file (any format the Data tab reads), checked and saved as a dataset that holds nothing out.

    Raises DataError when the file cannot be used.
    """
    from studio.data import content_hash, inspect_file, save_dataset

    report = inspect_file(path, tokenizer, max_bytes=max_bytes, name=name)
    same = store.find_dataset_by_hash(content_hash([report.records[i] for i in report.kept_indices()]))
    if same:  # saved already (perhaps as training data): reuse it, never change its name or split
        return same
    return save_dataset(store, datasets_dir, report, name=f"{Path(report.file_name).stem} (test)", validation_fraction=0.0)


def attach_test_file(store: Store, datasets_dir: Path, dataset_id: int, path: Path, tokenizer, max_bytes: int,
                     name: str | None = None) -> str:
    """Check a user's test file, save it and judge the dataset's adapters on it from now on; says what was done in
    words, flagging rows that are also training rows. Raises DataError for a file that cannot be used."""
    dataset = store.dataset(dataset_id)
    test = save_test_set(store, datasets_dir, path, tokenizer, max_bytes, name)
    if test.id == dataset.id:
        raise DataError(f"{name or path.name} holds the same rows as '{dataset.name}' itself, so it cannot test what the adapter "
                        "learned. Attach a file of examples the dataset does not contain.")
    store.attach_test_set(dataset.id, test.id)
    overlap = held_out(store, dataset, test.id, tokenizer).overlap
    note = (f"Adapters of '{dataset.name}' are now judged on '{test.name}' ({test.rows} rows) instead of its validation rows; "
            "press *Evaluate again* in Compare to judge an adapter trained already on them.")
    if overlap:
        note += (f" {overlap} of its rows ask the same as a training row, so they only show that the adapter learned them: "
                 "remove them from the test file for a fair verdict.")
    return note


def training_records(dataset: DatasetRecord) -> list[dict]:
    return split_records(dataset)[0]


def test_set_of(store: Store, adapter: AdapterRecord, dataset: DatasetRecord) -> int | None:
    """The test file attached to the adapter's training job, else to its dataset."""
    job = store.job(adapter.job_id) if adapter.job_id else None
    from_job = job.test_dataset_id if job and job.kind == "train" else None
    return from_job if from_job is not None else dataset.test_dataset_id


def evaluate_adapter(store: Store, models_dir: Path, adapter_id: int, job_id: int | None = None,
                     progress: Progress = lambda done, total: None, test_dataset_id: int | None = None) -> EvaluationRecord:
    """Measure an adapter against its base and store the result: on `test_dataset_id`, else the test
    file attached to its job or dataset, else the validation rows, else a sample of training rows.

    Raises EvaluationError when the dataset is gone, ModelError when the base model cannot be loaded.
    """
    from peft import PeftModel

    from studio.device import pick_device

    adapter = store.adapter(adapter_id)
    dataset = adapter_dataset(store, adapter)
    tokenizer = _tokenizer(adapter.path)
    rows_to_judge = held_out(store, dataset, test_dataset_id if test_dataset_id is not None else test_set_of(store, adapter, dataset), tokenizer)
    records = rows_to_judge.records
    base_dir = resolve_model(adapter.base_model, models_dir)
    base = load_base_model(base_dir, quantize_4bit=adapter.method == "qlora", device=pick_device())
    model = PeftModel.from_pretrained(base, str(adapter.path)).eval()

    spec = adapter.spec
    rows = encode([render(r, get_template(dataset.template), tokenizer) for r in records], tokenizer,
                  spec.get("max_length", 512), spec.get("responses_only", True))
    shown = examples(records[:MAX_ANSWERS], dataset.template, tokenizer)
    steps = 4
    progress(0, steps)
    adapter_loss = mean_loss(model, rows)
    with model.disable_adapter():
        base_loss = mean_loss(model, rows)
    progress(2, steps)
    limits = [min(MAX_NEW_TOKENS, len(tokenizer(e.reference, add_special_tokens=False)["input_ids"]) + 16) for e in shown]
    adapter_ids = greedy_batch(model, tokenizer, [e.prompt for e in shown], limits)
    progress(3, steps)
    with model.disable_adapter():
        base_ids = greedy_batch(model, tokenizer, [e.prompt for e in shown], limits)
    progress(4, steps)
    unstopped = sum(len(ids) >= limit and tokenizer.eos_token_id not in ids for ids, limit in zip(adapter_ids, limits))
    answers = []
    for row, (example, ids, base_row) in enumerate(zip(shown, adapter_ids, base_ids)):
        adapter_answer = tokenizer.decode(ids, skip_special_tokens=True).strip()
        base_answer = tokenizer.decode(base_row, skip_special_tokens=True).strip()
        answers.append({"row": row, "prompt": example.prompt, "reference": example.reference, "base_answer": base_answer,
                        "adapter_answer": adapter_answer, "base_rouge": rouge_l(base_answer, example.reference),
                        "adapter_rouge": rouge_l(adapter_answer, example.reference)})

    def share_exact(key: str) -> float:
        return sum(exact_match(a[key], a["reference"]) for a in answers) / len(answers)

    values = {
        "adapter_id": adapter.id, "job_id": job_id, "dataset_id": dataset.id, "rows": len(rows),
        "base_loss": base_loss, "adapter_loss": adapter_loss,
        "base_perplexity": math.exp(min(base_loss, 50)), "adapter_perplexity": math.exp(min(adapter_loss, 50)),
        "base_exact": share_exact("base_answer"), "adapter_exact": share_exact("adapter_answer"),
        "base_rouge": sum(a["base_rouge"] for a in answers) / len(answers),
        "adapter_rouge": sum(a["adapter_rouge"] for a in answers) / len(answers),
        "adapter_unstopped": unstopped, "source": rows_to_judge.source, "overlap": rows_to_judge.overlap,
    }
    return store.add_evaluation(values, answers)


def greedy_batch(model, tokenizer, prompts: list[str], limits: list[int], batch_size: int = ANSWER_BATCH) -> list[list[int]]:
    """Greedy answers to many rendered prompts, a batch at a time (left-padded, so every prompt ends
    where generation starts); each answer is cut at its own token limit and after its end-of-sequence token."""
    import torch

    found = []
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in range(0, len(prompts), batch_size):
            chunk, chunk_limits = prompts[start:start + batch_size], limits[start:start + batch_size]
            batch = tokenizer(chunk, add_special_tokens=False, padding=True, return_tensors="pt").to(model.device)
            with torch.inference_mode():
                output = model.generate(**batch, max_new_tokens=max(chunk_limits), do_sample=False, pad_token_id=tokenizer.pad_token_id)
            for ids, limit in zip(output[:, batch["input_ids"].shape[1]:].tolist(), chunk_limits):
                ids = ids[:limit]
                found.append(ids[:ids.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in ids else ids)
    finally:
        tokenizer.padding_side = side
    return found


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
