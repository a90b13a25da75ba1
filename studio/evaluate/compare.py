"""Adapters (and their base model) side by side, read from the store: nothing here trains or loads a model.

A comparison is made of columns, one per chosen adapter plus, when asked for, the base model
without an adapter. The Compare tab renders these tables; they are plain data so a test can read them.
"""

from dataclasses import dataclass

from studio.adapters.lineage import lineage
from studio.data.prompts import question_of
from studio.evaluate.measure import changes
from studio.evaluate.verdict import Verdict, verdict_for
from studio.store import AdapterRecord, EvaluationRecord, Store
from studio.train.sweeps import SweepResult

BASE = "base"  # the choice that stands for the base model without an adapter
# What each evaluation measure means, in plain words, and whether lower is better.
MEASURES = [
    ("validation loss", True, "how surprised the model is by the reference answers of the rows held out from training."),
    ("perplexity", True, "the validation loss as a number of equally likely next words the model hesitates between; "
                         "1 would be certain."),
    ("exact match", False, "the share of answers that equal the reference, ignoring case and spacing."),
    ("ROUGE-L", False, "how much of the reference's wording the answer repeats in the same order, from 0 (none) to 1 (all)."),
]
FORGETTING_MEANING = ("how many of the ordinary requests bundled with the studio (and your must-not-change prompts) the adapter "
                      "answers otherwise than the base, and the drift: how much less likely it finds the base's own answers, "
                      "in nats a token (0 is unchanged; lower is better).")


@dataclass(frozen=True)
class Column:
    title: str
    adapter: AdapterRecord | None  # None for the base model
    evaluation: EvaluationRecord | None
    verdict: Verdict | None = None  # from the latest evaluation
    lineage: str | None = None  # the adapter it continued and what it learned from (studio.adapters.lineage)


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    differing: list[bool]  # per row: do the columns disagree?


def columns(store: Store, choices: list[str]) -> list[Column]:
    """The chosen adapters by id, and the base model for BASE, in the order chosen."""
    found = []
    for choice in choices:
        if choice == BASE:
            found.append(Column("base model", None, None))
        else:
            adapter = store.adapter(int(choice))
            found.append(Column(f"#{adapter.id} {adapter.name}", adapter, store.latest_evaluation(adapter.id), verdict_for(store, adapter.id),
                                lineage(store, adapter)))
    return found


def _base_evaluation(chosen: list[Column]) -> EvaluationRecord | None:
    """The base model's numbers come from an adapter's evaluation: they were measured on its validation rows."""
    return next((c.evaluation for c in chosen if c.evaluation), None)


def settings_table(chosen: list[Column]) -> Table:
    """Base model, method, data and every training setting; a row is marked where the adapters differ."""
    adapters = [c.adapter for c in chosen if c.adapter]
    base_name = adapters[0].base_model if adapters else "bundled"
    keys = sorted({k for a in adapters for k in a.spec} - {"method"})  # method has its own row
    rows = [["base model"] + [c.adapter.base_model if c.adapter else base_name for c in chosen],
            ["method"] + [c.adapter.method if c.adapter else "none" for c in chosen],
            ["dataset (hash)"] + [c.adapter.dataset_hash[:12] if c.adapter else "—" for c in chosen],
            ["lineage"] + [c.lineage or ("trained afresh" if c.adapter else "—") for c in chosen],
            ["status"] + [c.adapter.status if c.adapter else "—" for c in chosen]]
    rows += [[key] + [str(c.adapter.spec.get(key, "—")) if c.adapter else "—" for c in chosen] for key in keys]
    # The base model has no settings of its own: differences are among the adapters, and one adapter differs from none.
    compared = [i + 1 for i, c in enumerate(chosen) if c.adapter]
    return Table(["setting"] + [c.title for c in chosen], rows, [len({r[i] for i in compared}) > 1 for r in rows])


