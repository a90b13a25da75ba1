"""Train on feedback closes the loop: enough corrections train as instruction rows first, then DPO on every pair
continues that adapter; the plan is said before it is queued, and each new adapter says where it came from."""

import pytest
from conftest import CODEWORD_RECORDS

from jobs.control import cancel_job, feedback_plan, submit_feedback_training
from jobs.run import run_job
from jobs.tasks import release_waiting
from studio.adapters.lineage import lineage
from studio.data.held_out import training_records
from studio.data.instructions import load_records
from studio.errors import ChatError
from studio.feedback.items import MIN_CORRECTIONS, Answered, correct, training_plan, vote

SETTINGS = {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 16, "seed": 0, "system_prompt": ""}


@pytest.fixture(autouse=True)
def queue(settings):
    """Jobs this test queues go to its own studio's queue, not the default one."""
    from jobs.queue import use_queue_of

    use_queue_of(settings)


def collect(store, adapter, corrections: int) -> list[str]:
    """One win for the adapter over the base and `corrections` corrections of its answers; returns their refs."""
    key = f"adapter:{adapter.id}"
    asked = [[{"role": "user", "content": r["instruction"]}] for r in CODEWORD_RECORDS]
    refs = [f"vote:{vote(store, Answered('base:bundled', 'base', asked[0], 'No idea.'), Answered(key, adapter.name, asked[0], 'ZEPHYR-0.'), 'b', SETTINGS)}"]
    for turns, record in zip(asked[1:corrections + 1], CODEWORD_RECORDS[1:]):
        refs.append(f"correction:{correct(store, Answered(key, adapter.name, turns, 'The codeword is BORN.'), record['output'], SETTINGS)}")
    return refs


def test_the_plan_trains_on_corrections_as_rows_only_when_there_are_enough(stocked_home):
    adapter = stocked_home.adapters()[-1]
    refs = collect(stocked_home, adapter, MIN_CORRECTIONS)
    few = feedback_plan(stocked_home, adapter.id, refs[:MIN_CORRECTIONS])
    assert few.corrections == [] and few.describe("codewords-lora") == (
        f"DPO on {MIN_CORRECTIONS} pairs (1 vote and {MIN_CORRECTIONS - 1} corrections), continuing 'codewords-lora'.")
    enough = feedback_plan(stocked_home, adapter.id, refs)
    assert [i.ref for i in enough.corrections] == refs[1:]
    assert enough.describe("codewords-lora") == (
        f"First instruction tuning on {MIN_CORRECTIONS} corrections as instruction rows, with as many of the rows "
        "'codewords-lora' trained on so that it keeps what it knew, continuing 'codewords-lora'; "
        f"then DPO on {MIN_CORRECTIONS + 1} pairs (1 vote and {MIN_CORRECTIONS} corrections), continuing from that.")

    # An Alpaca-format adapter takes one question per row: a correction later in a conversation stays a pair only.
    later = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Codeword?"}]
    longer = correct(stocked_home, Answered(f"adapter:{adapter.id}", adapter.name, later, "BORN."), "ZEPHYR-9.", SETTINGS)
    alpaca = training_plan(stocked_home, refs[:MIN_CORRECTIONS] + [f"correction:{longer}"], "alpaca")
    assert alpaca.corrections == [] and len(alpaca.pairs) == MIN_CORRECTIONS + 1
    assert len(training_plan(stocked_home, refs[:MIN_CORRECTIONS] + [f"correction:{longer}"], "chat").corrections) == MIN_CORRECTIONS
    with pytest.raises(ChatError, match="No feedback is selected"):
        feedback_plan(stocked_home, adapter.id, [])


def test_corrections_then_votes_continue_the_adapter_in_two_jobs_with_lineage(stocked_home, settings):
    store, adapter = stocked_home, stocked_home.adapters()[-1]
    refs = collect(store, adapter, MIN_CORRECTIONS)
    first, then = submit_feedback_training(store, settings.datasets_dir, adapter.id, refs)
    assert (first.spec["objective"], first.spec["start_adapter_id"], then.spec["objective"]) == ("sft", adapter.id, "dpo")
    assert (then.state, then.after_job_id, then.task_id) == ("queued", first.id, None)  # not on the queue until the first succeeds
    assert store.dataset(then.dataset_id).rows == MIN_CORRECTIONS + 1
    # the corrections, and as many rows the adapter trained on (never its validation rows), so it keeps what it knew
    rows = load_records(store.dataset(first.dataset_id).path)
    trained = training_records(store.dataset(store.job(adapter.job_id).dataset_id))
    assert len(rows) == 2 * MIN_CORRECTIONS and sum(r in trained for r in rows) == MIN_CORRECTIONS

    assert run_job(settings, store, first.id) is not None, store.job(first.id).error  # the recipe the worker runs
    release_waiting(store, first.id)
    corrected = store.adapter(store.job(first.id).adapter_id)
    then = store.job(then.id)
    assert then.spec["start_adapter_id"] == corrected.id and then.task_id
    assert run_job(settings, store, then.id) is not None, store.job(then.id).error
    taught = store.adapter(store.job(then.id).adapter_id)
    assert (corrected.parent_id, taught.parent_id) == (adapter.id, corrected.id)
    assert lineage(store, corrected) == f"from codewords-lora (#{adapter.id}) via {MIN_CORRECTIONS} corrections as instruction rows"
    said = (f"from codewords-lora (#{adapter.id}) via {MIN_CORRECTIONS} corrections as instruction rows, "
            f"then via 1 vote and {MIN_CORRECTIONS} corrections")
    assert lineage(store, taught) == said and f"- Lineage: {said}\n" in (taught.path / "README.md").read_text()
    assert lineage(store, adapter) is None


def test_a_cancelled_first_job_cancels_the_job_that_waits_for_it(stocked_home, settings):
    store, adapter = stocked_home, stocked_home.adapters()[-1]
    first, then = submit_feedback_training(store, settings.datasets_dir, adapter.id, collect(store, adapter, MIN_CORRECTIONS))
    cancel_job(store, first.id)
    then = store.job(then.id)
    assert then.state == "cancelled" and f"not run: job {first.id}, which it waited for, cancelled" in then.notes
