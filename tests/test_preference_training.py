"""DPO on the bundled model: a preference dataset continues a trained adapter, reports its reward
margin and preference accuracy, and registers the new adapter with its parent; bad input explained."""

import json

import pytest
from conftest import CODEWORD_RECORDS, quick_spec

from jobs.run import check_objective, run_job
from studio.errors import DataError, SpecError
from studio.preference_training import preference_warnings
from studio.preferences import inspect_preferences, save_preferences


def test_dpo_continues_an_adapter_on_pairs_and_reports_margin_and_accuracy(stocked_home, settings, tokenizer, tmp_path):
    store = stocked_home
    adapter = store.adapters()[-1]  # the `trained` LoRA adapter
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": r["instruction"], "chosen": r["output"],
                                         "rejected": r["output"].split(" is ")[0] + " is BORN."}) + "\n" for r in CODEWORD_RECORDS[:8]))
    report = inspect_preferences(pairs, tokenizer, max_bytes=2**20)
    dataset = save_preferences(store, settings.datasets_dir, report, name="codeword pairs", validation_fraction=0)
    spec = quick_spec(objective="dpo", start_adapter_id=adapter.id, max_steps=2, save_steps=2, learning_rate=5e-3)
    with pytest.raises(SpecError, match="holds preference pairs: train it with the 'dpo' objective"):
        check_objective(dataset, quick_spec())

    job = store.add_job(kind="train", name="codewords-dpo", dataset_id=dataset.id, base_model="bundled", spec=spec.to_json())
    assert run_job(settings, store, job.id) is not None, store.job(job.id).error
    trained = store.adapter(store.job(job.id).adapter_id)
    assert trained.parent_id == adapter.id and trained.spec["objective"] == "dpo"
    assert (trained.path / "adapter_model.safetensors").is_file() and not (trained.path / "ref").exists()  # the reference copy is not kept
    steps = store.metrics(job.id)
    assert [m["step"] for m in steps] == [1, 2] and all(m["reward_accuracy"] is not None for m in steps)
    assert steps[0]["reward_margin"] == 0 and steps[1]["reward_margin"] > 0  # the first step scores the start against itself


def test_dpo_refuses_instruction_data_and_preference_files_refuse_when_nothing_is_left(stocked_home, settings, tokenizer, tmp_path):
    instructions = stocked_home.datasets()[-1]
    with pytest.raises(SpecError, match="holds instructions and answers, not preference pairs, so DPO cannot train on it"):
        check_objective(instructions, quick_spec(objective="dpo"))
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "Hello."}) + "\n")
    with pytest.raises(DataError, match="No pairs are left to save"):
        save_preferences(stocked_home, settings.datasets_dir, inspect_preferences(same, tokenizer, max_bytes=2**20), name="same")


def test_health_warnings_say_when_chosen_answers_fall_or_the_margin_runs_away():
    steady = [{"chosen_logp": -10.0, "reward_margin": 0.0}, {"chosen_logp": -11.0, "reward_margin": 1.5}]
    assert preference_warnings(steady) == []
    falling = [{"chosen_logp": -9.4, "reward_margin": 0.0}, {"chosen_logp": -57.9, "reward_margin": 2.9}]  # seen at lr 5e-3 on 8 pairs
    assert preference_warnings(falling) == [
        "The chosen answers became much less likely (-9.4 → -57.9): the adapter is pushing the rejected answers down by "
        "unlearning the chosen ones too. Lower the learning rate or raise beta."]
    runaway = [{"chosen_logp": -10.0, "reward_margin": 0.0}, {"chosen_logp": -12.0, "reward_margin": 14.0}]
    assert "The reward margin ran away to 14.0" in preference_warnings(runaway)[0]