def metrics_table(chosen: list[Column]) -> Table:
    """Training results and the latest evaluation, each adapter's as "base → adapter (change)"."""
    base = _base_evaluation(chosen)

    def cell(column: Column, index: int) -> str:
        if column.adapter is None:
            measure = changes(base)[index] if base else None
            return f"{measure.base:.0%}" if measure and measure.percent else (f"{measure.base:.4g}" if measure else "—")
        return str(changes(column.evaluation)[index]) if column.evaluation else "not evaluated"

    def summary(column: Column, key: str) -> str:
        value = column.adapter.summary.get(key) if column.adapter else None
        return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)

    def said(column: Column) -> str:
        if column.adapter is None:
            return "—"
        return f"{column.verdict.sentence} {column.verdict.judged_on}" if column.verdict else "not evaluated yet"

    def forgot(column: Column) -> str:
        forgetting = column.verdict.forgetting if column.verdict else None
        return str(forgetting) if forgetting else "—"

    rows = [["verdict"] + [said(c) for c in chosen], ["what it forgot"] + [forgot(c) for c in chosen]]
    rows += [[label] + [summary(c, key) for c in chosen] for label, key in
             [("training steps", "steps"), ("final training loss", "final_loss"), ("validation loss in training", "eval_loss")]]
    measures = changes(base) if base else []
    rows += [[f"{m.name} (base → adapter), {'lower' if m.lower_is_better else 'higher'} is better"] + [cell(c, i) for c in chosen]
             for i, m in enumerate(measures)]
    return Table(["measure"] + [c.title for c in chosen], rows, [False] * len(rows))


def loss_curves(store: Store, chosen: list[Column]) -> list[dict]:
    """Training and validation loss points of every chosen adapter's training job, one series each."""
    points = []
    for column in chosen:
        if column.adapter is None or column.adapter.job_id is None:
            continue
        for metric in store.metrics(column.adapter.job_id):
            for key, kind in (("loss", "training"), ("eval_loss", "validation")):
                if metric[key] is not None:
                    points.append({"step": int(metric["step"]), "loss": float(metric[key]), "series": f"{column.title} {kind}"})
    return points


def answers_table(store: Store, chosen: list[Column]) -> Table:
    """The stored answers to the same validation prompts, beside the reference answer; a prompt is
    shown as its instruction and input, without the template's fixed wording."""
    by_column = {c.title: {a["prompt"]: a for a in store.answers(c.evaluation.id)} for c in chosen if c.evaluation}
    base = _base_evaluation(chosen)
    base_answers = {a["prompt"]: a for a in store.answers(base.id)} if base else {}
    prompts = list(dict.fromkeys(p for answers in by_column.values() for p in answers)) or list(base_answers)
    rows = []
    for prompt in prompts:
        reference = next((a[prompt]["reference"] for a in [base_answers, *by_column.values()] if prompt in a), "")
        row = [question_of(prompt), reference]
        for column in chosen:
            source = base_answers if column.adapter is None else by_column.get(column.title, {})
            answer = source.get(prompt)
            row.append(answer["base_answer" if column.adapter is None else "adapter_answer"] if answer else "—")
        rows.append(row)
    return Table(["prompt", "reference"] + [c.title for c in chosen], rows, [False] * len(rows))


def general_table(store: Store, chosen: list[Column]) -> Table:
    """The base's and each adapter's answers to the ordinary requests and must-not-change prompts of their
    evaluations (studio.evaluate.forgetting); a row is marked where an adapter answers otherwise than the base."""
    by_column = {c.title: {a["prompt"]: a for a in store.probe_answers(c.evaluation.id)} for c in chosen if c.evaluation}
    prompts = list(dict.fromkeys(p for answers in by_column.values() for p in answers))
    rows, differing = [], []
    for prompt in prompts:
        first = next(a[prompt] for a in by_column.values() if prompt in a)
        row = [first["kind"], prompt]
        for column in chosen:
            answer = by_column.get(column.title, {}).get(prompt)
            row.append(first["base_answer"] if column.adapter is None else answer["adapter_answer"] if answer else "—")
        rows.append(row)
        differing.append(any(a[prompt]["changed"] for a in by_column.values() if prompt in a))
    return Table(["kind", "request", *(c.title for c in chosen)], rows, differing)


def sweep_table(results: list[SweepResult]) -> Table:
    """A sweep's runs best first: the settings swept, validation loss and held-out answer quality."""
    fields = list(results[0].swept) if results else []
    def number(value):
        return "n/a" if value is None else f"{value:.4g}"
    rows = [[str(rank), f"#{r.adapter.id} {r.adapter.name}", *(str(r.swept[f]) for f in fields), number(r.eval_loss), number(r.rouge)]
            for rank, r in enumerate(results, 1)]
    best_marked = [index == 0 for index in range(len(rows))]  # the table highlights the best run
    return Table(["rank", "adapter", *fields, "validation loss", "ROUGE-L"], rows, best_marked)

