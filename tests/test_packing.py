"""Padding-free batches: packed rows give the padded batch's loss and gradients, row by row."""

import pytest
import torch

from studio.batching import PaddingCollator
from studio.packing import ATTENTION, PackingCollator, packs_rows, use_packed_rows
from studio.trainer import answer_loss


@pytest.fixture
def rows(tokenizer) -> list[dict]:
    """Three rows of different lengths; the prompts carry no loss, the second row's answer starts with its first token."""
    pairs = [("Name a colour.", " Blue, like the sea on a calm day."), ("", "Four."), ("What is two plus two? Think.", " Four, of course.")]
    encoded = []
    for prompt, answer in pairs:
        p, a = tokenizer(prompt, add_special_tokens=False)["input_ids"], tokenizer(answer, add_special_tokens=False)["input_ids"]
        encoded.append({"input_ids": p + a, "labels": [-100] * len(p) + a})
    return encoded


def padded_loss_and_grads(model, batch, weights):
    model.get_base_model().set_attn_implementation("sdpa")
    loss = model(**batch).loss
    return loss, torch.autograd.grad(loss, weights)


def test_packed_rows_give_the_padded_batchs_loss_and_gradients(lora_model, rows, tokenizer):
    weights = [p for name, p in lora_model.named_parameters() if "lora_B" in name]
    weights = weights[:2] + weights[-2:]  # the first layers and the last
    expected, expected_grads = padded_loss_and_grads(lora_model, PaddingCollator(tokenizer.pad_token_id)(rows), weights)
    packed = PackingCollator()(rows)
    assert packed["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))
    assert packed["position_ids"][0].tolist() == [i for r in rows for i in range(len(r["input_ids"]))]
    assert packs_rows(lora_model)
    use_packed_rows(lora_model)
    try:
        for loss_of in (lambda: answer_loss(lora_model, packed)[0], lambda: lora_model(**packed).loss):  # ours, and the model's own
            loss = loss_of()
            grads = torch.autograd.grad(loss, weights)
            assert abs(loss.item() - expected.item()) < 1e-5
            assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads, expected_grads))
    finally:
        lora_model.get_base_model().set_attn_implementation("sdpa")


def test_packed_rows_under_bf16_autocast_give_the_float32_loss_and_gradients_within_its_precision(lora_model, rows, tokenizer):
    """The studio's default path where the CPU has bf16 units: products in bf16, the rows' attention in float32."""
    weights = [p for name, p in lora_model.named_parameters() if "lora_B" in name]
    weights = weights[:2] + weights[-2:]
    expected, expected_grads = padded_loss_and_grads(lora_model, PaddingCollator(tokenizer.pad_token_id)(rows), weights)
    use_packed_rows(lora_model)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = answer_loss(lora_model, PackingCollator()(rows))[0]
        grads = torch.autograd.grad(loss, weights)
    finally:
        lora_model.get_base_model().set_attn_implementation("sdpa")
    assert abs(loss.item() / expected.item() - 1) < 0.02  # bf16 keeps 8 bits of mantissa: about 0.4% per product
    for a, b in zip(grads, expected_grads):
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99


def test_packed_rows_do_not_see_each_other(lora_model, rows):
    """A row's logits are the same whatever row comes before it in the pack."""
    use_packed_rows(lora_model)
    try:
        with torch.no_grad():
            alone = lora_model(**PackingCollator()(rows[2:])).logits[0]
            after_others = lora_model(**PackingCollator()(rows)).logits[0, -len(rows[2]["input_ids"]):]
    finally:
        lora_model.get_base_model().set_attn_implementation("sdpa")
    assert torch.allclose(alone, after_others, atol=1e-4)
    assert lora_model.get_base_model().config._attn_implementation != ATTENTION
