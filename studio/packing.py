"""Padding-free batches: a batch's rows laid end to end in one row, each attending to itself only.

Padded batches compute every padding position through every layer; even length-grouped they
waste a sixth to a fifth of the work. Here the collator concatenates the rows, restarts
`position_ids` at each row (so rotary positions are each row's own) and marks the rows'
boundaries (`cu_seq_lens_q/k`, the names flash-attention kernels read). The attention below
runs PyTorch's causal scaled-dot-product attention once per row: no block-diagonal mask over
the whole batch, whose masked part would be computed and thrown away, and no cross-row attention.

Transformers also keeps packed rows apart with plain `sdpa` (it derives a block-diagonal mask
from restarting `position_ids`), but that mask makes the attention quadratic in the whole
batch's length instead of each row's.
"""

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

ATTENTION = "studio_packed_rows"


def packed_rows_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None, **kwargs):
    """Causal attention row by row when the batch is packed (`cu_seq_lens_q` given); else plain sdpa."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    gqa = key.shape[1] != query.shape[1]
    if query.device.type == "cpu":  # PyTorch's CPU flash attention takes 2.6x longer on bf16 rows than on float32
        query, key, value = query.float(), key.float(), value.float()  # ones (60-110 tokens, forward and backward)
    lengths = bounds.diff().tolist()  # split, not sliced: the backward of a split is one concatenation, where each
    # slice's backward would fill a zero tensor the size of the whole batch and add it up
    with torch.autocast("cpu", enabled=False):  # CPU autocast would cast them back to bf16; a GPU's is untouched
        rows = [torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling,
                                                                 dropout_p=dropout if module.training else 0.0, enable_gqa=gqa)
                for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))]
    return torch.cat(rows, dim=2).transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, packed_rows_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def packs_rows(model) -> bool:
    """Whether the model's attention is plain causal attention over every position, so that rows
    can be packed: no sliding window, no soft-capping, no custom kernel chosen by the user."""
    config = model.config.get_text_config()
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    return (config._attn_implementation in ("sdpa", "eager", ATTENTION) and layer_types == {"full_attention"}
            and not getattr(config, "sliding_window", None) and getattr(config, "attn_logit_softcapping", None) is None)


def use_packed_rows(model) -> None:
    """Switch the model (and its sub-configs) to the row-by-row attention for packed batches."""
    model.set_attn_implementation(ATTENTION)


class PackingCollator:
    """Lays a batch's rows end to end: `input_ids` and `labels` of shape [1, total length],
    `position_ids` restarting at each row, `cu_seq_lens_q/k` the rows' boundaries. The first
    label of each row is -100, so no row learns to predict the start of the next one. An
    all-ones `attention_mask` lets the trainer count the (all real) tokens."""

    def __init__(self) -> None:
        self.real_tokens = 0
        self.computed_tokens = 0

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        lengths = torch.tensor([len(row["input_ids"]) for row in rows])
        input_ids = torch.tensor([t for row in rows for t in row["input_ids"]])[None]
        labels = torch.tensor([t for row in rows for t in row["labels"]])[None]
        bounds = torch.zeros(len(rows) + 1, dtype=torch.int32)
        bounds[1:] = lengths.cumsum(0)
        labels[0, bounds[:-1].long()] = -100
        position_ids = torch.cat([torch.arange(n) for n in lengths.tolist()])[None]
        self.real_tokens += input_ids.numel()
        self.computed_tokens += input_ids.numel()
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": torch.ones_like(input_ids),
                "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds, "max_length_q": int(lengths.max()), "max_length_k": int(lengths.max())}
