"""The studio's bf16 path with activations cast once (norms' outputs, rotary cos/sin, LoRA inputs, the head's weight once a
step): the float32 model's loss and gradients within bf16's precision."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

from studio.train.recipe import frozen_linears_in_bf16
from studio.train.speed.bf16_activations import activations_in_bf16
from studio.train.speed.lora_fused import fuse_lora_products
from studio.train.speed.packing import PackingCollator, use_packed_rows
from studio.train.trainer import answer_loss


def loss_and_grads(model, batch, weights, autocast: bool):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = answer_loss(model, batch)[0]
    return loss, torch.autograd.grad(loss, weights)


def test_bf16_activations_give_the_float32_loss_and_gradients_within_its_precision(bundled_dir, tokenizer):
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(bundled_dir, dtype=torch.float32)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    model = get_peft_model(base, config)  # B is random, not zero: the adapter changes the logits
    pairs = [("Name a colour.", " Blue, like the sea on a calm day."), ("What is two plus two? Think.", " Four, of course.")]
    rows = []
    for prompt, answer in pairs:
        p, a = tokenizer(prompt, add_special_tokens=False)["input_ids"], tokenizer(answer, add_special_tokens=False)["input_ids"]
        rows.append({"input_ids": p + a, "labels": [-100] * len(p) + a})
    batch = PackingCollator()(rows)
    weights = [p for name, p in model.named_parameters() if "lora_" in name]
    weights = weights[:4] + weights[-4:]  # A and B of the first layers and the last
    use_packed_rows(model)
    expected, expected_grads = loss_and_grads(model, batch, weights, autocast=False)
    fuse_lora_products(model)
    frozen_linears_in_bf16(model)

    assert activations_in_bf16(model) == 30 * 2 + 1  # each layer's two norms (not the final one) and the rotary embedding
    loss, grads = loss_and_grads(model, batch, weights, autocast=True)
    # Measured: float32 4.9125, these casts 4.9207 (+0.17%), autocast casting every product's input itself 4.8721 (-0.8%).
    assert abs(loss.item() / expected.item() - 1) < 0.01  # the validation loss may move by 1% at most
    for a, b in zip(grads, expected_grads):
        assert a.dtype == torch.float32  # A and B, their gradients and the saved adapter stay float32
        assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.995  # measured 0.9985 or more
    with torch.no_grad():  # outside autocast (evaluation, merging, chat) the norms answer in float32 as before
        norm = model.get_base_model().model.layers[0].input_layernorm
        assert norm(torch.randn(1, 3, 576)).dtype == torch.float32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert norm(torch.randn(1, 3, 576)).dtype == torch.bfloat16


def test_norms_fused_kernel_gives_the_eager_norms_output_and_input_gradient(bundled_dir):
    """Under autocast the decoder's norms run PyTorch's fused kernel and their own backward: the eager norm's values."""
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    norm = LlamaRMSNorm(576, eps=1e-5)
    norm.weight.data.uniform_(0.5, 1.5)
    norm.weight.requires_grad_(False)  # frozen, as under LoRA
    model = torch.nn.Module()
    model.config = AutoConfig.from_pretrained(bundled_dir)
    model.input_layernorm = norm
    x = torch.randn(2, 9, 576, requires_grad=True)
    upstream = torch.randn(2, 9, 576).bfloat16().float()  # what reaches the norm's backward through its bf16 output
    expected = norm(x)
    expected_grad, = torch.autograd.grad((expected * upstream).sum(), x)
    assert activations_in_bf16(model) == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = norm(x)
    grad, = torch.autograd.grad((output.float() * upstream).sum(), x)
    assert output.dtype == torch.bfloat16
    assert torch.allclose(output.float(), expected, rtol=0.01, atol=0.01)  # bf16's rounding of the same values
    assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-5)  # the same upstream gradient, float32 inside
