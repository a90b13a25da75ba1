"""Dataset blending against forgetting, and sweeps: a grid of settings trained as one group."""

import json

import pytest
from conftest import CODEWORD_RECORDS, FIXTURES, run_cli

from studio.data.blending import blend_datasets, describe_blend, plan_blend
from studio.data.instructions import inspect_file, load_records, save_dataset
from studio.errors import DataError, SpecError
from studio.store import Store
from studio.train.spec import TrainSpec
from studio.train.sweeps import parse_sweep, sweep_results, sweep_specs

GENERAL = [{"instruction": f"What is {a} plus {b}?", "input": "", "output": f"{a} plus {b} is {a + b}."} for a in range(6) for b in range(10)]


def save(settings, store, tokenizer, path, records, name):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return save_dataset(store, settings.datasets_dir, inspect_file(path, tokenizer, max_bytes=2**22), name=name)


def test_a_blend_samples_rows_in_the_requested_shares_the_same_way_every_time(settings, store, tokenizer, tmp_path):
    team = save(settings, store, tokenizer, tmp_path / "team.jsonl", CODEWORD_RECORDS, "team")
    general = save(settings, store, tokenizer, tmp_path / "general.jsonl", GENERAL, "general")
    parts = plan_blend(store, team.id, {general.id: 0.2})
    assert [(p.dataset.name, p.rows, p.share) for p in parts] == [("team", 20, 0.8), ("general", 5, pytest.approx(0.2))]
    plan = describe_blend(parts, {team.id: 30.0, general.id: 20.0})
    assert plan.startswith("The blend: 25 rows, about 700 tokens.") and "- general: 5 rows, about 100 tokens (20%)" in plan

    blend = blend_datasets(store, settings.datasets_dir, parts)
    rows = load_records(blend.path)
    assert (blend.rows, blend.format, blend.name) == (25, "blend", "team blend") and "general 20%" in blend.source_file
    assert sum(r in CODEWORD_RECORDS for r in rows) == 20 and sum(r in GENERAL for r in rows) == 5
    assert blend_datasets(store, settings.datasets_dir, parts).id == blend.id  # seeded: the same rows again


def test_a_blend_that_cannot_be_made_is_explained(settings, store, tokenizer, tmp_path):
    team = save(settings, store, tokenizer, tmp_path / "team.jsonl", CODEWORD_RECORDS, "team")
    chat = save_dataset(store, settings.datasets_dir, inspect_file(FIXTURES / "chat_messages.jsonl", tokenizer, max_bytes=2**20), name="chat")
    with pytest.raises(DataError, match="different prompt formats"):
        plan_blend(store, team.id, {chat.id: 0.1})
    with pytest.raises(DataError, match="together below 1"):
        plan_blend(store, team.id, {chat.id: 1.0})
    with pytest.raises(DataError, match="cannot also be blended into itself"):
        plan_blend(store, team.id, {team.id: 0.1})


def test_a_sweep_is_parsed_into_checked_grid_points():
    runs = sweep_specs(TrainSpec(), parse_sweep("rank=8,16; learning_rate=1e-4,2e-4"))
    assert [label for label, _ in runs] == ["rank=8 learning_rate=0.0001", "rank=8 learning_rate=0.0002",
                                            "rank=16 learning_rate=0.0001", "rank=16 learning_rate=0.0002"]
    assert [(s.rank, s.learning_rate) for _, s in runs][-1] == (16, 2e-4)
    with pytest.raises(SpecError, match="NAME=VALUE1,VALUE2"):
        parse_sweep("rank")
    with pytest.raises(SpecError, match="In the sweep point rank=0: Rank must be between 1 and 256"):
        sweep_specs(TrainSpec(), parse_sweep("rank=0,8"))


def test_the_cli_trains_a_two_point_sweep_on_a_blend_as_one_group(studio_env, settings, tmp_path):
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps(r) + "\n" for r in GENERAL))
    team = tmp_path / "team.jsonl"
    team.write_text("".join(json.dumps(r) + "\n" for r in CODEWORD_RECORDS))
    result = run_cli(studio_env, "train", "--data", str(team), "--blend", f"{general}:0.2", "--sweep", "rank=4,8", "--name", "codeword sweep",
                     "--method", "rslora", "--max-steps", "2", "--batch-size", "4", "--max-length", "96", "--json", "--no-verdict")
    assert result.returncode == 0, result.stderr
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    store = Store(settings.db_path)
    blend = store.dataset(outcomes[0]["dataset_id"])
    assert len(outcomes) == 2 and {o["dataset_id"] for o in outcomes} == {blend.id} and blend.rows == 25
    assert store.sweeps() == ["codeword sweep"]
    ranked = sweep_results(store, "codeword sweep")
    assert sorted(r.adapter.name for r in ranked) == ["codeword sweep rank=4", "codeword sweep rank=8"]
    assert {r.swept["rank"] for r in ranked} == {4, 8}
    assert all(json.loads((r.adapter.path / "adapter_config.json").read_text())["use_rslora"] for r in ranked)
    assert [r.eval_loss for r in ranked] == sorted(r.eval_loss for r in ranked)
