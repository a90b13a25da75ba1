"""Chat feedback (votes that keep both answers, corrections) and preference files: captured, listed,
dropped, exported and read back, with bad input explained."""

import csv
import json

import pytest
from conftest import run_cli

from studio.cli.commands import main
from studio.data.preferences import inspect_preferences
from studio.errors import ChatError, DataError
from studio.feedback.items import (Answered, correct, disagreements, drop, export, feedback_items, parse_weights, raters, select,
                                  vote)
from studio.feedback.votes import leaderboard, win_rates
from studio.store.authors import acting_as

QUESTION = [{"role": "user", "content": "What is the codeword for boats?"}]
SETTINGS = {"temperature": 0.0, "top_p": 0.9, "max_new_tokens": 16, "seed": 0, "system_prompt": ""}


def answered(key: str, answer: str, turns=QUESTION) -> Answered:
    return Answered(key, key.replace(":", " #"), turns, answer)


def test_votes_keep_both_answers_and_only_a_win_on_differing_answers_is_a_pair(store):
    base, adapter = answered("base:bundled", "I do not know."), answered("adapter:1", "ZEPHYR-1.")
    won = vote(store, base, adapter, "b", SETTINGS)
    vote(store, base, adapter, "tie", SETTINGS)
    vote(store, base, answered("adapter:1", "I do not know."), "a", SETTINGS)
    stored = store.votes()[0]
    assert (json.loads(stored["a_turns"]), stored["a_answer"], stored["b_answer"], json.loads(stored["generation"])) == (
        QUESTION, "I do not know.", "ZEPHYR-1.", SETTINGS)
    items = feedback_items(store)
    assert [i.ref for i in items] == ["vote:3", "vote:2", f"vote:{won}"]  # newest first
    assert [i.verdict for i in items] == ["identical answers: not a pair", "tie: not a pair", "adapter #1 over base #bundled"]
    assert (items[2].chosen, items[2].rejected, items[2].is_pair) == ("ZEPHYR-1.", "I do not know.", True)
    assert [r.votes for r in win_rates(store)] == [3]  # every vote still counts in the ranking

    with pytest.raises(ChatError, match="Both A and B must answer the message in full before a vote"):
        vote(store, base, answered("adapter:1", ""), "a", SETTINGS)
    with pytest.raises(ChatError, match="A and B answered different messages"):
        vote(store, base, answered("adapter:1", "ZEPHYR-1.", [{"role": "user", "content": "Hi"}]), "a", SETTINGS)
    assert len(store.votes()) == 3  # nothing stored


def test_each_item_keeps_its_rater_and_raters_who_disagree_are_found(store):
    base, adapter = answered("base:bundled", "I do not know."), answered("adapter:1", "ZEPHYR-1.")
    trains = [{"role": "user", "content": "And for trains?"}]
    other, other_base = answered("adapter:1", "ZEPHYR-1.", trains), answered("base:bundled", "No idea.", trains)
    with acting_as("ana"):
        vote(store, base, adapter, "b", SETTINGS)
        vote(store, other_base, other, "b", SETTINGS)
        correct(store, base, "ZEPHYR-1.", SETTINGS)
    with acting_as("ben"):
        vote(store, base, adapter, "a", SETTINGS)  # the same message and models, the other winner
        vote(store, other_base, other, "b", SETTINGS)  # agrees with ana
    assert raters(store) == ["ana", "ben"]
    assert [i.ref for i in feedback_items(store, rater="ben")] == ["vote:4", "vote:3"]
    assert {i.rater for i in feedback_items(store, "adapter:1", "ana")} == {"ana"}
    assert [(d.prompt, d.choices) for d in disagreements(store)] == [
        ("What is the codeword for boats?", {"ana": "adapter #1", "ben": "base #bundled"})]
    assert store.corrections()[0]["created_by"] == "ana" and feedback_items(store)[0].rater == "ben"


def test_a_correction_is_an_instruction_row_and_a_pair_and_can_be_dropped(store, tmp_path):
    adapter = answered("adapter:1", "The codeword is BORN.")
    with pytest.raises(ChatError, match="The correction is the model's own answer, unchanged"):
        correct(store, adapter, " The codeword is BORN. ", SETTINGS)
    with pytest.raises(ChatError, match="The correction is empty"):
        correct(store, adapter, "  ", SETTINGS)
    correct(store, adapter, "The codeword for boats is ZEPHYR-1.", SETTINGS)
    vote(store, answered("base:bundled", "No idea."), adapter, "b", SETTINGS)
    assert sorted(i.ref for i in feedback_items(store, "adapter:1")) == ["correction:1", "vote:1"]
    assert [i.ref for i in feedback_items(store, "base:bundled")] == ["vote:1"]

    path = tmp_path / "feedback.jsonl"
    assert export(store, path) == 2
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[1] == {"prompt": QUESTION[0]["content"], "chosen": "The codeword for boats is ZEPHYR-1.",
                       "rejected": "The codeword is BORN.", "source": "correction:1"}

    drop(store, ["correction:1"])
    assert [i.ref for i in feedback_items(store)] == ["vote:1"]
    with pytest.raises(ChatError, match="No feedback is selected"):
        select(store, [])
    with pytest.raises(ChatError, match="No feedback item is called correction:1"):
        select(store, ["correction:1"])


