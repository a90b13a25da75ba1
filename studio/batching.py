"""Batches with little padding: rows of similar length go together (the trainer's length-grouped
sampler), and each batch is padded only to its own longest row.

On the standard recipe's random batches most computed tokens are padding; here few are. The
collator counts the tokens it hands over, so the studio can report real throughput and waste.
"""

import torch


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
