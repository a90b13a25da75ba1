"""The training recipe: setup -> train -> save, for one TrainSpec on one dataset.

TRL's SFTTrainer does the training on token ids and labels we build ourselves (so the
preview and the loss mask agree). A Reporter receives progress and decides on cancel;
checkpoints are marked complete only after they are fully written, and the adapter is
written to a staging folder and renamed into place.
"""

import gc
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_callback import PrinterCallback

from studio.adapters.cards import render_card, table_rows
from studio.data.instructions import split_indices
from studio.data.prompts import encode, get_template, render
from studio.device import Device, cpu_has_bf16_instructions, memory_mb, peak_flops, pick_device, training_flops_per_token
from studio.errors import JobError, SpecError, TrainingDiverged
from studio.models.catalog import HUB_ID, load_base_model, lora_targets, new_tokenizer, public_name
from studio.settings import TOKEN_CACHE
from studio.staging import staged_folder
from studio.train import token_cache
from studio.train.health import diverged_message, zero_lora_layers
from studio.train.spec import TrainSpec
from studio.train.speed.batching import PaddingCollator
from studio.train.speed.bf16_activations import activations_in_bf16
from studio.train.speed.lora_fused import fuse_lora_products
from studio.train.speed.packing import PackingCollator, packs_rows, use_packed_rows

log = logging.getLogger("studio.train.recipe")
COMPLETE_MARKER = "studio-complete.json"
# A check counts as better only if the held-out loss fell by more than this (nats a token): a loss of 0.0003 that
# creeps to 0.0002 changes no answer, and Auto, which trains until the loss stops improving, would run to its ceiling.
MIN_IMPROVEMENT = 0.001


class Reporter(Protocol):
    """Where training reports to: the store for queued jobs, the console for the CLI."""

    def started(self, total_steps: int) -> None: ...
    def metrics(self, step: int, values: dict) -> None: ...
    def should_stop(self) -> bool: ...


@dataclass(frozen=True)
class TrainInputs:
    spec: TrainSpec
    name: str
    base_model: str  # the reference the user gave: "bundled", a folder or a hub id
    base_dir: Path
    records: list[dict]
    template: str
    validation_fraction: float
    split_seed: int
    dataset_hash: str
    start_adapter: Path | None = None  # an adapter folder whose weights the run continues from (studio.train.continuation)
    lineage: str | None = None  # where the adapter comes from, in words (studio.adapters.lineage), for its card


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: Path
    steps: int
    final_loss: float | None
    eval_loss: float | None
    tokens: int  # real (non-padding) tokens trained on
    computed_tokens: int  # tokens computed, padding included
    seconds: float  # the whole run: loading, tokenising, training, saving
    train_seconds: float  # the training loop alone
    cancelled: bool
    train_rows: int
    validation_rows: int
    stopped_early: bool  # by early stopping, at `steps`
    best_step: int | None  # the checkpoint kept, when early stopping chose the best one
    zero_layers: int  # adapter layers whose weights never moved from zero

    def summary(self) -> dict:
        return {"steps": self.steps, "final_loss": self.final_loss, "eval_loss": self.eval_loss, "tokens": self.tokens,
                "computed_tokens": self.computed_tokens, "seconds": round(self.seconds, 1), "train_seconds": round(self.train_seconds, 1),
                "train_rows": self.train_rows, "validation_rows": self.validation_rows, "stopped_early": self.stopped_early,
                "best_step": self.best_step, "zero_layers": self.zero_layers}


