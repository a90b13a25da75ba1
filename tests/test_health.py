"""Training health and quality guards: warnings from a run's numbers, early stopping that keeps the
best checkpoint, DoRA adapters, and a diverging run that is flagged with what to change."""

import json

import pytest
from conftest import CODEWORD_RECORDS, quick_spec, run_artifact_now, save_codewords, train_now
from safetensors.torch import load_file

from jobs.status import job_status
from studio.data.instructions import inspect_file, save_dataset, split_indices
from studio.train.health import diverged_message, evaluation_warnings, training_warnings, zero_lora_layers


def steps(losses, grad_norms=None, eval_losses=None):
    grad_norms = grad_norms or [1.0] * len(losses)
    eval_losses = eval_losses or [None] * len(losses)
    return [{"step": i + 1, "loss": loss, "grad_norm": norm, "eval_loss": ev} for i, (loss, norm, ev) in enumerate(zip(losses, grad_norms, eval_losses))]


def kinds(warnings):
    return [w.kind for w in warnings]


def test_a_calm_run_has_no_warnings():
    assert training_warnings(steps([2.0, 1.8, 1.5, 1.3, 1.2, 1.1, 1.0], eval_losses=[None, 1.9, None, 1.6, None, 1.4, 1.3])) == []


def test_a_loss_that_jumps_is_flagged_with_the_learning_rate_to_change():
    warnings = training_warnings(steps([2.0, 1.5, 1.2, 1.0, 3.5, 6.0]))
    assert kinds(warnings) == ["loss_rising"] and "step 5" in warnings[0].message and "Lower the learning rate" in warnings[0].message


def test_a_gradient_spike_is_flagged_with_its_step():
    warnings = training_warnings(steps([2.0, 1.9, 1.8, 1.7, 1.6, 1.5, 1.5], grad_norms=[1.0, 1.2, 0.9, 1.1, 1.0, 1.0, 25.0]))
    assert kinds(warnings) == ["grad_spike"] and "step 7" in warnings[0].message


def test_validation_loss_rising_while_training_loss_falls_is_over_fitting():
    warnings = training_warnings(steps([2.0, 1.5, 1.1, 0.8, 0.5, 0.3], eval_losses=[None, 1.6, 1.4, 1.5, 1.7, 1.9]))
    assert kinds(warnings) == ["over_fitting"] and "early stopping" in warnings[0].message


def test_zero_layers_and_answers_that_never_stop_are_flagged_after_training(trained, bundled_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    fresh = get_peft_model(AutoModelForCausalLM.from_pretrained(bundled_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert len(zero_lora_layers(fresh)) == 2 * fresh.config.num_hidden_layers  # LoRA B starts at zero
    assert trained[3].summary["zero_layers"] == 0  # a trained adapter's layers all moved
    assert kinds(training_warnings([], {"zero_layers": 3})) == ["zero_layers"]

    class Evaluation:
        rows, adapter_unstopped = 5, 3
    assert kinds(evaluation_warnings(Evaluation)) == ["never_stops"] and "end-of-sequence" in evaluation_warnings(Evaluation)[0].message
    Evaluation.adapter_unstopped = 2
    assert evaluation_warnings(Evaluation) == []


def save_records(settings, store, tokenizer, tmp_path, records, name):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return save_dataset(store, settings.datasets_dir, inspect_file(path, tokenizer, max_bytes=2**20), name=name, validation_fraction=0.25)


def test_early_stopping_ends_a_run_whose_validation_loss_rises_and_keeps_the_best_checkpoint(settings, store, tokenizer, tmp_path):
    # The held-out rows give other codewords than the training rows teach, so the better the
    # adapter learns its training rows, the worse it does on them.
    _, held_out = split_indices(len(CODEWORD_RECORDS), 0.25, 42)
    records = [dict(r, output=r["output"].replace("ZEPHYR", "QUARTZ")) if i in held_out else r for i, r in enumerate(CODEWORD_RECORDS)]
    dataset = save_records(settings, store, tokenizer, tmp_path, records, "crafted")
    job = train_now(settings, store, dataset, quick_spec(max_steps=20, save_steps=1, early_stopping_patience=2), name="stops-early")
    adapter = store.adapter(job.adapter_id)
    evaluated = {m["step"]: m["eval_loss"] for m in store.metrics(job.id) if m["eval_loss"] is not None}
    best = min(evaluated, key=evaluated.get)
    summary = adapter.summary
    assert summary["stopped_early"] and summary["steps"] == best + 2 < 20
    assert summary["best_step"] == best and summary["eval_loss"] == pytest.approx(evaluated[best])
    kept = load_file(adapter.path / "adapter_model.safetensors")
    best_weights = load_file(settings.home / "jobs" / str(job.id) / "checkpoints" / f"checkpoint-{best}" / "adapter_model.safetensors")
    assert kept.keys() == best_weights.keys() and all((kept[k] == best_weights[k]).all() for k in kept)
    note = job_status(store, job.id).stop_note
    assert f"Stopped early at step {best + 2}" in note and f"from step {best}" in note


def test_a_dora_adapter_trains_and_merges_to_the_same_answers(settings, store, codeword_file, tokenizer):
    dataset = save_codewords(settings, store, codeword_file, tokenizer)
    job = train_now(settings, store, dataset, quick_spec(method="dora", max_steps=2, target_modules="attention"), name="codewords-dora")
    adapter = store.adapter(job.adapter_id)
    assert adapter.method == "dora" and json.loads((adapter.path / "adapter_config.json").read_text())["use_dora"] is True
    merge_job = run_artifact_now(settings, store, "merge", {"adapter_id": adapter.id, "dtype": "float32"})
    merge = store.merges(adapter.id)[0]
    assert merge.job_id == merge_job.id and merge.verified_prompts == 3  # merged answers equal the unmerged adapter's


def test_a_learning_rate_far_too_high_is_flagged_while_the_job_runs(settings, store, codeword_file, tokenizer):
    # The highest learning rate allowed, with a strong adapter and no gradient clipping: the loss
    # jumps from about 1.5 to over 10 within two steps.
    dataset = save_codewords(settings, store, codeword_file, tokenizer, validation_fraction=0.0)
    job = train_now(settings, store, dataset, quick_spec(max_steps=4, learning_rate=1e-2, rank=1, lora_alpha=1024, max_grad_norm=0.0), name="too-fast")
    warnings = job_status(store, job.id).warnings
    assert "loss_rising" in kinds(warnings) and "Lower the learning rate" in warnings[0].message


def test_a_loss_that_stops_being_a_number_stops_training_at_once():
    from transformers import TrainerControl, TrainerState

    from studio.train.recipe import StudioCallback

    callback, control = StudioCallback(reporter=None, inputs=None, device=None), TrainerControl()
    callback.on_log(None, TrainerState(global_step=3), control, logs={"loss": float("nan"), "grad_norm": float("nan")})
    assert control.should_training_stop and callback.diverged[0] == 3
    message = diverged_message(*callback.diverged, 0.01)
    assert "step 3" in message and "no longer a number" in message and "for example to 0.001" in message
