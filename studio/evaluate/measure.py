"""How much an adapter helps, measured on the validation rows it never trained on.

For the adapter and for the base model without it: loss and perplexity on the answers,
and greedy answers to the validation prompts scored against the references (exact match
and ROUGE-L); and what it forgot (studio.evaluate.forgetting). The numbers and every answer
are stored, so the Compare tab only reads.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from studio.data.held_out import MAX_ANSWERS, adapter_dataset, examples, training_records, validation_records
from studio.data.instructions import load_records
from studio.data.prompts import encode, get_template, render
from studio.errors import DataError
from studio.evaluate.forgetting import Forgetting, ask_adapter, base_answers, general_requests, must_not_change, probe_key
from studio.evaluate.scores import exact_match, rouge_l
from studio.models.catalog import load_with_adapter, new_tokenizer, resolve_model
from studio.models.generate import greedy_batch
from studio.store import AdapterRecord, DatasetRecord, EvaluationRecord, Store

MAX_NEW_TOKENS = 128
MAX_TRAINING_ROWS_JUDGED = 100  # a dataset with no rows held out is judged on this many of its training rows
Progress = Callable[[int, int], None]  # (steps done, steps in all)


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
    from studio.data.instructions import content_hash, inspect_file, save_dataset

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


def test_set_of(store: Store, adapter: AdapterRecord, dataset: DatasetRecord) -> int | None:
    """The test file attached to the adapter's training job, else to its dataset."""
    job = store.job(adapter.job_id) if adapter.job_id else None
    from_job = job.test_dataset_id if job and job.kind == "train" else None
    return from_job if from_job is not None else dataset.test_dataset_id


def evaluate_adapter(store: Store, models_dir: Path, adapter_id: int, job_id: int | None = None,
                     progress: Progress = lambda done, total: None, test_dataset_id: int | None = None,
                     general_requests_asked: int | None = None) -> EvaluationRecord:
    """Measure an adapter against its base and store the result: on `test_dataset_id`, else the test
    file attached to its job or dataset, else the validation rows, else a sample of training rows;
    and what it forgot, on `general_requests_asked` of the bundled ordinary requests (all by default)
    and the dataset's must-not-change prompts.

    Raises EvaluationError when the dataset is gone, ModelError when the base model cannot be loaded.
    """
    from studio.device import pick_device

    adapter = store.adapter(adapter_id)
    dataset = adapter_dataset(store, adapter)
    tokenizer = new_tokenizer(adapter.path, pad_with_eos=True)
    rows_to_judge = held_out(store, dataset, test_dataset_id if test_dataset_id is not None else test_set_of(store, adapter, dataset), tokenizer)
    records = rows_to_judge.records
    base_dir = resolve_model(adapter.base_model, models_dir)
    model = load_with_adapter(base_dir, adapter.path, quantize_4bit=adapter.method == "qlora", device=pick_device())

    spec = adapter.spec
    rows = encode([render(r, get_template(dataset.template), tokenizer) for r in records], tokenizer,
                  spec.get("max_length", 512), spec.get("responses_only", True))
    shown = examples(records[:MAX_ANSWERS], dataset.template, tokenizer)
    steps = 5
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
    probes = general_requests(general_requests_asked) + must_not_change(list(dataset.keep_prompts))
    base_tokenizer = new_tokenizer(base_dir, pad_with_eos=True)
    key = probe_key(base_dir, adapter.method == "qlora", probes)
    base = store.base_answers(key)
    if base is None:
        base = base_answers(model, base_tokenizer, probes)
        store.keep_base_answers(key, base)
    probe_answers = ask_adapter(model, base_tokenizer, probes, base)
    forgetting = Forgetting.of(probe_answers)
    progress(5, steps)
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
        "general_asked": forgetting.asked, "general_changed": forgetting.changed, "general_drift": forgetting.drift,
        "kept_asked": forgetting.kept_asked, "kept_changed": len(forgetting.kept_changed),
    }
    return store.add_evaluation(values, answers, probe_answers)


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