def train(inputs: TrainInputs, work_dir: Path, adapter_dir: Path, reporter: Reporter) -> TrainResult:
    """Train an adapter and save it to `adapter_dir`; resume from work_dir's last complete checkpoint.

    The dataset's token ids are cached by content in work_dir's parent (studio.settings.TOKEN_CACHE), for the next job on it.

    Raises SpecError for data or settings that cannot train, JobError when a checkpoint
    was made with other settings or data.
    """
    started = time.monotonic()
    spec, device = inputs.spec, training_device(work_dir)
    torch.manual_seed(spec.seed)
    tokenizer = new_tokenizer(inputs.base_dir, pad_with_eos=True)
    train_rows, validation_rows = _encode_split(inputs, tokenizer, work_dir.parent / TOKEN_CACHE)
    resume_from = checkpoint_to_resume(work_dir, inputs)
    model = adapter_model(inputs, device)
    trainer = _trainer(inputs, model, tokenizer, train_rows, validation_rows, work_dir, device, reporter)
    callback, train_seconds = train_to_the_end(trainer, resume_from, spec.learning_rate)
    state = trainer.state
    best_step = checkpoint_step(Path(state.best_model_checkpoint)) if trainer.args.load_best_model_at_end and state.best_model_checkpoint else None
    if best_step is not None:
        eval_loss = state.best_metric  # the best checkpoint's weights were loaded back at the end
    else:
        eval_loss = callback.last_eval[1] if callback.last_eval[0] == state.global_step else None
        if validation_rows and eval_loss is None:
            eval_loss = trainer.evaluate()["eval_loss"]  # logged through the callback like any evaluation
    result = TrainResult(
        adapter_dir=adapter_dir, steps=state.global_step, final_loss=callback.last_loss, eval_loss=eval_loss,
        tokens=int(state.num_input_tokens_seen), computed_tokens=trainer.data_collator.computed_tokens,
        seconds=time.monotonic() - started, train_seconds=train_seconds, cancelled=callback.cancelled,
        train_rows=len(train_rows), validation_rows=len(validation_rows),
        stopped_early=not callback.cancelled and state.global_step < state.max_steps, best_step=best_step,
        zero_layers=len(zero_lora_layers(trainer.model)),
    )
    # FSDP holds each weight in shards: gathering them is every process's work, saving the first one's.
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    if trainer.is_world_process_zero():
        save_adapter(trainer.accelerator.unwrap_model(trainer.model), tokenizer, inputs, result, state_dict)
    return result


def train_to_the_end(trainer, resume_from: Path | None, learning_rate: float) -> tuple["StudioCallback", float]:
    """Run `trainer` (from `resume_from`, a checkpoint, if any) to its last step, or until cancelled or stopped early;
    its StudioCallback and the loop's seconds. The instruction and the preference runs share it.

    Raises TrainingDiverged when the loss stopped being a number.
    """
    started = time.monotonic()
    # The half million objects of the libraries and the model outlive the run: Python's collector walked them all in each
    # full collection (0.29 CPU s; the Trainer asks for one as it starts), 0.03 s frozen. Unfrozen after, collectable again.
    gc.freeze()
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        gc.unfreeze()
    seconds = time.monotonic() - started
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, StudioCallback))
    if callback.diverged:
        raise TrainingDiverged(diverged_message(*callback.diverged, learning_rate))
    return callback, seconds


def _encode_split(inputs: TrainInputs, tokenizer, cache_dir: Path) -> tuple[list[dict], list[dict]]:
    spec = inputs.spec
    key = token_cache.cache_key(inputs.base_dir, inputs.dataset_hash, inputs.template, spec.max_length, spec.responses_only,
                                inputs.validation_fraction, inputs.split_seed)
    cached = token_cache.load(cache_dir, key)
    if cached:
        train_rows, validation_rows = cached
    else:
        template = get_template(inputs.template)
        train_ids, validation_ids = split_indices(len(inputs.records), inputs.validation_fraction, inputs.split_seed)
        rows = [render(r, template, tokenizer) for r in inputs.records]
        train_rows = encode([rows[i] for i in train_ids], tokenizer, spec.max_length, spec.responses_only)
        validation_rows = encode([rows[i] for i in validation_ids], tokenizer, spec.max_length, spec.responses_only)
        token_cache.save(cache_dir, key, train_rows, validation_rows)
    if not train_rows:
        raise SpecError("No training rows are left: every answer is cut away at this maximum length. Raise the maximum length.")
    return train_rows, validation_rows


