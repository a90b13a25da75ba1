"""A LoRA model's frozen linear weights in bf16 under bf16 autocast: the float32 model's loss and gradients within bf16's precision."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from studio.train.recipe import frozen_linears_in_bf16
from studio.train.speed.batching import PaddingCollator
from studio.train.speed.lora_fused import fuse_lora_products
from studio.train.trainer import answer_loss


def test_bf16_frozen_weights_give_the_float32_loss_and_gradients_within_its_precision(bundled_dir, tokenizer):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(bundled_dir, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    model = get_peft_model(base, config)  # B is random, not zero: the adapter changes the logits
    fuse_lora_products(model)
    rows = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in ("Name a colour. Blue, like the sea.", "Two plus two? Four.")]
    batch = PaddingCollator(tokenizer.pad_token_id)([{"input_ids": ids, "labels": ids} for ids in rows])
    weights = [p for name, p in model.named_parameters() if "lora_" in name]
    weights = weights[:4] + weights[-4:]  # A and B of the first layers and the last
    expected = answer_loss(model, batch)[0]
    expected_grads = torch.autograd.grad(expected, weights)

    assert frozen_linears_in_bf16(model) == 30 * 7  # every base layer the adapter wraps; the tied head stays float32
    assert model.get_output_embeddings().weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)  # A and B, so the saved adapter too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = answer_loss(model, batch)[0]
    grads = torch.autograd.grad(loss, weights)
    assert abs(loss.item() / expected.item() - 1) < 0.02  # bf16 keeps 8 bits of mantissa: about 0.4% per product
    for a, b in zip(grads, expected_grads):
        assert a.dtype == torch.float32
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.99
