"""LoRA's small products folded into the base layer's output: `addmm(base(x), (x @ A.T) * scaling, B.T)`.

peft computes `result + lora_B(lora_A(x)) * scaling`: the scaling multiplies, and the sum adds,
a [tokens, out features] tensor in every adapted layer, forward and backward. On a CPU these
element-wise passes over memory cost as much as a sixth of a step (the profile in the README).
Here the scaling is applied to the rank-sized product and the adapter's product is accumulated
into the base layer's output by the matrix multiply itself: the same sums, fewer passes.
Under autocast the input is cast once for both products, which autocast would cast again for
each, and an input already in bf16 (studio.train.speed.bf16_activations) is taken as it is.

Sibling layers that read the same input (q, k and v; gate and up) share one product for their
A's: `x @ [A_q; A_k; A_v].T`, rank 48 instead of three rank-16 ones, forward and backward.
"""

import types
import weakref

import torch
from peft.tuners.lora import Linear as LoraLinear


SAME_INPUT_SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # Llama-style blocks' names


def fuse_lora_products(model) -> int:
    """Give plain LoRA layers (a float nn.Linear base, no DoRA) the fused forward; returns how many."""
    fused = 0
    for module in model.modules():
        if isinstance(module, LoraLinear) and type(module.base_layer) is torch.nn.Linear:
            module.forward = types.MethodType(_fused_forward, module)
            fused += 1
        for names in SAME_INPUT_SIBLINGS:
            siblings = [getattr(module, name, None) for name in names]
            if all(isinstance(s, LoraLinear) and type(s.base_layer) is torch.nn.Linear for s in siblings):
                shared = SharedLowRank(siblings)
                for sibling in siblings:
                    sibling.shared_low_rank = shared
    return fused


class SharedLowRank:
    """The A products of sibling LoRA layers that read the same input, made once for all of them: the first sibling
    called with an input computes them, the others (called with the very same tensor) take their part."""

    def __init__(self, layers: list) -> None:
        self.layers = [weakref.ref(layer) for layer in layers]  # the layers hold this; held back, they would form a cycle
        # that only Python's collector frees, keeping a finished job's model in memory until it runs
        self.input: torch.Tensor | None = None
        self.products: tuple[torch.Tensor, ...] = ()

    def product(self, layer, given: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor | None:
        """`x @ layer's A.T` from the shared product, or None where the siblings' adapters differ (fall back to one's own).
        `given` is the input as the layer was called with it, `x` the same cast to the autocast dtype, made anew each call."""
        siblings = [sibling() for sibling in self.layers]
        if self.input is not given:
            weights = [sibling.lora_A[name].weight if name in sibling.lora_A else None for sibling in siblings]
            if any(w is None or w.dtype != weights[0].dtype for w in weights):
                return None
            self.input, self.products = given, (x @ torch.cat(weights).t()).split([len(w) for w in weights], -1)
        return self.products[siblings.index(layer)]


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    names = self.active_adapters
    if args or kwargs or self.disable_adapters or self.merged or len(names) != 1 or names[0] not in self.lora_A:
        return type(self).forward(self, x, *args, **kwargs)
    name = names[0]
    a, b = self.lora_A[name].weight, self.lora_B[name].weight
    autocast = torch.is_autocast_enabled(x.device.type)
    if name in self.lora_variant or not isinstance(self.lora_dropout[name], torch.nn.Identity) or (x.dtype != a.dtype and not autocast):
        return type(self).forward(self, x, *args, **kwargs)
    given = x
    if autocast:  # cast once for the base's product and A's, which autocast would each cast again
        x = x.to(torch.get_autocast_dtype(x.device.type))
    base = self.base_layer(x)
    shared = getattr(self, "shared_low_rank", None)
    low_rank = shared.product(self, given, x, name) if shared else None
    low_rank = (x @ a.t() if low_rank is None else low_rank) * self.scaling[name]
    return torch.addmm(base.reshape(-1, base.shape[-1]), low_rank.reshape(-1, low_rank.shape[-1]), b.t()).view(base.shape)
