"""DPO and KTO on the bundled model: a preference dataset continues a trained adapter, reports its reward
margin and preference accuracy, and registers the new adapter with its parent; the wrong kind of dataset
is refused before a job is queued; runaway margins are told in the Jobs tab."""

import json

import pytest
from conftest import CODEWORD_RECORDS, quick_spec

from jobs.run import run_job
from jobs.status import job_status
from studio.data.preferences import inspect_preferences, save_preferences
from studio.errors import DataError, SpecError
from studio.train.health import preference_warnings
from studio.train.spec import check_objective
from studio.ui.jobs_tab import charts_html


def codeword_pairs(settings, store, tokenizer, tmp_path, count: int = 8):
    """Pairs preferring each codeword answer over a wrong one, saved as a preference dataset with nothing held out."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": r["instruction"], "chosen": r["output"],
                                         "rejected": r["output"].split(" is ")[0] + " is BORN."}) + "\n" for r in CODEWORD_RECORDS[:count]))
    report = inspect_preferences(pairs, tokenizer, max_bytes=2**20)
    return save_preferences(store, settings.datasets_dir, report, name="codeword pairs", validation_fraction=0)


def test_dpo_continues_an_adapter_on_pairs_and_reports_margin_and_accuracy(stocked_home, settings, tokenizer, tmp_path):
    store = stocked_home
    adapter = store.adapters()[-1]  # the `trained` LoRA adapter
    dataset = codeword_pairs(settings, store, tokenizer, tmp_path)
    spec = quick_spec(objective="dpo", start_adapter_id=adapter.id, max_steps=2, save_steps=2, learning_rate=5e-3)
    with pytest.raises(SpecError, match="holds preference pairs: train it with the 'dpo' or 'kto' objective"):
        check_objective(dataset, quick_spec())

    job = store.add_job(kind="train", name="codewords-dpo", dataset_id=dataset.id, base_model="bundled", spec=spec.to_json())
    assert run_job(settings, store, job.id) is not None, store.job(job.id).error
    trained = store.adapter(store.job(job.id).adapter_id)
    assert trained.parent_id == adapter.id and trained.spec["objective"] == "dpo"
    assert (trained.path / "adapter_model.safetensors").is_file() and not (trained.path / "ref").exists()  # the reference copy is not kept
    steps = store.metrics(job.id)
    assert [m["step"] for m in steps] == [1, 2] and all(m["reward_accuracy"] is not None for m in steps)
    assert steps[0]["reward_margin"] == 0 and steps[1]["reward_margin"] > 0  # the first step scores the start against itself
    assert trained.summary["tokens"] > 0 and all(m["tokens_per_second"] > 0 for m in steps)  # prompts with both answers, counted


def test_kto_continues_an_adapter_on_the_pairs_taken_one_answer_at_a_time(stocked_home, settings, tokenizer, tmp_path):
    store = stocked_home
    adapter = store.adapters()[-1]
    dataset = codeword_pairs(settings, store, tokenizer, tmp_path)
    spec = quick_spec(objective="kto", start_adapter_id=adapter.id, max_steps=2, save_steps=2, batch_size=2, learning_rate=5e-3)
    job = store.add_job(kind="train", name="codewords-kto", dataset_id=dataset.id, base_model="bundled", spec=spec.to_json())
    assert run_job(settings, store, job.id) is not None, store.job(job.id).error
    trained = store.adapter(store.job(job.id).adapter_id)
    assert trained.parent_id == adapter.id and trained.spec["objective"] == "kto" and trained.summary["train_rows"] == 8
    assert (trained.path / "adapter_model.safetensors").is_file() and not (trained.path / "ref").exists()
    steps = store.metrics(job.id)
    assert [m["step"] for m in steps] == [1, 2] and all(m["reward_accuracy"] is None for m in steps)  # KTO logs no accuracy
    assert steps[0]["reward_margin"] == 0 and steps[1]["reward_margin"] > 0  # each batch holds both answers of its pairs
    assert job_status(store, job.id).preference_curve[-1] == {"step": 2, "value": steps[1]["reward_margin"], "series": "reward margin"}


def test_the_wrong_kind_of_dataset_is_refused_before_queueing_and_empty_preference_files_explained(stocked_home, settings, tokenizer, tmp_path):
    from jobs.control import submit_training

    instructions = stocked_home.datasets()[-1]
    with pytest.raises(SpecError, match="holds instructions and answers, not preference pairs, so DPO cannot train on it"):
        check_objective(instructions, quick_spec(objective="dpo"))
    jobs_before = len(stocked_home.jobs())
    with pytest.raises(SpecError, match="so KTO cannot train on it. Save a preference file"):
        submit_training(stocked_home, dataset_id=instructions.id, base_model="bundled", spec=quick_spec(objective="kto"), name="")
    pairs = codeword_pairs(settings, stocked_home, tokenizer, tmp_path)
    with pytest.raises(SpecError, match="holds preference pairs"):
        submit_training(stocked_home, dataset_id=pairs.id, base_model="bundled", spec=quick_spec(), name="")
    assert len(stocked_home.jobs()) == jobs_before  # nothing was queued
    same = tmp_path / "same.jsonl"
    same.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "Hello."}) + "\n")
    with pytest.raises(DataError, match="No pairs are left to save"):
        save_preferences(stocked_home, settings.datasets_dir, inspect_preferences(same, tokenizer, max_bytes=2**20), name="same")


def test_health_warnings_say_when_chosen_answers_fall_or_the_margin_runs_away_and_reach_the_jobs_tab(store):
    steady = [{"chosen_logp": -10.0, "reward_margin": 0.0}, {"chosen_logp": -11.0, "reward_margin": 1.5}]
    assert preference_warnings(steady) == []
    falling = [{"chosen_logp": -9.4, "reward_margin": 0.0}, {"chosen_logp": -57.9, "reward_margin": 2.9}]  # seen at lr 5e-3 on 8 pairs
    assert [w.message for w in preference_warnings(falling)] == [
        "The chosen answers became much less likely (-9.4 → -57.9): the adapter is pushing the rejected answers down by "
        "unlearning the chosen ones too. Lower the learning rate or raise beta."]
    job = store.add_job(kind="train", name="runaway", dataset_id=None, base_model="bundled", spec=json.dumps({"objective": "dpo"}))
    for step, (margin, accuracy) in enumerate([(0.0, 0.0), (4.0, 0.75), (14.0, 1.0)], start=1):
        store.add_metrics(job.id, step, {"loss": 0.5, "reward_margin": margin, "reward_accuracy": accuracy, "chosen_logp": -10.0})
    status = job_status(store, job.id)
    assert [w.kind for w in status.warnings] == ["margin_runaway"]
    assert "The reward margin ran away to 14.0" in status.warnings[0].message
    assert {p["series"] for p in status.preference_curve} == {"reward margin", "preference accuracy"}
    chart = charts_html(status)  # beside the loss chart, its axis named
    assert "id='job-preference-chart'" in chart and "preference accuracy</span>" in chart and ">margin · accuracy</text>" in chart
