"""Deleting with lineage kept safe (issue 25, part 4), on artifacts trained, merged and evaluated for real in a
studio of the test's own: the confirmation lists what depends on a thing, nothing a job or the adapter in use
needs goes, a trainer deletes only what they made, a dataset adapters came from is archived unless an admin
erases them too, and then not one byte of its rows is left in the studio's folder."""

import os
import threading
import time

import pytest
from conftest import quick_spec, run_artifact_now, run_cli, save_codewords, train_now

from studio.adapters.in_use import put_in_use
from studio.adapters.lineage import lineage
from studio.chat.server import choose
from studio.errors import DeleteRefused, Gone
from studio.people.roles import NotAllowed
from studio.storage.deleting import check_deletion, delete
from studio.storage.disk import clear, clearable, stored
from studio.store.authors import acting_as


@pytest.fixture
def made(settings, store, codeword_file, tokenizer):
    """Ana's dataset, an adapter trained on it with a checkpoint, its merge and evaluation, and an adapter continuing it."""
    with acting_as("ana"):
        dataset = save_codewords(settings, store, codeword_file, tokenizer)
        first = train_now(settings, store, dataset, quick_spec(max_steps=2, save_steps=2), name="first")
        adapter = store.adapter(first.adapter_id)
        merge_job = run_artifact_now(settings, store, "merge", {"adapter_id": adapter.id, "dtype": "float32"}, name="merge first")
        run_artifact_now(settings, store, "evaluate", {"adapter_id": adapter.id}, name="evaluate first")
        child = store.adapter(train_now(settings, store, dataset, quick_spec(max_steps=2, start_adapter_id=adapter.id), name="child").adapter_id)
    return dataset, adapter, store.merges(adapter.id)[0], merge_job, child


def test_an_adapter_goes_with_its_parts_and_what_continued_it_keeps_its_lineage(settings, store, made):
    dataset, adapter, merge, merge_job, child = made
    queued = store.add_job(kind="export", name="lora first", dataset_id=None, base_model="bundled", spec=f'{{"adapter_id": {adapter.id}}}')
    put_in_use(store, adapter.id)
    found = check_deletion(store, f"adapter:{adapter.id}")
    assert any(f"job #{queued.id}" in b for b in found.blockers) and any("adapter in use" in b for b in found.blockers)
    with pytest.raises(DeleteRefused, match=f"job #{queued.id} 'lora first' \\(queued\\) uses it.*adapter in use"):
        delete(store, settings, f"adapter:{adapter.id}", person="ana", role="trainer")
    store.update_job(queued.id, state="cancelled")
    put_in_use(store, child.id)  # the first stays in the history, one roll back away: deleting it takes it out

    found = check_deletion(store, f"adapter:{adapter.id}")
    assert found.blockers == []
    assert {p.ref for p in found.parts} == {f"merge:{merge.id}", f"job:{adapter.job_id}",
                                            f"evaluation:{store.latest_evaluation(adapter.id).id}"}
    assert any(f"adapter #{child.id} 'child', continued from it" in k for k in found.kept)
    assert "Erased with it:" in found.describe() and "Kept:" in found.describe()
    with pytest.raises(NotAllowed, match="was made by ana: a trainer deletes only what they made"):
        delete(store, settings, f"adapter:{adapter.id}", person="ben", role="trainer")
    checkpoints = settings.jobs_dir / str(adapter.job_id) / "checkpoints"
    assert adapter.path.exists() and merge.path.exists() and checkpoints.exists()

    done = delete(store, settings, f"adapter:{adapter.id}", person="ana", role="trainer")
    assert done.freed_bytes > 0 and not done.archived and "Deleted adapter" in done.describe()
    assert not adapter.path.exists() and not merge.path.exists() and not checkpoints.parent.exists()
    assert adapter.id not in [a.id for a in store.adapters()] and store.merges(adapter.id) == []
    assert store.latest_evaluation(adapter.id) is None and adapter.job_id not in [j.id for j in store.jobs()]
    with pytest.raises(Gone, match=f"Adapter #{adapter.id} 'first' was deleted by ana"):
        choose(f"adapter:{adapter.id}", settings, store)
    with pytest.raises(Gone):
        delete(store, settings, f"adapter:{adapter.id}", person="ana", role="trainer")
    # What pointed at it still names it: the child's lineage, the merge job, the in-use history without it.
    assert f"from first (#{adapter.id}) (deleted by ana on " in lineage(store, store.adapter(child.id))
    assert store.job(merge_job.id).state == "succeeded" and store.adapter(adapter.id, deleted_too=True).name == "first"
    assert [c["adapter_id"] for c in store.in_use_choices()] == [child.id]
    assert choose(f"adapter:{child.id}", settings, store).adapter_dir == child.path


