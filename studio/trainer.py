"""The SFTTrainer the studio runs: logits only where a loss is taken, and batches of similar lengths.

A causal LM's head projects every position onto the whole vocabulary (49k columns for SmolLM2),
yet only answer tokens carry a label: prompt and padding positions are thrown away after the
most expensive matrix product of the step. TRL's own fused head skips them only on Triton
devices; on a CPU it scores every position, in 512 MB tiles, and recomputes them backward.
Here the backbone runs to its hidden states, the positions whose next-token label is not -100
are picked, and only those go through the head and the cross-entropy: the same loss, a
fraction of the work and memory.
"""

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from studio.batching import LengthGroupedSampler


def answer_loss(model, inputs: dict[str, torch.Tensor], num_items_in_batch=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean next-token cross-entropy over labelled positions, as the model's own loss computes it.

    Returns the loss (summed, divided by `num_items_in_batch` when given, else by the count of
    labelled tokens), and the logits and targets of the labelled positions, for metrics.
    """
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft injects LoRA in place
    hidden = causal_lm.base_model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                  use_cache=False).last_hidden_state
    targets = inputs["labels"][:, 1:]
    keep = targets != -100
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][keep]).float()
    targets = targets[keep]
    count = keep.sum() if num_items_in_batch is None else num_items_in_batch
    loss = F.cross_entropy(logits, targets, reduction="sum") / torch.as_tensor(count, device=logits.device).clamp(min=1)
    return loss, logits, targets


def plain_head(model) -> bool:
    """Whether the model's logits are its head's output as is (no soft-capping or scaling), as answer_loss assumes."""
    config = model.config.get_text_config()
    return all(getattr(config, name, None) in (None, 1.0) for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"))


class StudioTrainer(SFTTrainer):
    """SFTTrainer whose loss scores the labelled positions only (where the model's head is plain),
    logging TRL's own metrics (token accuracy, entropy, tokens seen) from those positions, and
    whose training batches come from the studio's LengthGroupedSampler."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = [len(ids) for ids in dataset["input_ids"]]
        return LengthGroupedSampler(lengths, self.args.train_batch_size * self.args.gradient_accumulation_steps)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not plain_head(self.model):  # full logits wanted, or a head answer_loss does not reproduce
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        loss, logits, targets = answer_loss(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as TRL does: DDP averages gradients
        with torch.no_grad():
            log_probs = logits.log_softmax(-1)
            counted = max(len(targets), 1)
            self._metrics[mode]["entropy"].append(float(-(log_probs.exp() * log_probs).sum() / counted))
            self._metrics[mode]["mean_token_accuracy"].append(float((logits.argmax(-1) == targets).sum() / counted))
        if mode == "train":
            self._total_train_tokens += int(inputs["attention_mask"].sum())
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss
