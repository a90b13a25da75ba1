"""Evaluation of a real adapter against its base on held-out rows: numbers and answers stored and shown."""

import json

import pytest
from conftest import run_cli, save_codewords

from studio.evaluate.measure import changes, evaluate_adapter
from studio.evaluate.scores import exact_match, rouge_l
from studio.store import Store


def test_rouge_l_scores_the_longest_common_word_sequence():
    assert rouge_l("The codeword is ZEPHYR-3.", "the codeword is zephyr-3") == 1.0
    assert rouge_l("the cat sat", "the cat sat on the mat") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert rouge_l("mat the on", "the cat sat on the mat") == pytest.approx(2 * (2 / 3) * (2 / 6) / (2 / 3 + 2 / 6))
    assert rouge_l("nothing alike", "the codeword") == 0.0 and rouge_l("", "") == 1.0


def test_exact_match_ignores_case_and_spacing_only():
    assert exact_match("  The codeword  is X. ", "the codeword is x.")
    assert not exact_match("The codeword is X", "The codeword is X.")


def test_evaluation_numbers_and_answers_are_stored_and_show_base_to_adapter(trained, evaluated):
    settings, store, job, adapter = trained
    assert evaluated.adapter_id == adapter.id and evaluated.rows == 5
    assert evaluated.adapter_loss < evaluated.base_loss and evaluated.adapter_perplexity < evaluated.base_perplexity
    assert evaluated.adapter_rouge > evaluated.base_rouge
    answers = store.answers(evaluated.id)
    assert len(answers) == 5
    assert all(a["reference"].startswith("The codeword for ") and "ZEPHYR" in a["reference"] for a in answers)
    assert all("### Instruction:" in a["prompt"] and a["base_answer"] != a["adapter_answer"] for a in answers)
    assert sum("ZEPHYR" in a["adapter_answer"] for a in answers) >= 3
    loss = changes(evaluated)[0]
    assert loss.name == "validation loss" and loss.improved
    assert str(loss) == f"{evaluated.base_loss:.4g} → {evaluated.adapter_loss:.4g} ({evaluated.adapter_loss - evaluated.base_loss:+.3g})"


def test_a_dataset_without_validation_rows_is_judged_on_training_rows_and_says_so(trained, settings, store, codeword_file, tokenizer):
    from studio.evaluate.verdict import verdict_for

    dataset = save_codewords(settings, store, codeword_file, tokenizer, validation_fraction=0.0)
    source = trained[3]
    adapter = store.add_adapter(name="no-validation", job_id=None, path=source.path, base_model="bundled", dataset_hash=dataset.content_hash,
                                method="lora", spec=source.spec, summary={"steps": 8}, status="complete", parent_id=None)
    evaluation = evaluate_adapter(store, settings.models_dir, adapter.id, general_requests_asked=settings.general_requests)
    assert (evaluation.source, evaluation.rows) == ("training rows", 20)
    assert "Judged on 20 rows it trained on, as the dataset holds none out" in str(verdict_for(store, adapter.id))


def test_cli_evaluate_prints_json_by_adapter_name(trained):
    settings, store, job, adapter = trained
    env = {"STUDIO_HOME": str(settings.home), "STUDIO_MODELS_DIR": str(settings.models_dir)}
    result = run_cli(env, "evaluate", "--adapter", "codewords-lora", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["adapter_id"] == adapter.id and report["rows"] == 5 and len(report["answers"]) == 5
    assert report["adapter_loss"] < report["base_loss"]
    assert Store(settings.db_path).evaluation(report["id"]).adapter_id == adapter.id


def test_cli_evaluate_of_an_unknown_adapter_exits_2(studio_env):
    result = run_cli(studio_env, "evaluate", "--adapter", "nothing-here")
    assert result.returncode == 2 and "No registered adapter has the id, name or folder 'nothing-here'" in result.stderr


def test_a_test_file_attached_to_a_dataset_is_checked_and_overlap_with_training_rows_flagged(settings, store, codeword_file, tokenizer):
    from studio.data.held_out import training_records
    from studio.errors import DataError
    from studio.evaluate.measure import attach_test_file

    dataset = save_codewords(settings, store, codeword_file, tokenizer)
    test_file = settings.home / "mine.jsonl"
    new_rows = [{"instruction": f"What is the codeword for gate {n}?", "input": "", "output": f"The codeword for gate {n} is NEW-{n}."}
                for n in range(3)]
    test_file.write_text("".join(json.dumps(r) + "\n" for r in new_rows + training_records(dataset)[:2]))
    note = attach_test_file(store, settings.datasets_dir, dataset.id, test_file, tokenizer, 2**20, "mine.jsonl")
    assert note.startswith(f"Adapters of '{dataset.name}' are now judged on 'mine (test)' (5 rows)")
    assert "2 of its rows ask the same as a training row" in note
    assert store.dataset(store.dataset(dataset.id).test_dataset_id).name == "mine (test)"
    with pytest.raises(DataError, match="holds the same rows as"):
        attach_test_file(store, settings.datasets_dir, dataset.id, codeword_file, tokenizer, 2**20, "codewords.jsonl")
