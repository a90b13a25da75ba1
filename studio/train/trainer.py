"""The SFTTrainer the studio runs: logits only where a loss is taken, and batches of similar lengths.

A causal LM's head projects every position onto the whole vocabulary (49k columns for SmolLM2),
yet only answer tokens carry a label: prompt and padding positions are thrown away after the
most expensive matrix product of the step. TRL's own fused head skips them only on Triton
devices; on a CPU it scores every position, in 512 MB tiles, and recomputes them backward.
Here the backbone runs to its hidden states, the positions whose next-token label is not -100
are picked, and only those go through the head and the cross-entropy, a chunk of positions at a
time, the gradient taken in the same pass: the same loss, a fraction of the work, and no
[positions, vocabulary] tensor kept for the backward pass.
"""

import math

import torch
from trl import SFTTrainer

from studio.train.speed.batching import LengthGroupedSampler

PACKED_ROW_KEYS = ("position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
CHUNK = 1024  # positions per head projection: about 200 MB of float32 logits at a 49k vocabulary
SOFTMAX_ROWS = 16  # positions per softmax pass on a CPU: their float32 log-probabilities (3 MB at 49k) stay in the cache
# between the passes (cast, log-softmax, pick, argmax, exp, cast back); over a whole chunk each pass goes out to memory


def answer_loss(model, inputs: dict[str, torch.Tensor], num_items_in_batch=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean next-token cross-entropy over labelled positions, as the model's own loss computes it.

    Returns the loss (summed, divided by `num_items_in_batch` when given, else by the count of
    labelled tokens), the count of labelled tokens and how many of them the model ranks first.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft injects LoRA in place
    packing = {k: inputs[k] for k in PACKED_ROW_KEYS if k in inputs}  # a padding-free batch's positions and row boundaries
    for bounds in ("cu_seq_lens_q", "cu_seq_lens_k"):  # every layer's attention reads them as Python ints: copied to the
        if bounds in packing:  # CPU once a step, where reading them on a GPU would make each of the 30 layers wait for it
            packing[bounds] = packing[bounds].cpu()
    hidden = causal_lm.base_model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                  use_cache=False, **packing).last_hidden_state
    targets = inputs["labels"][:, 1:]
    keep = targets != -100
    head = causal_lm.get_output_embeddings()
    weight = head.weight
    if torch.is_autocast_enabled(weight.device.type):  # autocast would cast the [vocabulary, hidden] weight for each
        weight = _head_weight_in(torch.get_autocast_dtype(weight.device.type), head)  # chunk's two products
    grads = (torch.is_grad_enabled() and hidden.requires_grad, torch.is_grad_enabled() and weight.requires_grad)
    summed, correct = _HeadCrossEntropy.apply(hidden[:, :-1][keep], weight, targets[keep], grads)
    count = keep.sum()
    divisor = count if num_items_in_batch is None else num_items_in_batch
    return summed / torch.as_tensor(divisor, device=summed.device).clamp(min=1), count, correct


def _head_weight_in(dtype: torch.dtype, head: torch.nn.Module) -> torch.Tensor:
    """The head's weight cast to `dtype`, kept on the head while the weight is unchanged: a frozen head (the tied
    embeddings, 28M weights for SmolLM2) is cast once a run, not once a step. A trained one is cast in every step's graph."""
    weight = head.weight
    if weight.requires_grad:
        return weight.to(dtype)
    made_from = (weight.data_ptr(), weight._version, dtype)  # the same memory, not written to since
    cached = getattr(head, "studio_cast_weight", None)
    if cached is None or cached[0] != made_from:
        cached = head.studio_cast_weight = (made_from, weight.to(dtype))
    return cached[1]


class _HeadCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `targets`, chunk by chunk, with the
    gradient computed in the forward pass: the loss is the last operation of a step, so only
    the gradients (the size of `hidden` and of `weight`) wait for the backward pass."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, grads):
        summed = torch.zeros((), dtype=torch.float32, device=hidden.device)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        grad_hidden = torch.zeros_like(hidden) if grads[0] else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if grads[1] else None
        chunks = max(1, math.ceil(len(targets) / CHUNK))  # of equal sizes: a sliver of a few rows multiplies less exactly
        start = 0
        for h, t in zip(hidden.tensor_split(chunks), targets.tensor_split(chunks)):
            logits = h @ weight.t()
            per_pass = SOFTMAX_ROWS if h.device.type == "cpu" else max(1, len(t))  # a GPU's launches would cost more than its cache saves
            for rows, row_targets in zip(logits.split(per_pass), t.split(per_pass)):
                log_probs = rows.float().log_softmax(-1)
                summed -= log_probs.gather(1, row_targets[:, None]).sum()
                correct += (log_probs.argmax(-1) == row_targets).sum()
                if grads[0] or grads[1]:  # softmax minus the one-hot target: the logits' gradient, in their place
                    grad = log_probs.exp_()
                    grad[torch.arange(len(row_targets), device=t.device), row_targets] -= 1
                    rows.copy_(grad)
            if grad_hidden is not None:
                grad_hidden[start:start + len(t)] = (logits.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight += logits.t() @ h.float()
            start += len(t)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(correct)
        return summed, correct

    @staticmethod
    def backward(ctx, grad_summed, grad_correct):
        grad_hidden, grad_weight = ctx.saved_tensors
        return (None if grad_hidden is None else grad_hidden * grad_summed.to(grad_hidden.dtype),
                None if grad_weight is None else (grad_weight * grad_summed).to(ctx.weight_dtype), None, None)


def plain_head(model) -> bool:
    """Whether the model's logits are its head's output as is (no bias, soft-capping or scaling), as answer_loss assumes."""
    config = model.config.get_text_config()
    head = model.get_output_embeddings()
    return getattr(head, "bias", None) is None and all(
        getattr(config, name, None) in (None, 1.0) for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"))


class StudioTrainer(SFTTrainer):
    """SFTTrainer whose loss scores the labelled positions only (where the model's head is plain),
    and whose training batches come from the studio's LengthGroupedSampler. It logs TRL's token
    accuracy and tokens seen; not the entropy, which would take one more pass over the logits."""

    _parameter_count: int | None = None

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        return LengthGroupedSampler(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps)

    def floating_point_ops(self, inputs: dict[str, torch.Tensor]) -> int:
        """The Trainer's estimate (6 per parameter and token) for its `total_flos`, the parameters counted once a run, not
        walked again on every step (20 ms a step here)."""
        if self._parameter_count is None:
            self._parameter_count = self.model.num_parameters(exclude_embeddings=True)
        return 6 * inputs["input_ids"].numel() * self._parameter_count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # Full logits wanted, a head answer_loss does not reproduce, or a model wrapped for several devices (DDP, FSDP,
        # DataParallel), whose forward must run through the wrapper for the gradients to be shared.
        if return_outputs or model is not self.model or not plain_head(self.model):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        with self.accelerator.autocast():  # the precision `bf16` asks for: accelerate's autocast wraps model.forward only
            loss, count, correct = answer_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as TRL does: DDP averages gradients
        self._metrics[mode]["mean_token_accuracy"].append(float(correct / count.clamp(min=1)))
        if mode == "train":
            self._total_train_tokens += int(inputs["attention_mask"].sum())
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss
