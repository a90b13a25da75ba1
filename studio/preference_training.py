"""Preference training (DPO): the adapter learns to prefer each pair's chosen answer over its rejected one.

TRL's DPOTrainer scores both answers under the adapter and under a reference, the starting
point. With a fresh adapter the reference is the base with the adapter switched off; continuing
from an adapter, TRL keeps a frozen copy of it ("ref") beside the one it trains. Either way no
second copy of the base model is loaded. Reporting, cancel, checkpoints and resume are the
instruction-tuning recipe's (studio.training).
"""

import logging
import time
from pathlib import Path

import torch
from transformers.trainer_callback import PrinterCallback

from studio.chat import build_prompt
from studio.data import split_indices
from studio.device import Device, pick_device
from studio.errors import TrainingDiverged
from studio.health import diverged_message, zero_lora_layers
from studio.training import (Reporter, TrainInputs, TrainResult, _adapter_model, _checkpoint_to_resume, _save_adapter,
                             _StudioCallback, total_steps, trainer_arguments, training_tokenizer)

log = logging.getLogger("studio.training")
# TRL's names for what a DPO step logs -> the studio's metrics columns
PREFERENCE_METRICS = {"rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy", "logps/chosen": "chosen_logp"}


def train_preferences(inputs: TrainInputs, work_dir: Path, adapter_dir: Path, reporter: Reporter) -> TrainResult:
    """Train an adapter with DPO on preference records ({"prompt": turns, "chosen", "rejected"}) and save it
    to `adapter_dir`, resuming from work_dir's last complete checkpoint.

    Raises JobError when a checkpoint was made with other settings or data, TrainingDiverged when the loss
    stops being a number.
    """
    started = time.monotonic()
    spec, device = inputs.spec, pick_device()
    torch.manual_seed(spec.seed)
    tokenizer = training_tokenizer(inputs.base_dir)
    train_rows, validation_rows = _pairs(inputs, tokenizer)
    resume_from = _checkpoint_to_resume(work_dir, inputs)
    trainer = _trainer(inputs, _adapter_model(inputs, device), tokenizer, train_rows, validation_rows, work_dir, device, reporter)
    loop_started = time.monotonic()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_seconds = time.monotonic() - loop_started
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, _PreferenceCallback))
    if callback.diverged:
        raise TrainingDiverged(diverged_message(*callback.diverged, spec.learning_rate))
    for warning in preference_warnings(callback.history):
        log.warning(warning)
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
        _save_adapter(model, tokenizer, inputs, result, None)
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


def _trainer(inputs: TrainInputs, model, tokenizer, train_rows, validation_rows, work_dir: Path, device: Device, reporter: Reporter):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    spec = inputs.spec
    steps = total_steps(spec, len(train_rows))
    config = DPOConfig(
        **trainer_arguments(spec, steps, work_dir, device),
        beta=spec.beta,
        save_steps=spec.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if validation_rows else "no",
        eval_steps=max(1, steps // 5),
        logging_nan_inf_filter=False,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=device.cuda,
    )
    trainer = DPOTrainer(model=model, args=config, processing_class=tokenizer, train_dataset=Dataset.from_list(train_rows),
                         eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
                         callbacks=[_PreferenceCallback(reporter, inputs, device)])
    trainer.remove_callback(PrinterCallback)
    return trainer


class _PreferenceCallback(_StudioCallback):
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


def preference_warnings(history: list[dict]) -> list[str]:
    """Plain-words warnings about a DPO run from its steps' reward margins and chosen log-likelihoods."""
    if len(history) < 2:
        return []
    warnings = []
    first, last = history[0]["chosen_logp"], history[-1]["chosen_logp"]
    if last < first - max(5.0, abs(first)):
        warnings.append(f"The chosen answers became much less likely ({first:.1f} → {last:.1f}): the adapter is pushing the "
                        "rejected answers down by unlearning the chosen ones too. Lower the learning rate or raise beta.")
    if history[-1]["reward_margin"] > 10:
        warnings.append(f"The reward margin ran away to {history[-1]['reward_margin']:.1f}: the adapter has moved far from where "
                        "it started and may answer oddly elsewhere. Raise beta, lower the learning rate or train fewer steps.")
    return warnings
