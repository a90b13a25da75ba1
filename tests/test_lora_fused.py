"""LoRA's products fused into the base layer's output give peft's own loss and gradients."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from studio.train.speed.lora_fused import fuse_lora_products


def test_fused_lora_products_give_peft_own_loss_and_gradients(bundled_dir, tokenizer):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(bundled_dir, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    model = get_peft_model(base, config)  # B is random, not zero: the adapter changes the logits
    batch = tokenizer(["Name a colour. Blue, like the sea.", "Two plus two? Four."], return_tensors="pt", padding=True)
    batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    weights = [p for name, p in model.named_parameters() if "lora_" in name]
    weights = weights[:6] + weights[-4:]  # A and B of the first layers (q, k, v: one shared A product) and the last

    expected = model(**batch).loss
    expected_grads = torch.autograd.grad(expected, weights)
    assert fuse_lora_products(model) == 30 * 7  # every linear layer of the 30 blocks
    assert sum(hasattr(m, "shared_low_rank") for m in model.modules()) == 30 * 5  # q, k, v and gate, up share their A's product
    loss = model(**batch).loss
    grads = torch.autograd.grad(loss, weights)
    assert abs(loss.item() - expected.item()) < 1e-5
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads, expected_grads))
    with model.disable_adapter():  # the base alone still answers as the base
        assert abs(model(**batch).loss.item() - base_loss(bundled_dir, batch)) < 1e-5


def base_loss(bundled_dir, batch) -> float:
    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(bundled_dir, dtype=torch.float32)(**batch).loss.item()