def adapter_model(inputs: TrainInputs, device: Device):
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    spec = inputs.spec
    # On a GPU with bf16 units the frozen base stays in bf16, so no step casts it again; the LoRA
    # weights themselves stay in float32 (peft's default), as do their optimizer states. On a CPU
    # the base loads in float32 and only its frozen linear weights turn bf16 (below): 8 steps took 2.6% less CPU time
    # (median of three interleaved pairs), the validation loss the same to four decimals.
    dtype = torch.bfloat16 if device.cuda and device.bf16 else torch.float32
    model = load_base_model(inputs.base_dir, quantize_4bit=spec.method == "qlora", device=device, dtype=dtype)
    if spec.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    if inputs.start_adapter:  # its own saved config shapes the adapter; the spec was reshaped to match it
        model = PeftModel.from_pretrained(model, str(inputs.start_adapter), is_trainable=True)
    else:
        config = LoraConfig(r=spec.rank, lora_alpha=spec.lora_alpha, lora_dropout=spec.lora_dropout, task_type="CAUSAL_LM",
                            target_modules=lora_targets(model.config.model_type, spec.target_modules),
                            use_dora=spec.method == "dora", use_rslora=spec.method == "rslora")
        model = get_peft_model(model, config)
        fuse_lora_products(model)  # plain LoRA layers: the adapter's product summed into the base's by the matmul
    if not device.cuda and device.bf16 and spec.method in ("lora", "rslora"):
        frozen_linears_in_bf16(model)
        activations_in_bf16(model)  # each activation cast once, not before every product: the README's Performance section
    return model


def frozen_linears_in_bf16(model) -> int:
    """Turn the frozen weights of a float32 model's linear layers bf16, so bf16 autocast has none to recast each step.

    Autocast caches the casts of trainable leaves only: a frozen float32 weight is cast again in
    every forward pass. The adapter's A and B (trainable) stay float32, as do their gradients and
    optimizer states, so the saved adapter is float32; the embeddings, the tied head and the norms
    stay float32 too, so the residual stream keeps its precision. Returns how many layers changed.
    """
    head = model.get_output_embeddings()
    changed = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module is not head and not module.weight.requires_grad:
            module.weight.data = module.weight.data.to(torch.bfloat16)
            changed += 1
    return changed


def total_steps(spec: TrainSpec, train_rows: int) -> int:
    """Optimizer steps the run will take, from max steps or epochs."""
    if spec.max_steps:
        return spec.max_steps
    per_epoch = math.ceil(train_rows / (spec.batch_size * spec.gradient_accumulation))
    return max(1, math.ceil(per_epoch * spec.epochs))


def trainer_arguments(spec: TrainSpec, steps: int, work_dir: Path, device: Device) -> dict:
    """The TrainingArguments every objective shares (SFT and DPO), from the spec and the device."""
    return dict(
        output_dir=str(work_dir / "checkpoints"),
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size,
        gradient_accumulation_steps=spec.gradient_accumulation,
        learning_rate=spec.learning_rate,
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps or -1,
        lr_scheduler_type=spec.scheduler,
        warmup_steps=round(spec.warmup_ratio * steps),
        weight_decay=spec.weight_decay,
        max_grad_norm=spec.max_grad_norm,
        optim="adamw_torch_fused" if spec.optimizer == "adamw_torch" else spec.optimizer,  # the same update in one kernel: 5 ms
        # a step for the bundled model's LoRA on a CPU, against 19 ms tensor by tensor
        gradient_checkpointing=spec.gradient_checkpointing,  # TRL turns it on by default; it costs ~30% speed
        seed=spec.seed,
        max_length=spec.max_length,
        bf16=device.bf16,
        use_cpu=not device.cuda,
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not replaced by the running mean
        include_num_input_tokens_seen="non_padding",  # the Jobs tab's tokens/s (DPO and KTO: the prompt with each answer)
        save_strategy="steps",
        save_total_limit=2,  # the best checkpoint is kept besides, when early stopping tracks it
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=device.cuda,
    )


