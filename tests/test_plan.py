"""The training plan from the data: sensible steps for small and large datasets, said in words; bad settings all named."""

import pytest

from studio.errors import SpecError
from studio.train.plan import DataStats, make_plan
from studio.train.spec import TrainSpec

SMALL = DataStats(rows=70, train_rows=65, validation_rows=5, mean_tokens=60)
LARGE = DataStats(rows=20_000, train_rows=19_000, validation_rows=1_000, mean_tokens=60)
MEASURED = 100.0  # real tokens per second, as a finished run on this machine measured them


def test_a_small_dataset_is_seen_many_times_and_a_large_one_once(bundled_dir):
    small = make_plan(SMALL, "Balanced", {}, "cpu", bundled_dir, MEASURED)
    assert (small.spec.batch_size, small.spec.epochs, small.steps) == (8, 17.0, 153)  # 9 steps a pass, 17 passes
    assert small.spec.early_stopping_patience == 3
    # 17 passes would learn the rows word for word: dropout and a doubled rate make it learn what they say
    assert (small.spec.learning_rate, small.spec.lora_dropout) == (1e-3, 0.1) and "twice the usual" in small.describe()
    large = make_plan(LARGE, "Balanced", {}, "cpu", bundled_dir, MEASURED)
    assert (large.spec.learning_rate, large.spec.lora_dropout) == (5e-4, 0.0)
    assert (large.spec.epochs, large.steps) == (1.0, 2375)  # one pass: 19,000 rows are plenty
    for stats in (SMALL, LARGE):
        steps = [make_plan(stats, p, {}, "cpu", bundled_dir, MEASURED).steps for p in ("Quick test", "Balanced", "Thorough")]
        assert steps[0] < steps[1] < steps[2] or stats is LARGE and steps[0] < steps[1] <= steps[2]


def test_auto_trains_until_it_stops_improving_within_the_time_budget_and_says_so(bundled_dir):
    auto = make_plan(LARGE, "Auto", {}, "cpu", bundled_dir, MEASURED)
    assert auto.until_stopped and auto.capped and auto.spec.max_steps == auto.steps < 200  # 15 min at 100 tokens/s
    assert auto.spec.early_stopping_patience == 4 and auto.spec.save_steps == auto.steps // 4  # 1000 rows held out: checks cost
    text = auto.describe()
    assert "**Auto**: 20000 examples (19000 to train on, 1000 held out to check on). Trains until the held-out loss stops improving" in text
    assert f"**at most {auto.steps} steps** of 8" in text and "at most **15 min** on this machine" in text
    assert "It stops after 4 checks in a row without a better held-out loss" in text and "The ceiling is Auto's time budget" in text
    # A small dataset on a fast machine: up to 20 passes (the ceiling), checked ten times in Balanced's 153 steps.
    small = make_plan(SMALL, "Auto", {}, "cuda", bundled_dir, 8000.0)
    assert (small.steps, small.spec.save_steps, small.capped) == (180, 15, False)
    assert "checked every 15 steps, and keeps the best checkpoint: **at most 180 steps** of 8 (each example seen up to 20 times)" in small.describe()
    # What a user sets wins: a length of their own is trained as Balanced would, a patience of their own is kept.
    assert not make_plan(SMALL, "Auto", {"max_steps": 40}, "cuda", bundled_dir, 8000.0).until_stopped
    assert make_plan(SMALL, "Auto", {"early_stopping_patience": 2}, "cuda", bundled_dir, 8000.0).spec.early_stopping_patience == 2
    # A slower machine gets what fits the budget, and never fewer than 100 steps (said in minutes).
    slow, slowest = (make_plan(SMALL, "Auto", {}, "cpu", bundled_dir, speed) for speed in (60.0, 10.0))
    assert 100 < slow.steps < 153 and slow.capped and round(slow.minutes) == 15
    assert slowest.steps == 100 and slowest.minutes > 15


def test_what_the_user_set_is_kept_and_said(bundled_dir):
    plan = make_plan(SMALL, "Thorough", {"rank": 8, "max_steps": 40}, "cpu", bundled_dir, MEASURED)
    assert (plan.spec.rank, plan.spec.lora_alpha, plan.spec.max_steps, plan.steps) == (8, 16, 40, 40)
    assert "Kept as you set them: rank 8, max steps 40." in plan.describe()
    rslora = make_plan(SMALL, "Balanced", {"method": "rslora"}, "cpu", bundled_dir, MEASURED)
    assert rslora.spec.learning_rate < plan.spec.learning_rate and "lower for rsLoRA" in rslora.describe()


def test_a_dataset_with_nothing_held_out_still_gets_a_plan_that_says_how_it_is_judged(bundled_dir):
    plan = make_plan(DataStats(rows=8, train_rows=8, validation_rows=0, mean_tokens=30), "Auto", {}, "cpu", bundled_dir, MEASURED)
    assert plan.spec.early_stopping_patience == 0 and plan.spec.batch_size == 2 and plan.steps == 80  # 4 steps a pass, 20 passes
    assert "none held out (too few rows)" in plan.describe() and "judged on training rows" in plan.describe()


def test_every_bad_setting_is_named_at_once_and_fractions_of_whole_numbers_are_refused():
    with pytest.raises(SpecError) as refused:
        TrainSpec.from_dict({"batch_size": 0, "learning_rate": -1})
    assert "Batch size must be between 1 and 512, not 0." in str(refused.value)
    assert "Learning rate must be between 1e-07 and 0.01, not -1.0." in str(refused.value)
    with pytest.raises(SpecError, match="Max steps must be a whole number, not 2.5."):
        TrainSpec.from_dict({"max_steps": 2.5})
    with pytest.raises(SpecError, match="There is no preset 'Fast'"):
        make_plan(SMALL, "Fast", {}, "cpu", None)
