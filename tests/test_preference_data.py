"""Preference files through the Data tab's functions and the CLI: recognised by their columns, checked with
row numbers, previewed side by side with token counts, saved as a "preference" dataset that trains with a
preference objective only, with a plan of its own."""

import json

from conftest import FIXTURES, run_cli

from studio.data.instructions import DataReport, preview_rows
from studio.data.preferences import PreferenceReport, inspect_data_file, save_report
from studio.train.plan import DataStats, dataset_stats, make_plan
from studio.ui import html

PAIRS = FIXTURES / "pairs.jsonl"


def test_a_preference_file_is_recognised_checked_and_previewed_side_by_side(tokenizer):
    report = inspect_data_file(PAIRS, tokenizer, max_bytes=2**20)
    assert isinstance(report, PreferenceReport) and report.template == "chat"
    assert [(i.kind, i.rows) for i in report.issues] == [("missing_side", [2]), ("identical", [3]), ("duplicate", [5])]
    assert report.kept_indices() == [0, 3, 4, 5] and report.kept_indices({"duplicate"}) == [0, 3, 5]
    assert isinstance(inspect_data_file(FIXTURES / "alpaca.jsonl", tokenizer, max_bytes=2**20), DataReport)

    shown = report.side_by_side(preview_rows(report, set(), show="missing_side"))
    assert shown == [{"row": 2}]  # a pair that cannot be used has its number alone
    pair = report.side_by_side([3])[0]
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == ("What is the capital of France?", "Paris.",
                                                                  "London, the capital of France since 1066.")
    assert pair["chosen_tokens"] == len(tokenizer("Paris.", add_special_tokens=False)["input_ids"]) < pair["rejected_tokens"]
    assert report.token_counts[3] == pair["prompt_tokens"] + pair["rejected_tokens"]  # the prompt with the longer answer

    preview = html.pairs_preview(report, {"duplicate"}, [3, 4])
    assert preview.count("class=\"studio-pair\"") == 2 and "Row 5" in preview and "left out" in preview
    assert f"<b>Chosen</b> · {pair['chosen_tokens']} tokens" in preview and "<b>Rejected</b>" in preview
    assert "<b>3</b> of 6 pairs will be used" in html.pairs_summary(report, {"duplicate"})
    assert "A prompt, chosen or rejected answer is missing or empty</b> — 1 row (row 2)" in html.problems(report)


def test_saved_pairs_are_a_preference_dataset_with_a_plan_of_their_own(tokenizer, settings, store, bundled_dir):
    report = inspect_data_file(PAIRS, tokenizer, max_bytes=2**20)
    dataset = save_report(store, settings.datasets_dir, report, name="manners", drop={"duplicate"}, validation_fraction=0)
    assert (dataset.shape, dataset.rows, dataset.template) == ("preference", 3, "chat")
    stats = dataset_stats(dataset, bundled_dir)
    assert stats.pairs and (stats.rows, stats.train_rows) == (3, 3) and stats.mean_tokens > 10

    plan = make_plan(DataStats(rows=40, train_rows=35, validation_rows=5, mean_tokens=50, pairs=True), "Balanced", {}, "cpu", bundled_dir, 100.0)
    assert (plan.spec.objective, plan.spec.batch_size, plan.spec.epochs, plan.steps, plan.spec.early_stopping_patience) == ("dpo", 4, 3.0, 27, 0)
    assert plan.spec.learning_rate == 1e-4 and plan.spec.beta == 0.1
    text = plan.describe()
    assert "**Balanced**: DPO on 40 pairs (35 to train on, 5 held out to check on), each seen 3 times: **27 steps** of 4" in text
    assert "beta 0.1 (how closely the adapter stays to where it started)" in text and "Stops early" not in text
    kto = make_plan(stats, "Auto", {"objective": "kto"}, "cpu", bundled_dir, 100.0)
    assert kto.spec.objective == "kto" and "KTO on 3 pairs" in kto.describe() and "Kept as you set them" not in kto.describe()


def test_the_cli_trains_a_preference_file_with_dpo_and_refuses_instruction_tuning_on_it(studio_env):
    refused = run_cli(studio_env, "train", "--data", str(PAIRS), "--objective", "sft", "--enqueue")
    assert refused.returncode == 2 and "holds preference pairs: train it with the 'dpo' or 'kto' objective" in refused.stderr
    queued = run_cli(studio_env, "train", "--data", str(PAIRS), "--enqueue", "--json")
    assert queued.returncode == 0, queued.stderr
    assert "DPO on 4 pairs" in queued.stderr  # the plan, said before queueing
    job = json.loads(run_cli(studio_env, "jobs", "--json").stdout)[0]
    assert job["state"] == "queued" and job["name"] == "pairs-lora"