def _trainer(inputs, model, tokenizer, train_rows, validation_rows, work_dir: Path, device: Device, reporter: Reporter):
    from datasets import Dataset
    from trl import SFTConfig

    from studio.train.trainer import StudioTrainer

    spec = inputs.spec
    steps = total_steps(spec, len(train_rows))
    early = bool(spec.early_stopping_patience and validation_rows)
    if spec.early_stopping_patience and not validation_rows:
        log.info("Early stopping is off for this run: it needs validation rows, and this dataset holds none out.")
    # With early stopping every checkpoint is evaluated (the best one is kept), at least ten times a run.
    save_steps = min(spec.save_steps, max(1, steps // 10)) if early else spec.save_steps
    config = SFTConfig(
        **trainer_arguments(spec, steps, work_dir, device),
        save_steps=save_steps,
        eval_strategy="steps" if validation_rows else "no",
        eval_steps=save_steps if early else max(1, steps // 5),
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        train_sampling_strategy="group_by_length",  # evaluation batches too: StudioTrainer groups the training ones
        prediction_loss_only=True,
        dataset_kwargs={"skip_prepare_dataset": True},
        ddp_find_unused_parameters=False,  # multi-GPU jobs: every adapter weight takes part in every step
    )
    trainer = StudioTrainer(
        model=model, args=config, processing_class=tokenizer, data_collator=_collator(model, tokenizer),
        train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
        callbacks=[StudioCallback(reporter, inputs, device)] + ([EarlyStoppingCallback(spec.early_stopping_patience, MIN_IMPROVEMENT)] if early else []),
    )
    trainer.remove_callback(PrinterCallback)  # the reporter logs each step; stdout stays clean for --json
    return trainer


def _collator(model, tokenizer) -> PackingCollator | PaddingCollator:
    """Padding-free batches where the model's attention can keep packed rows apart; padded ones elsewhere."""
    if packs_rows(model):
        use_packed_rows(model)
        return PackingCollator()
    return PaddingCollator(tokenizer.pad_token_id)


class StudioCallback(TrainerCallback):
    """Reports metrics, honours cancel at the next step, and marks checkpoints complete."""

    def __init__(self, reporter: Reporter, inputs: TrainInputs, device: Device) -> None:
        self.reporter, self.inputs, self.device = reporter, inputs, device
        self.cancelled = False
        self.diverged: tuple[int, float] | None = None  # (step, loss) where the loss stopped being a number
        self.last_loss: float | None = None
        self.last_eval: tuple[int, float | None] = (-1, None)
        self._clock = (time.monotonic(), 0)
        self._began = time.monotonic()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.reporter.started(state.max_steps)
        self._flops_per_token = training_flops_per_token(model)
        self._peak_flops = peak_flops(self.device)
        self._began = time.monotonic()
        self._clock = (self._began, state.num_input_tokens_seen)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        values = {k: logs[k] for k in ("loss", "eval_loss", "learning_rate", "grad_norm") if k in logs}
        if "loss" in values and not math.isfinite(values["loss"]):
            self.diverged = (state.global_step, values["loss"])  # train() turns this into a failure that says what to change
            control.should_training_stop = True
            return
        if "loss" in values:
            self.last_loss = values["loss"]
            moment, tokens = time.monotonic(), state.num_input_tokens_seen
            values["tokens_per_second"] = (tokens - self._clock[1]) / max(moment - self._clock[0], 1e-6)
            values["utilisation"] = values["tokens_per_second"] * self._flops_per_token / self._peak_flops
            values["memory_mb"] = memory_mb(self.device)
            values["seconds"] = moment - self._began
            self._clock = (moment, tokens)
        if "eval_loss" in values:
            self.last_eval = (state.global_step, values["eval_loss"])
        if values:
            self.reporter.metrics(state.global_step, {**values, "epoch": state.epoch})

    def on_step_end(self, args, state, control, **kwargs):
        if _all_agree_to_stop(self.reporter.should_stop(), self.device):
            self.cancelled = control.should_training_stop = True

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        (folder / COMPLETE_MARKER).write_text(json.dumps({**_fingerprint(self.inputs), "bf16": self.device.bf16}))


def _all_agree_to_stop(stop: bool, device: Device) -> bool:
    """The processes of a multi-GPU job must stop at the same step, or the others wait forever:
    a stop seen by any one of them is everyone's."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return stop
    flag = torch.tensor([int(stop)], device=device.target)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _fingerprint(inputs: TrainInputs) -> dict:
    return {"spec": json.loads(inputs.spec.to_json()), "dataset_hash": inputs.dataset_hash, "base_model": inputs.base_model}


def latest_checkpoint(work_dir: Path) -> Path | None:
    """The newest checkpoint that was completely written, if any."""
    done = [p.parent for p in (work_dir / "checkpoints").glob(f"checkpoint-*/{COMPLETE_MARKER}")]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.split("-")[1])


def training_device(work_dir: Path) -> Device:
    """The device a job trains on. A resumed job keeps the precision its checkpoints were made in: the
    CPU's bf16 choice is timed, a loaded machine can time it the other way, and the steps redone after
    the checkpoint would then not be the steps the job had made."""
    device, checkpoint = pick_device(), latest_checkpoint(work_dir)
    if device.cuda or checkpoint is None:
        return device
    made_in_bf16 = json.loads((checkpoint / COMPLETE_MARKER).read_text()).get("bf16", device.bf16)
    if made_in_bf16 == device.bf16 or (made_in_bf16 and not cpu_has_bf16_instructions()):
        return device
    log.info("Training in %s, as the checkpoints were made", "bf16" if made_in_bf16 else "float32")
    return Device(device.name, made_in_bf16)


def checkpoint_to_resume(work_dir: Path, inputs: TrainInputs) -> Path | None:
    checkpoint = latest_checkpoint(work_dir)
    if checkpoint is None:
        return None
    saved, current = json.loads((checkpoint / COMPLETE_MARKER).read_text()), _fingerprint(inputs)
    if saved["dataset_hash"] != current["dataset_hash"] or saved["base_model"] != current["base_model"]:
        raise JobError("Cannot resume: the dataset or base model changed since the last checkpoint. Start a new job instead.")
    changed = sorted(k for k in current["spec"] if saved["spec"].get(k) != current["spec"][k])
    if changed:
        raise JobError(f"Cannot resume: these settings changed since the last checkpoint: {', '.join(changed)}. Start a new job instead.")
    log.info("Resuming from %s", checkpoint)
    return checkpoint


def save_adapter(model, tokenizer, inputs: TrainInputs, result: TrainResult, state_dict: dict | None) -> None:
    with staged_folder(result.adapter_dir) as staging:
        model.save_pretrained(str(staging), safe_serialization=True, state_dict=state_dict)
        tokenizer.save_pretrained(str(staging))
        (staging / "spec.json").write_text(json.dumps({**_fingerprint(inputs), "template": inputs.template}, indent=1))
        (staging / "result.json").write_text(json.dumps({**result.summary(), "cancelled": result.cancelled}, indent=1))
        (staging / "README.md").write_text(model_card(inputs, result))


def _loadable(base_model: str) -> str:
    """What from_pretrained takes for the base outside the studio: a hub id, or a placeholder path for a local folder."""
    name = public_name(base_model)
    return name if HUB_ID.match(name) else f"PATH/TO/{name}"


def model_card(inputs: TrainInputs, result: TrainResult) -> str:
    spec = json.loads(inputs.spec.to_json())
    def number(value):
        return "n/a" if value is None else f"{value:.4f}"
    return render_card(
        "model_card", name=inputs.name, base_model=public_name(inputs.base_model), base_model_load=_loadable(inputs.base_model), method=inputs.spec.method,
        method_title=inputs.spec.method.upper(), dataset_hash=inputs.dataset_hash[:16], train_rows=result.train_rows,
        validation_rows=result.validation_rows, template=inputs.template, steps=result.steps,
        final_loss=number(result.final_loss), eval_loss=number(result.eval_loss),
        status="stopped early by the user (cancelled); usable" if result.cancelled else "complete",
        lineage_line=f"- Lineage: {inputs.lineage}\n" if inputs.lineage else "",
        settings_rows=table_rows(list(spec.items())),
    )