def test_a_dataset_adapters_came_from_is_archived_storage_clears_what_is_safe_and_erasing_leaves_none_of_its_rows(settings, store, made):
    dataset, adapter, merge, merge_job, child = made
    with pytest.raises(NotAllowed, match="needs the admin role"):
        delete(store, settings, f"dataset:{dataset.id}", person="ana", role="trainer", with_what_came_from_it=True)
    found = check_deletion(store, f"dataset:{dataset.id}")
    assert {c.ref for c in found.came_from_it} >= {f"adapter:{adapter.id}", f"adapter:{child.id}", f"merge:{merge.id}"}

    archived = delete(store, settings, f"dataset:{dataset.id}", person="ana", role="trainer")
    assert archived.archived and "Archived dataset" in archived.describe()
    assert dataset.id not in [d.id for d in store.datasets()] and store.dataset(dataset.id).archived
    assert dataset.path.exists() and store.adapter(child.id).path.exists()

    # Storage, between: each thing's size, and what is safe to clear goes while all that is kept stays.
    sizes = {s.ref: s.bytes for s in stored(store, settings)}
    assert sizes[f"adapter:{adapter.id}"] > 0 and sizes[f"merge:{merge.id}"] > sizes[f"adapter:{adapter.id}"]
    assert sizes[f"dataset:{dataset.id}"] > 0 and f"job:{adapter.job_id}" in sizes
    old, new = settings.adapters_dir / ".x.123.partial.json", settings.adapters_dir / ".y.123.partial.json"
    old.write_text("half"), new.write_text("half")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    safe = {k.what.split(" (")[0].split(",")[0]: k.paths for k in clearable(store, settings)}
    assert settings.jobs_dir / str(adapter.job_id) / "checkpoints" in safe["Intermediate checkpoints of finished jobs"]
    assert any(old in paths for paths in safe.values()) and not any(new in paths for paths in safe.values())
    assert clear(store, settings, "ana") > 0
    assert not (settings.jobs_dir / str(adapter.job_id) / "checkpoints").exists() and not old.exists() and new.exists()
    assert (adapter.path / "adapter_model.safetensors").exists() and merge.path.exists() and dataset.path.exists()

    done = delete(store, settings, f"dataset:{dataset.id}", person="root", role="admin", with_what_came_from_it=True)
    assert {e.ref for e in done.erased} >= {f"dataset:{dataset.id}", f"adapter:{adapter.id}", f"adapter:{child.id}", f"merge:{merge.id}"}
    assert store.adapters() == [] and store.datasets(archived_too=True) == [] and store.merges() == []
    assert not settings.token_cache_dir.exists()
    with pytest.raises(Gone, match=f"Dataset #{dataset.id} 'codewords' was deleted by root"):
        store.dataset(dataset.id)
    rows_left = [path for path in settings.home.rglob("*") if path.is_file() and b"ZEPHYR-" in path.read_bytes()]
    assert rows_left == []  # not in a file, not in the database's free pages, not in its write-ahead log


def test_of_two_people_deleting_one_adapter_at_once_one_deletes_it_and_the_other_is_told(settings, store, codeword_file, tokenizer):
    dataset = save_codewords(settings, store, codeword_file, tokenizer)
    child = store.adapter(train_now(settings, store, dataset, quick_spec(max_steps=1), name="one").adapter_id)
    outcomes, start = [], threading.Barrier(2)

    def press(person):
        start.wait()
        try:
            outcomes.append(delete(store, settings, f"adapter:{child.id}", person=person, role="admin").item.ref)
        except Gone as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=press, args=(p,)) for p in ("ana", "ben")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deleted, told = sorted(outcomes, key=len)
    assert deleted == f"adapter:{child.id}" and f"Adapter #{child.id} 'one' was deleted by" in told
    assert not child.path.exists()


def test_feedback_items_are_erased_by_their_trainer_or_an_admin(settings, store):
    with acting_as("rita"):
        vote = store.add_vote(a_key="base", a_label="base", b_key="adapter:1", b_label="x", winner="b", prompt="my phone is 0123")
    with pytest.raises(NotAllowed, match="needs the trainer role"):
        delete(store, settings, f"vote:{vote}", person="rita", role="reviewer")
    with pytest.raises(NotAllowed, match="made by rita"):
        delete(store, settings, f"vote:{vote}", person="ben", role="trainer")
    delete(store, settings, f"vote:{vote}", person="root", role="admin")
    assert store.votes() == []


def test_delete_and_storage_from_the_command_line(studio_env, settings, store):
    with acting_as("ana"):
        vote = store.add_vote(a_key="base", a_label="base", b_key="base", b_label="base", winner="tie", prompt="hello")
    asked = run_cli(studio_env, "delete", f"vote:{vote}")
    assert asked.returncode == 0 and "Nothing else depends on it." in asked.stdout and "run it again with --yes" in asked.stdout
    assert len(store.votes()) == 1
    done = run_cli(studio_env, "delete", f"vote:{vote}", "--yes")
    assert done.returncode == 0 and "Deleted vote" in done.stdout and store.votes() == []
    again = run_cli(studio_env, "delete", f"vote:{vote}", "--yes")
    assert again.returncode == 2 and f"There is no vote #{vote}" in again.stderr
    wrong = run_cli(studio_env, "delete", "model:1")
    assert wrong.returncode == 2 and "write KIND:ID" in wrong.stderr
    listed = run_cli(studio_env, "storage")
    assert listed.returncode == 0 and "Nothing needs clearing." in listed.stdout
