"""The verdict on real, short runs: one that learned, one that ran a single step, one judged on a
test file on which it answers worse than the base (with a training row in it, flagged)."""

import json

import pytest
from conftest import GENERAL_REQUESTS, quick_spec, train_now

from studio.data.held_out import training_records
from studio.data.instructions import inspect_file, save_dataset
from studio.evaluate.measure import evaluate_adapter, save_test_set
from studio.evaluate.verdict import LEARNED, NOT_LEARNED, WORSE, train_longer_spec, verdict_for
from studio.settings import load_settings
from studio.store import Store

# Whatever is asked, answer "ZEPHYR.": a fixed format the base model never gives, learned in a few steps.
QUESTIONS = [f"Which {thing} should I {verb}?" for thing in ("book", "road", "colour", "song", "tool")
             for verb in ("pick", "try", "avoid", "buy")]
ROWS = [{"instruction": q, "input": "", "output": "ZEPHYR."} for q in QUESTIONS]
# Sentences the base model repeats well and an adapter that always says "ZEPHYR." does not.
REPEAT = [{"instruction": f"Repeat this sentence exactly: {s}", "input": "", "output": s} for s in (
    "The old lighthouse keeper painted the front door green every spring morning.",
    "Seven small boats sailed slowly across the quiet harbour before the storm arrived.",
    "My grandmother keeps her best recipes in a blue tin on the kitchen shelf.")]


@pytest.fixture(scope="module")
def zephyr_data(tmp_path_factory, models_dir, tokenizer):
    """A studio holding the ZEPHYR data, a quarter of it held out."""
    home = tmp_path_factory.mktemp("verdict-home")
    settings = load_settings({"STUDIO_HOME": str(home), "STUDIO_MODELS_DIR": str(models_dir), **GENERAL_REQUESTS})
    store = Store(settings.db_path)
    path = home / "zephyr.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    dataset = save_dataset(store, settings.datasets_dir, inspect_file(path, tokenizer, max_bytes=2**20), name="zephyr",
                           validation_fraction=0.25)
    return settings, store, dataset


@pytest.fixture(scope="module")
def zephyr(zephyr_data):
    """An adapter trained on the ZEPHYR data (8 steps) and evaluated on its validation rows."""
    settings, store, dataset = zephyr_data
    job = train_now(settings, store, dataset, quick_spec(max_steps=8, max_length=64, save_steps=8), name="zephyr")
    evaluate_adapter(store, settings.models_dir, job.adapter_id, general_requests_asked=settings.general_requests)
    return settings, store, dataset, store.adapter(job.adapter_id)


def test_an_adapter_that_learned_is_told_so_with_its_numbers(zephyr):
    settings, store, dataset, adapter = zephyr
    verdict = verdict_for(store, adapter.id)
    assert verdict.kind == LEARNED and verdict.next_step is None
    assert verdict.sentence == "Learned: it answers 100% of 5 held-out examples exactly; the base model 0%."
    assert verdict.judged_on == "Judged on 5 validation rows it never trained on."


def test_a_single_step_cannot_have_learned_and_the_next_step_is_to_train_longer(zephyr_data):
    settings, store, dataset = zephyr_data
    job = train_now(settings, store, dataset, quick_spec(max_steps=1, max_length=64, learning_rate=1e-4), name="one step")
    evaluate_adapter(store, settings.models_dir, job.adapter_id, general_requests_asked=settings.general_requests)
    adapter = store.adapter(job.adapter_id)
    verdict = verdict_for(store, adapter.id)
    assert verdict.kind == NOT_LEARNED and verdict.sentence.startswith("Did not learn: it answers 0% of 5 held-out examples exactly")
    assert "It trained only 1 steps, too few to learn a task. Next: *Train longer* continues from this adapter" in verdict.next_step
    longer = train_longer_spec(adapter)
    assert (longer.start_adapter_id, longer.max_steps, longer.learning_rate) == (adapter.id, 1, 1e-4)


def test_an_adapter_worse_than_the_base_on_a_test_file_is_told_so_and_overlap_is_flagged(zephyr, tokenizer):
    settings, store, dataset, adapter = zephyr
    path = settings.home / "repeat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in REPEAT + training_records(dataset)[:1]))  # and one row it trained on
    test = save_test_set(store, settings.datasets_dir, path, tokenizer, 2**20)
    evaluation = evaluate_adapter(store, settings.models_dir, adapter.id, test_dataset_id=test.id,
                                  general_requests_asked=settings.general_requests)
    verdict = verdict_for(store, adapter.id)
    assert evaluation.source == "test file 'repeat (test)'" and evaluation.base_rouge > evaluation.adapter_rouge + 0.3
    assert verdict.kind == WORSE and verdict.sentence.startswith("Got worse than the base model: its answers score ROUGE-L")
    assert evaluation.overlap == 1 and "(4 rows; 1 of them also appear in the training rows" in verdict.judged_on
    assert "Next: train again with a lower learning rate (half of 0.002)" in verdict.next_step