def test_exported_feedback_reads_back_as_preference_data_with_multi_turn_conversations(store, tmp_path, tokenizer):
    earlier = QUESTION + [{"role": "assistant", "content": "ZEPHYR-1."}, {"role": "user", "content": "And for apples?"}]
    base_earlier = QUESTION + [{"role": "assistant", "content": "No idea."}, earlier[-1]]  # each side keeps its own conversation
    vote(store, answered("base:bundled", "Apples are red.", base_earlier), answered("adapter:1", "ZEPHYR-0.", earlier), "b",
         {**SETTINGS, "system_prompt": "Answer with codewords."})
    vote(store, answered("base:bundled", "No idea."), answered("adapter:1", "ZEPHYR-1."), "b", SETTINGS)
    path = tmp_path / "pairs.jsonl"
    export(store, path)

    report = inspect_preferences(path, tokenizer, max_bytes=2**20)
    assert report.issues == [] and report.kept_indices() == [0, 1]
    assert report.records[0]["prompt"] == QUESTION  # newest first: the single question
    conversation = report.records[1]  # the prompt is the conversation the winner answered
    assert conversation["prompt"] == [{"role": "system", "content": "Answer with codewords."}] + earlier
    assert (conversation["chosen"], conversation["rejected"]) == ("ZEPHYR-0.", "Apples are red.")
    preview = report.side_by_side()
    assert preview[0]["prompt"] == QUESTION[0]["content"] and preview[0]["chosen"] == "ZEPHYR-1."
    assert preview[0]["chosen_tokens"] == len(tokenizer("ZEPHYR-1.", add_special_tokens=False)["input_ids"])


def test_bad_preference_rows_are_named_by_row_and_left_out(tmp_path, tokenizer):
    rows = [{"instruction": "Name a colour.", "input": "", "chosen": "Blue.", "rejected": "Seven."},
            {"instruction": "Name a fruit.", "chosen": "Pear.", "rejected": ""},
            {"instruction": "Name a tree.", "chosen": "Oak.", "rejected": "Oak."},
            {"instruction": "Name a colour.", "input": "", "chosen": "Blue.", "rejected": "Seven."},
            {"instruction": "Describe the sea. " * 40, "input": "Be long.", "chosen": "Wet.", "rejected": "Dry."}]
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, ["instruction", "input", "chosen", "rejected"])
        writer.writeheader()
        writer.writerows(rows)
    report = inspect_preferences(path, tokenizer, max_bytes=2**20, max_length=64)
    assert [(i.kind, i.rows) for i in report.issues] == [("missing_side", [2]), ("identical", [3]), ("duplicate", [4]), ("too_long", [5])]
    assert report.issues[0].message.startswith("A prompt, chosen or rejected answer is missing or empty: 1 row (row 2).")
    assert report.kept_indices() == [0, 3, 4] and report.kept_indices({"duplicate", "too_long"}) == [0]
    assert report.records[4]["prompt"][0]["content"].endswith("\n\nBe long.")

    instructions = tmp_path / "instructions.jsonl"
    instructions.write_text(json.dumps({"instruction": "Hi", "output": "Hello"}) + "\n")
    with pytest.raises(DataError, match="preference data needs a 'chosen' and a 'rejected' column .columns found: instruction, output."):
        inspect_preferences(instructions, tokenizer, max_bytes=2**20)


