"""What an adapter forgot (issue 24, part 3), measured by every evaluation on a real adapter: one whose LoRA
update is zero answers every ordinary request as the base does, and the same adapter with its weights
scrambled changes them and a team's must-not-change prompt; the verdict, Compare and the CLI say so."""

import pytest
import torch
from conftest import quick_spec, run_cli, save_codewords, train_now
from safetensors.torch import load_file, save_file

from studio.evaluate import compare
from studio.evaluate.forgetting import general_requests, must_not_change
from studio.evaluate.measure import evaluate_adapter
from studio.evaluate.verdict import verdict_for


def rewrite_lora(adapter_path, change) -> None:
    """Rewrite the adapter's LoRA weights in place: `change(name, tensor)` gives each one's new value."""
    path = adapter_path / "adapter_model.safetensors"
    weights = load_file(path)
    save_file({name: change(name, tensor) for name, tensor in weights.items()}, path)


@pytest.fixture
def adapter(settings, store, codeword_file, tokenizer):
    dataset = save_codewords(settings, store, codeword_file, tokenizer)
    return store.adapter(train_now(settings, store, dataset, quick_spec(max_steps=1), name="one step").adapter_id)


def evaluate(settings, store, adapter):
    return evaluate_adapter(store, settings.models_dir, adapter.id, general_requests_asked=settings.general_requests)


def test_a_zero_update_keeps_every_answer_and_scrambled_weights_forget_them(settings, store, adapter):
    rewrite_lora(adapter.path, lambda name, t: torch.zeros_like(t) if "lora_B" in name else t)
    kept = evaluate(settings, store, adapter)
    assert (kept.general_asked, kept.general_changed) == (5, 0) and abs(kept.general_drift) < 1e-4
    assert {r["kind"] for r in store.probe_answers(kept.id)} == {"knowledge", "instruction", "format", "arithmetic", "two turns"}
    assert all(r["base_answer"] == r["adapter_answer"] != "" for r in store.probe_answers(kept.id))
    verdict = verdict_for(store, adapter.id)
    assert "Kept its general skills: 5 of 5 ordinary requests get the base model's answer" in str(verdict)
    assert "Blend" not in str(verdict)

    store.keep_answers_of(store.job(adapter.job_id).dataset_id, ["What is the capital of France?", "  ", "What is the capital of France?"])
    generator = torch.Generator().manual_seed(0)
    rewrite_lora(adapter.path, lambda name, t: torch.randn(t.shape, generator=generator) * 0.1)
    forgot = evaluate(settings, store, adapter)
    assert forgot.general_changed >= 4 and forgot.general_drift > 0.5 and (forgot.kept_asked, forgot.kept_changed) == (1, 1)
    verdict = verdict_for(store, adapter.id)
    assert verdict.forgetting.lost and f"Changed {forgot.general_changed} of 5 general answers" in str(verdict)
    assert "1 of your 1 must-not-change prompts now get another answer (“What is the capital of France?”)" in str(verdict)
    assert "blend general data into its training (Train › Blend in other data)" in str(verdict)
    # The base answered once per probe: the zero-update adapter's evaluation and this one share the base's answers.
    base_answers = {r["prompt"]: r["base_answer"] for r in store.probe_answers(kept.id)}
    assert all(base_answers[r["prompt"]] == r["base_answer"] for r in store.probe_answers(forgot.id) if r["prompt"] in base_answers)
    assert store.db["base_answers"].count == 2  # the general requests alone, then with the team's prompt

    columns = compare.columns(store, [compare.BASE, str(adapter.id)])
    table = compare.general_table(store, columns)
    assert len(table.rows) == 6 and table.rows[-1][:2] == ["must not change", "What is the capital of France?"]
    assert sum(table.differing) == forgot.general_changed + 1
    forgot_row = next(r for r in compare.metrics_table(columns).rows if r[0] == "what it forgot")
    assert forgot_row[2].startswith(f"Changed {forgot.general_changed} of 5")


def test_the_probe_covers_every_kind_however_short():
    every = general_requests()
    assert len(every) == 60 and len({p.turns[-1]["content"] for p in every}) == 60
    assert all(p.turns[-1]["role"] == "user" for p in every)
    assert {p.kind for p in general_requests(5)} == {p.kind for p in every}
    assert [p.kind for p in must_not_change(["a", "b"])] == ["must not change"] * 2


def test_must_not_change_prompts_from_the_command_line(studio_env, settings, store, codeword_file, tokenizer, tmp_path):
    dataset = save_codewords(settings, store, codeword_file, tokenizer)
    empty = run_cli(studio_env, "data", "keep", "codewords")
    assert empty.returncode == 0 and "has no must-not-change prompts yet" in empty.stdout
    prompts = tmp_path / "keep.txt"
    prompts.write_text("Say hello.\n\nWhat is 2 plus 2?\n")
    saved = run_cli(studio_env, "data", "keep", str(dataset.id), "--file", str(prompts))
    assert saved.returncode == 0 and "asks 2 must-not-change prompts from now on" in saved.stdout
    assert store.dataset(dataset.id).keep_prompts == ("Say hello.", "What is 2 plus 2?")
    missing = run_cli(studio_env, "data", "keep", "codewords", "--file", str(tmp_path / "nope.txt"))
    assert missing.returncode == 2 and "Give a UTF-8 text file with one prompt per line" in missing.stderr
