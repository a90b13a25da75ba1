"""Comparing stored adapters: settings differences, results as base → adapter, curves, answers."""

from studio.evaluate import compare
from studio.evaluate.measure import changes


def test_a_comparison_of_two_adapters_and_the_base_reads_the_store(trained, trained_qlora, evaluated):
    settings, store, _, lora = trained
    chosen = compare.columns(store, [compare.BASE, str(lora.id), str(trained_qlora.id)])
    table = compare.settings_table(chosen)
    differing = {row[0] for row, differs in zip(table.rows, table.differing) if differs}
    assert {"method", "max_steps"} <= differing and "rank" not in differing and "base model" not in differing
    metrics = compare.metrics_table(chosen)
    loss_row = next(r for r in metrics.rows if r[0].startswith("validation loss (base → adapter)"))
    assert loss_row[1] == f"{evaluated.base_loss:.4g}" and loss_row[2].startswith(f"{evaluated.base_loss:.4g} → ")
    assert loss_row[3] == "not evaluated"
    series = {p["series"] for p in compare.loss_curves(store, chosen)}
    assert series == {f"#{lora.id} {lora.name} training", f"#{lora.id} {lora.name} validation",
                      f"#{trained_qlora.id} {trained_qlora.name} training", f"#{trained_qlora.id} {trained_qlora.name} validation"}
    answers = compare.answers_table(store, chosen)
    assert len(answers.rows) == evaluated.rows
    assert all(row[1].startswith("The codeword for") and row[4] == "—" for row in answers.rows)


def test_with_the_base_model_only_the_adapters_settings_are_compared(trained):
    settings, store, _, lora = trained
    alone = compare.settings_table(compare.columns(store, [compare.BASE, str(lora.id)]))
    assert not any(alone.differing)  # one adapter differs from nothing; the base model has no settings


def test_each_measure_is_explained_with_the_direction_the_evaluation_scores_it(evaluated):
    explained = {name: lower for name, lower, _ in compare.MEASURES}
    assert explained == {change.name: change.lower_is_better for change in changes(evaluated)}


def test_answers_show_the_question_without_the_template_wording(trained, evaluated):
    store, lora = trained[1], trained[3]
    answers = compare.answers_table(store, compare.columns(store, [compare.BASE, str(lora.id)]))
    assert [row[0] for row in answers.rows] == [a["prompt"].split("### Instruction:\n")[1].split("\n\n###")[0]
                                                for a in store.answers(evaluated.id)]
    assert all(row[0].startswith("What is the codeword for") for row in answers.rows)