def test_cli_lists_and_exports_feedback_and_checks_the_pairs_file(studio_env, store, tmp_path, monkeypatch, capsys):
    for name, value in studio_env.items():
        monkeypatch.setenv(name, value)
    vote(store, answered("base:bundled", "No idea."), answered("adapter:1", "ZEPHYR-1."), "b", SETTINGS)
    correct(store, answered("adapter:1", "The codeword is BORN."), "ZEPHYR-1.", SETTINGS)
    assert main(["feedback", "list", "--json"]) == 0
    assert sorted((i["ref"], i["verdict"]) for i in json.loads(capsys.readouterr().out)) == [
        ("correction:1", "corrected adapter #1"), ("vote:1", "adapter #1 over base #bundled")]
    assert main(["feedback", "export", str(tmp_path / "out.jsonl"), "--items", "vote:1"]) == 0
    assert "Wrote 1 preference pair to" in capsys.readouterr().out
    assert main(["feedback", "export", str(tmp_path / "none.jsonl"), "--items", "vote:9"]) == 2
    assert "No feedback item is called vote:9" in capsys.readouterr().err

    assert main(["data", "pairs", str(tmp_path / "out.jsonl"), "--json", "--save", "boat pairs"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert (checked["rows"], checked["shape"], checked["warnings"]) == (1, "pairs", [])
    saved = store.dataset(checked["dataset_id"])
    assert (saved.name, saved.shape, saved.rows) == ("boat pairs", "preference", 1)
    assert (checked["preview"][0]["chosen"], checked["preview"][0]["rejected"]) == ("ZEPHYR-1.", "No idea.")


def test_the_leaderboard_ranks_every_model_from_all_votes_with_a_range(store):
    def votes(a, b, winner, times):
        for _ in range(times):
            vote(store, answered(a, "one answer"), answered(b, "another answer"), winner, SETTINGS)

    votes("adapter:2", "adapter:1", "a", 8)
    votes("adapter:1", "adapter:2", "a", 2)  # the same pair, sides swapped
    votes("adapter:1", "base:bundled", "a", 5)
    votes("adapter:1", "base:bundled", "tie", 2)
    board = leaderboard(store)
    assert [(s.key, s.votes, s.wins) for s in board] == [("adapter:2", 10, 8.0), ("adapter:1", 17, 8.0), ("base:bundled", 7, 1.0)]
    assert all(s.low <= s.rating <= s.high for s in board) and board[0].rating > 1000 > board[2].rating
    assert leaderboard(store) == board  # the same seed, the same ranges
    few = leaderboard(store, resamples=50)[0]
    assert few.high - few.low > 50  # ten votes leave a wide range


def test_train_on_feedback_queues_dpo_continuing_the_adapter_with_lineage(stocked_home, studio_env):
    adapter = stocked_home.adapters()[-1]
    key = f"adapter:{adapter.id}"
    vote(stocked_home, answered("base:bundled", "No idea."), answered(key, "ZEPHYR-1."), "b", SETTINGS)
    vote(stocked_home, answered("base:bundled", "Same."), answered(key, "Same."), "a", SETTINGS)  # identical: not a pair
    correct(stocked_home, answered(key, "The codeword is BORN."), "The codeword for boats is ZEPHYR-1.", SETTINGS)
    jobs = stocked_home.jobs()
    refused = run_cli(studio_env, "feedback", "train", "--adapter", str(adapter.id), "--items", "")
    assert refused.returncode == 2 and "No feedback is selected" in refused.stderr and stocked_home.jobs() == jobs

    queued = run_cli(studio_env, "feedback", "train", "--adapter", adapter.name, "--items", "vote:1,vote:2,correction:1")
    assert queued.returncode == 0, queued.stderr
    job = stocked_home.jobs()[0]
    assert (job.state, job.spec["objective"], job.spec["start_adapter_id"]) == ("queued", "dpo", adapter.id)
    dataset = stocked_home.dataset(job.dataset_id)
    assert (dataset.shape, dataset.rows, dataset.source_file) == ("preference", 2, "chat feedback: vote:1, correction:1")


def test_train_on_feedback_weighs_raters(stocked_home, studio_env):
    adapter = stocked_home.adapters()[-1]
    key = f"adapter:{adapter.id}"
    with acting_as("rita"):  # the domain expert
        correct(stocked_home, answered(key, "The codeword is BORN."), "The codeword for boats is ZEPHYR-1.", SETTINGS)
    with acting_as("nick"):  # a newcomer, who disagrees with her
        vote(stocked_home, answered(key, "The codeword for boats is ZEPHYR-1."), answered("base:bundled", "No idea."), "b", SETTINGS)
    with acting_as("sam"):
        vote(stocked_home, answered("base:bundled", "Boats?"), answered(key, "ZEPHYR-1."), "b", SETTINGS)
    jobs = stocked_home.jobs()
    assert parse_weights(" rita=3, nick=0 ,") == {"rita": 3, "nick": 0}
    for wrong in ("rita", "rita=two", "=2", "rita=9"):
        with pytest.raises(ChatError, match=f"'{wrong}' is not a rater's weight. Write NAME=TIMES"):
            parse_weights(wrong)

    refused = run_cli(studio_env, "feedback", "train", "--adapter", str(adapter.id), "--items", "correction:1,vote:1,vote:2",
                      "--weights", "rita=lots")
    assert refused.returncode == 2 and "'rita=lots' is not a rater's weight" in refused.stderr and stocked_home.jobs() == jobs
    queued = run_cli(studio_env, "feedback", "train", "--adapter", str(adapter.id), "--items", "correction:1,vote:1,vote:2",
                     "--weights", "rita=3,nick=0,nobody=2")
    assert queued.returncode == 0, queued.stderr
    assert "DPO on 4 pairs (1 vote and 1 correction)" in queued.stdout  # rita's correction thrice, sam's vote once
    assert "nick's items are left out; rita's items count 3 times." in queued.stdout and "nobody" not in queued.stdout
    dataset = stocked_home.dataset(stocked_home.jobs()[0].dataset_id)
    assert (dataset.rows, dataset.source_file) == (4, "chat feedback: correction:1, vote:2")

