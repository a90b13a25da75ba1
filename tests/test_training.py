"""Real training on the bundled model: LoRA and QLoRA adapters that load, moved, and answer differently."""

import json

import pytest
import torch
from conftest import greedy_answer, quick_spec, save_codewords, train_now
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from studio.device import cpu_has_bf16_instructions, pick_device
from studio.train.recipe import COMPLETE_MARKER, latest_checkpoint, training_device


def check_adapter(adapter, bundled_dir, tokenizer):
    base = AutoModelForCausalLM.from_pretrained(bundled_dir)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    base_answer = greedy_answer(base, tokenizer, "What is the codeword for boats?")
    model = PeftModel.from_pretrained(base, adapter.path)
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # LoRA B starts at zero: it moved
    after = {k.replace(".base_layer", ""): v for k, v in model.get_base_model().state_dict().items() if "lora_" not in k}
    unchanged = [torch.equal(before[k], v) for k, v in after.items() if k in before]
    assert unchanged and all(unchanged)  # the base weights did not move
    answer = greedy_answer(model, tokenizer, "What is the codeword for boats?")
    assert answer != base_answer and "ZEPHYR" in answer


def test_lora_adapter_loads_moved_and_answers_differently(trained, bundled_dir, tokenizer):
    settings, store, job, adapter = trained
    assert job.state == "succeeded" and adapter.status == "complete" and adapter.method == "lora"
    assert sorted(p.name for p in adapter.path.iterdir()) == [
        "README.md", "adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", "result.json",
        "spec.json", "tokenizer.json", "tokenizer_config.json"]
    check_adapter(adapter, bundled_dir, tokenizer)
    assert {t.dtype for t in load_file(adapter.path / "adapter_model.safetensors").values()} == {torch.float32}  # bf16 base or not
    card = (adapter.path / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in card and "for **HuggingFaceTB/SmolLM2-135M-Instruct**" in card
    assert 'from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")' in card and "bundled" not in card
    assert adapter.dataset_hash[:16] in card and "| rank | 16 |" in card


def test_qlora_adapter_loads_moved_and_answers_differently(trained_qlora, bundled_dir, tokenizer):
    assert trained_qlora.method == "qlora"
    check_adapter(trained_qlora, bundled_dir, tokenizer)


def test_metrics_reach_the_store(trained):
    settings, store, job, adapter = trained
    metrics = store.metrics(job.id)
    assert [m["step"] for m in metrics] == list(range(1, 9))
    assert all(m["loss"] > 0 and m["tokens_per_second"] > 0 and m["learning_rate"] > 0 for m in metrics)
    assert all(0 < m["utilisation"] < 2 for m in metrics)  # an estimate against a measured peak
    assert adapter.summary["tokens"] <= adapter.summary["computed_tokens"]
    assert metrics[-1]["eval_loss"] is not None and adapter.summary["eval_loss"] == pytest.approx(metrics[-1]["eval_loss"])
    assert metrics[-1]["loss"] < metrics[0]["loss"]


def test_only_complete_checkpoints_count(trained, tmp_path):
    settings, store, job, adapter = trained
    work = settings.home / "jobs" / str(job.id)
    assert latest_checkpoint(work).name == "checkpoint-8"
    half_written = work / "checkpoints" / "checkpoint-12"
    half_written.mkdir()
    try:
        assert latest_checkpoint(work).name == "checkpoint-8"
    finally:
        half_written.rmdir()


def test_resume_with_changed_settings_is_explained(settings, store, codeword_file, tokenizer):
    from jobs.run import run_job

    dataset = save_codewords(settings, store, codeword_file, tokenizer)
    job = train_now(settings, store, dataset, quick_spec(max_steps=4), name="first")
    store.update_job(job.id, spec=quick_spec(max_steps=4, rank=8).to_json(), state="queued")
    assert run_job(settings, store, job.id) is None
    assert "these settings changed since the last checkpoint: rank. Start a new job instead." in store.job(job.id).error


def test_answers_cut_away_entirely_are_explained(settings, store, codeword_file, tokenizer):
    from jobs.run import run_job

    dataset = save_codewords(settings, store, codeword_file, tokenizer)
    job = store.add_job(kind="train", name="short", dataset_id=dataset.id, base_model="bundled",
                        spec=quick_spec(max_length=16).to_json())
    assert run_job(settings, store, job.id) is None
    assert "every answer is cut away at this maximum length" in store.job(job.id).error


def test_checkpoint_records_what_made_it(trained):
    settings, store, job, adapter = trained
    marker = json.loads((latest_checkpoint(settings.home / "jobs" / str(job.id)) / COMPLETE_MARKER).read_text())
    assert marker["dataset_hash"] == adapter.dataset_hash and marker["spec"]["rank"] == 16
    assert marker["bf16"] == pick_device().bf16
    assert load_file(adapter.path / "adapter_model.safetensors")


def test_a_resumed_job_keeps_the_precision_its_checkpoints_were_made_in(tmp_path):
    """The CPU's bf16 choice is timed: a job resumed while the machine is busy must not switch precision."""
    checkpoint = tmp_path / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    assert training_device(tmp_path) == pick_device()  # no marker yet: nothing to keep
    for made_in_bf16 in (False, True):
        (checkpoint / COMPLETE_MARKER).write_text(json.dumps({"bf16": made_in_bf16}))
        # bf16 is kept only where the CPU has bf16 instructions; float32 is kept everywhere
        assert training_device(tmp_path).bf16 == (made_in_bf16 and cpu_has_bf16_instructions())


def test_batches_are_padded_to_their_longest_row_only():
    from studio.train.speed.batching import PaddingCollator

    collate = PaddingCollator(pad_token_id=0)
    batch = collate([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}])
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert (collate.real_tokens, collate.computed_tokens) == (4, 6)
