"""An adapter's dataset and its rows as training saw them: the rows it trained on, the rows held out from it,
and held-out rows rendered as prompts with their reference answers."""

from dataclasses import dataclass

from studio.data.instructions import load_records, split_indices
from studio.data.prompts import get_template, render
from studio.errors import EvaluationError
from studio.store import AdapterRecord, DatasetRecord, Store


MAX_ANSWERS = 20  # validation prompts answered: enough to compare, quick on a CPU


@dataclass(frozen=True)
class Example:
    prompt: str
    reference: str


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


def training_records(dataset: DatasetRecord) -> list[dict]:
    return split_records(dataset)[0]
