"""Preference training: the adapter learns to prefer each pair's chosen answer over its rejected one.

Two objectives, both TRL trainers on the same pairs, LoRA or QLoRA, from the base or continuing an adapter:
- DPO (DPOTrainer) scores both answers of a pair under the adapter and under a reference, the
  starting point, and widens the gap between them;
- KTO (KTOTrainer) takes the answers one at a time, the chosen one marked desirable and the
  rejected one undesirable, and pushes each up or down from the reference, measured against an
  estimate of how far the adapter has drifted overall (answers paired with other rows' prompts).
For both, with a fresh adapter the reference is the base with the adapter switched off; continuing
from an adapter, TRL keeps a frozen copy of it ("ref") beside the one it trains. Either way no
second copy of the base model is loaded. Reporting, cancel, checkpoints and resume are the
instruction-tuning recipe's (studio.train.recipe).
"""

import logging
import random
import time
from pathlib import Path

import torch
from transformers.trainer_callback import PrinterCallback

from studio.data.instructions import split_indices
from studio.data.prompts import build_prompt
from studio.device import Device
from studio.models.catalog import new_tokenizer
from studio.train.health import preference_warnings, zero_lora_layers
from studio.train.recipe import (Reporter, StudioCallback, TrainInputs, TrainResult, adapter_model, checkpoint_to_resume,
                             save_adapter, total_steps, train_to_the_end, trainer_arguments, training_device)

log = logging.getLogger("studio.train.recipe")
# TRL's names for what a step logs -> the studio's metrics columns. Rewards are beta x (log-likelihood under the adapter
# - under the reference). DPO logs the mean margin (chosen's reward - rejected's, per pair) and the share of pairs whose
# margin is positive. KTO logs the mean reward of the chosen and of the rejected answers of a batch and their difference as
# "rewards/margins" (each batch holds both answers of its pairs, see _unpaired), and no accuracy: its column stays empty.
PREFERENCE_METRICS = {"rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy", "logps/chosen": "chosen_logp"}


def train_preferences(inputs: TrainInputs, work_dir: Path, adapter_dir: Path, reporter: Reporter) -> TrainResult:
    """Train an adapter with the spec's objective (DPO or KTO) on preference records ({"prompt": turns, "chosen",
    "rejected"}) and save it to `adapter_dir`, resuming from work_dir's last complete checkpoint.

    Raises JobError when a checkpoint was made with other settings or data, TrainingDiverged when the loss
    stops being a number.
    """
    started = time.monotonic()
    spec, device = inputs.spec, training_device(work_dir)
    torch.manual_seed(spec.seed)
    tokenizer = new_tokenizer(inputs.base_dir, pad_with_eos=True)
    train_rows, validation_rows = _pairs(inputs, tokenizer)
    resume_from = checkpoint_to_resume(work_dir, inputs)
    trainer = _trainer(inputs, adapter_model(inputs, device), tokenizer, train_rows, validation_rows, work_dir, device, reporter)
    callback, train_seconds = train_to_the_end(trainer, resume_from, spec.learning_rate)  # the _PreferenceCallback
    for warning in preference_warnings(callback.history):  # the Jobs tab shows them too, from the stored metrics
        log.warning(warning.message)
    eval_loss = trainer.evaluate()["eval_loss"] if validation_rows else None
    model = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in model.peft_config:  # TRL's frozen copy of the starting adapter: the reference, not part of the result
        model.delete_adapter("ref")
    state = trainer.state
    result = TrainResult(
        adapter_dir=adapter_dir, steps=state.global_step, final_loss=callback.last_loss, eval_loss=eval_loss,
        tokens=int(state.num_input_tokens_seen), computed_tokens=int(state.num_input_tokens_seen),
        seconds=time.monotonic() - started, train_seconds=train_seconds, cancelled=callback.cancelled,
        train_rows=len(train_rows), validation_rows=len(validation_rows), stopped_early=False, best_step=None,
        zero_layers=len(zero_lora_layers(model)),
    )
    if trainer.is_world_process_zero():
        save_adapter(model, tokenizer, inputs, result, None)
    return result


def _pairs(inputs: TrainInputs, tokenizer) -> tuple[list[dict], list[dict]]:
    """The records as TRL's plain preference rows: the prompt rendered in the run's template, then each answer."""
    rows = []
    for record in inputs.records:
        turns = record["prompt"]
        system = turns[0]["content"] if turns[0]["role"] == "system" else ""
        prompt = build_prompt(turns[1:] if system else turns, inputs.template, tokenizer, system)
        rows.append({"prompt": prompt, "chosen": record["chosen"], "rejected": record["rejected"]})
    train_ids, validation_ids = split_indices(len(rows), inputs.validation_fraction, inputs.split_seed)
    return [rows[i] for i in train_ids], [rows[i] for i in validation_ids]


def _unpaired(pairs: list[dict], pairs_per_batch: int, seed: int) -> list[dict]:
    """KTO's rows: each pair's chosen answer desirable, its rejected one undesirable. The pairs are shuffled once, then
    each batch holds the chosen answers of its pairs followed by their rejected ones. KTO reads its rows in order and
    estimates its KL term from each row's prompt with the previous row's answer: in this order that answer always
    belongs to another prompt (batches of two pairs or more), and every batch reports both rewards."""
    order = pairs[:]
    random.Random(seed).shuffle(order)
    rows = []
    for start in range(0, len(order), pairs_per_batch):
        batch = order[start:start + pairs_per_batch]
        rows += [{"prompt": p["prompt"], "completion": p["chosen"], "label": True} for p in batch]
        rows += [{"prompt": p["prompt"], "completion": p["rejected"], "label": False} for p in batch]
    return rows


def _trainer(inputs: TrainInputs, model, tokenizer, train_rows, validation_rows, work_dir: Path, device: Device, reporter: Reporter):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    spec = inputs.spec
    steps = total_steps(spec, len(train_rows))
    arguments = dict(
        **trainer_arguments(spec, steps, work_dir, device),
        beta=spec.beta,
        save_steps=spec.save_steps,
        eval_strategy="steps" if validation_rows else "no",
        eval_steps=max(1, steps // 5),
    )
    if spec.objective == "kto":  # a batch of pairs is twice as many KTO rows, so both objectives take the same steps
        arguments.update(per_device_train_batch_size=2 * spec.batch_size, per_device_eval_batch_size=2 * spec.batch_size)
        train_rows, validation_rows = (_unpaired(rows, spec.batch_size, spec.seed) for rows in (train_rows, validation_rows))
    config_class, trainer_class = (KTOConfig, KTOTrainer) if spec.objective == "kto" else (DPOConfig, DPOTrainer)
    trainer = trainer_class(model=model, args=config_class(**arguments), processing_class=tokenizer,
                            train_dataset=Dataset.from_list(train_rows),
                            eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
                            callbacks=[_PreferenceCallback(reporter, inputs, device)])
    trainer.remove_callback(PrinterCallback)
    return trainer


class _PreferenceCallback(StudioCallback):
    """The instruction-tuning callback, also reporting the reward margin, preference accuracy and chosen likelihood."""

    def __init__(self, reporter: Reporter, inputs: TrainInputs, device: Device) -> None:
        super().__init__(reporter, inputs, device)
        self.history: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs=logs, **kwargs)
        values = {column: (logs or {})[key] for key, column in PREFERENCE_METRICS.items() if key in (logs or {})}
        if values and "loss" in (logs or {}):  # training steps only: evaluation logs carry eval_ names
            self.history.append(values)
            self.reporter.metrics(state.global_step, values)
