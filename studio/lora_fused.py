"""LoRA's small products folded into the base layer's output: `addmm(base(x), (x @ A.T) * scaling, B.T)`.

peft computes `result + lora_B(lora_A(x)) * scaling`: the scaling multiplies, and the sum adds,
a [tokens, out features] tensor in every adapted layer, forward and backward. On a CPU these
element-wise passes over memory cost as much as a sixth of a step (the profile in the README).
Here the scaling is applied to the rank-sized product and the adapter's product is accumulated
into the base layer's output by the matrix multiply itself: the same sums, fewer passes.
Under autocast the input is cast once for both products, which autocast would cast again for
each, and an input already in bf16 (studio.bf16_activations) is taken as it is.
"""

import types

import torch
from peft.tuners.lora import Linear as LoraLinear


def fuse_lora_products(model) -> int:
    """Give plain LoRA layers (a float nn.Linear base, no DoRA) the fused forward; returns how many."""
    fused = 0
    for module in model.modules():
        if isinstance(module, LoraLinear) and type(module.base_layer) is torch.nn.Linear:
            module.forward = types.MethodType(_fused_forward, module)
            fused += 1
    return fused


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    names = self.active_adapters
    if args or kwargs or self.disable_adapters or self.merged or len(names) != 1 or names[0] not in self.lora_A:
        return type(self).forward(self, x, *args, **kwargs)
    name = names[0]
    a, b = self.lora_A[name].weight, self.lora_B[name].weight
    autocast = torch.is_autocast_enabled(x.device.type)
    if name in self.lora_variant or not isinstance(self.lora_dropout[name], torch.nn.Identity) or (x.dtype != a.dtype and not autocast):
        return type(self).forward(self, x, *args, **kwargs)
    if autocast:  # cast once for the base's product and A's, which autocast would each cast again
        x = x.to(torch.get_autocast_dtype(x.device.type))
    base = self.base_layer(x)
    low_rank = (x @ a.t()) * self.scaling[name]
    return torch.addmm(base.reshape(-1, base.shape[-1]), low_rank.reshape(-1, low_rank.shape[-1]), b.t()).view(base.shape)
