"""Under bf16 autocast, the decoder's norms and its rotary embedding hand their outputs on in bf16.

Autocast casts a float32 input to bf16 before every product it enters, and caches only
trainable leaves' casts: in a Llama-style layer the input norm's output feeds q, k and v, the
post-attention norm's feeds gate and up, and each of them (and each LoRA A beside them) cast
the same tensor again, forward and backward. Cast once where the norm ends, the products get
the same bf16 values. The rotary embedding's cos and sin, float32 because the embeddings are,
turn the bf16 queries and keys back into float32 for the rotation; in bf16 they rotate as in a
model loaded in bf16. The residual stream the layers add to stays float32.

The norms also run as one fused kernel forward (PyTorch's `_fused_rms_norm`) and a hand-written
backward for the input only (their weights are frozen): the eager norm's square, mean, scale and
weight each went over the [tokens, hidden] activations in memory, forward and backward.
"""

import types

import torch

# Architectures whose `input_layernorm` and `post_attention_layernorm` feed the attention's and the
# MLP's projections only (Gemma 2 and 3 norm the attention's output with theirs: not listed).
NORMS_BEFORE_PRODUCTS = ("llama", "mistral", "qwen2", "qwen3")


def activations_in_bf16(model) -> int:
    """Make the decoder layers' norms and the rotary embedding return the autocast dtype while autocast
    is on; returns how many modules changed. Outside autocast (float32 evaluation, merging, chat) they answer as before."""
    if model.config.get_text_config().model_type not in NORMS_BEFORE_PRODUCTS:
        return 0
    changed = 0
    for name, module in model.named_modules():
        if name.endswith(("input_layernorm", "post_attention_layernorm")):
            module.forward = types.MethodType(_norm_forward, module)
            changed += 1
        elif name.endswith("rotary_emb"):
            module.register_forward_hook(_in_autocast_dtype)
            changed += 1
    return changed


def _norm_forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
    device = hidden_states.device.type
    if not torch.is_autocast_enabled(device) or hidden_states.dtype != torch.float32 or self.weight.requires_grad:
        return _in_autocast_dtype(self, (hidden_states,), type(self).forward(self, hidden_states))
    return _RMSNormToAutocastDtype.apply(hidden_states, self.weight, self.variance_epsilon, torch.get_autocast_dtype(device))


class _RMSNormToAutocastDtype(torch.autograd.Function):
    """`weight * x / sqrt(mean(x^2) + eps)` for a float32 `x` and a frozen weight, returned in `dtype`."""

    @staticmethod
    def forward(ctx, x, weight, eps, dtype):
        normed, rstd = torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], weight, eps)
        ctx.save_for_backward(x, weight, rstd)
        return normed.to(dtype)

    @staticmethod
    def backward(ctx, grad):
        x, weight, rstd = ctx.saved_tensors
        grad_normed = grad * weight  # float32
        projection = (grad_normed * x).mean(-1, keepdim=True) * rstd.pow(3)  # the part along x, which the scale takes out
        return (grad_normed * rstd).addcmul_(x, projection, value=-1), None, None, None


def _in_autocast_dtype(module, inputs, output: torch.Tensor | tuple[torch.Tensor, ...]):
    device = (output[0] if isinstance(output, tuple) else output).device.type
    if not torch.is_autocast_enabled(device):
        return output
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) for t in output) if isinstance(output, tuple) else output.to(dtype)
