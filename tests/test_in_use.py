"""The adapter in use: chosen with who and when, rolled back one step at a time, offered first,
said on its card, and chosen from the command line as from the Compare tab."""

import threading
import zipfile

import pytest

from studio.adapters.in_use import history, in_use, put_in_use, roll_back
from studio.cli.commands import main
from studio.errors import InUseError, NotFound
from studio.export.merge import export_adapter
from studio.store.authors import acting_as
from studio.ui.pickers import adapter_choices, model_choices


def adapters(store, trained_adapter, count=3):
    """Registered copies of one trained adapter: records of their own, the same files."""
    return [store.add_adapter(name=f"tickets v{n}", job_id=None, path=trained_adapter.path, base_model="bundled",
                              dataset_hash="h", method="lora", spec={}, summary={}, status="complete", parent_id=None)
            for n in range(1, count + 1)]


def test_each_choice_is_kept_and_a_roll_back_brings_back_the_one_before(stocked_home, trained):
    store, (one, two, three) = stocked_home, adapters(stocked_home, trained[3])
    assert in_use(store) is None
    with pytest.raises(InUseError, match="No adapter is in use yet"):
        roll_back(store)
    with acting_as("ana"):
        put_in_use(store, one.id)
    with acting_as("ben"):
        put_in_use(store, two.id)
        put_in_use(store, three.id)
    current = in_use(store)
    assert (current.adapter.id, current.chosen_by) == (three.id, "ben") and "chosen by ben" in current.describe()
    with pytest.raises(InUseError, match="is in use already"):
        put_in_use(store, three.id)
    with pytest.raises(NotFound):
        put_in_use(store, 999)
    assert roll_back(store).adapter.id == two.id
    assert roll_back(store).adapter.id == one.id and in_use(store).chosen_by == "ana"
    with pytest.raises(InUseError, match="no earlier adapter in use"):
        roll_back(store)
    assert [c.adapter.id for c in history(store)] == [one.id]


def test_two_people_rolling_back_at_once_go_back_one_step_not_two(stocked_home, trained):
    store, (one, two, three) = stocked_home, adapters(stocked_home, trained[3])
    for adapter in (one, two, three):
        put_in_use(store, adapter.id)
    outcomes, start = [], threading.Barrier(2)

    def press():
        start.wait()
        try:
            outcomes.append(roll_back(store).adapter.id)
        except InUseError as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=press) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert in_use(store).adapter.id in (one.id, two.id)
    # one roll back each, or one of them told that the other was first; never a half-done roll back
    assert len(history(store)) == 3 - len([o for o in outcomes if isinstance(o, int)])


def test_the_adapter_in_use_is_offered_first_and_its_card_says_since_when_and_who_chose_it(stocked_home, trained, tmp_path):
    store, (one, two, _) = stocked_home, adapters(stocked_home, trained[3])
    with acting_as("ana"):
        put_in_use(store, one.id)
    assert adapter_choices(store)[0] == (f"#{one.id} tickets v1 (lora) · in use", one.id)
    assert model_choices(store)[1][1] == f"adapter:{one.id}" and "in use" in model_choices(store)[1][0]
    with zipfile.ZipFile(export_adapter(store, one.id, tmp_path / "in-use.zip")) as archive:
        card = archive.read(next(n for n in archive.namelist() if n.endswith("/README.md"))).decode()
    assert "**In use since " in card and "chosen by ana.**" in card
    assert card.index("# ") < card.index("**In use since")  # under the title, after the front matter
    with zipfile.ZipFile(export_adapter(store, two.id, tmp_path / "other.zip")) as archive:
        assert "In use since" not in archive.read(next(n for n in archive.namelist() if n.endswith("/README.md"))).decode()
    assert "In use since" not in (one.path / "README.md").read_text()  # the adapter's own folder is left as it is


def test_the_command_line_shows_chooses_and_rolls_back(stocked_home, trained, studio_env, monkeypatch, capsys):
    for name, value in studio_env.items():
        monkeypatch.setenv(name, value)
    store, (one, two, _) = stocked_home, adapters(stocked_home, trained[3])
    assert main(["in-use"]) == 0 and "No adapter is in use yet" in capsys.readouterr().out
    assert main(["in-use", "--adapter", str(one.id)]) == 0
    assert main(["in-use", "--adapter", "tickets v2"]) == 0
    assert f"Adapter #{two.id} 'tickets v2' is in use." in capsys.readouterr().out
    assert main(["in-use", "--roll-back"]) == 0 and f"#{one.id} 'tickets v1' is in use" in capsys.readouterr().out
    assert in_use(store).chosen_by == "command line"
    assert main(["in-use", "--adapter", "nothing"]) == 2 and "No registered adapter" in capsys.readouterr().err
