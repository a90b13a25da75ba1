"""Padding-free batches: packed rows give the padded batch's loss and gradients, row by row."""

from types import SimpleNamespace

import pytest
import torch

from studio.train.speed.batching import PaddingCollator
from studio.train.speed.packing import ATTENTION, PackingCollator, packed_rows_attention, packs_rows, use_packed_rows
from studio.train.trainer import answer_loss


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


def rows_attention_in_float32(query, key, value, lengths):
    """Each row's causal attention by PyTorch's own kernel in float32, laid out as Transformers' attention returns it."""
    rows = zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2))
    return torch.cat([torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True) for q, k, v in rows],
                     2).transpose(1, 2)


def test_bf16_rows_attention_by_products_gives_float32_attention_within_bf16_precision():
    """bf16 queries on a CPU (the studio's default where the CPU has bf16 units) take the path by bf16 products: each
    row attends causally to itself only, grouped-query heads share their key and value heads, and the output and the
    gradients are float32 attention's within bf16's precision."""
    torch.manual_seed(0)
    lengths, size = [7, 12, 5], 8
    inputs = [torch.randn(1, heads, sum(lengths), size, requires_grad=True) for heads in (6, 2, 2)]  # query, key, value
    expected = rows_attention_in_float32(*inputs, lengths)
    upstream = torch.randn(expected.shape)
    expected_grads = torch.autograd.grad((expected * upstream).sum(), inputs)
    bf16_inputs = [t.detach().bfloat16().requires_grad_() for t in inputs]
    bounds = torch.tensor([0, *lengths]).cumsum(0, dtype=torch.int32)
    output, _ = packed_rows_attention(SimpleNamespace(training=True), *bf16_inputs, None, scaling=size ** -0.5, cu_seq_lens_q=bounds)
    assert output.dtype == torch.bfloat16 and output.shape == expected.shape
    assert torch.allclose(output.float(), expected, atol=0.03, rtol=0.03)
    grads = torch.autograd.grad((output.float() * upstream).sum(), bf16_inputs)
    for grad, expected_grad in zip(grads, expected_grads):
        assert torch.nn.functional.cosine_similarity(grad.float().flatten(), expected_grad.flatten(), dim=0) > 0.999
