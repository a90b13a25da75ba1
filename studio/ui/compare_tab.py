"""The Compare tab: pick adapters and/or the base model and see them side by side.
It only reads the store; Evaluate again queues a new evaluation on the worker."""

from html import escape

import gradio as gr

from jobs.control import submit_evaluation
from studio.adapters.lineage import lineage
from studio.errors import StudioError
from studio.evaluate import compare
from studio.people import activity
from studio.store import Store
from studio.train.sweeps import sweep_results
from studio.ui import html, in_use_panel
from studio.ui.access import signed_in
from studio.ui.chart import loss_chart
from studio.ui.errors import shown_to_user
from studio.ui.refresh import on_show


def choices(store: Store) -> list[tuple[str, str]]:
    return [("Base model (no adapter)", compare.BASE)] + [
        (f"#{a.id} {a.name} ({a.method}){f' - {origin}' if (origin := lineage(store, a)) else ''}", str(a.id)) for a in store.adapters()]


def table_html(table: compare.Table, title: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join(
        f"<tr{' class=studio-diff' if differs else ''}>" + "".join(f"<td>{escape(str(v))}</td>" for v in row) + "</tr>"
        for row, differs in zip(table.rows, table.differing)
    )
    return f"<h3>{escape(title)}</h3><table class='studio-table'><tr>{head}</tr>{body}</table>"


def measures_html() -> str:
    """What each measure means and which way is better, beside the results."""
    items = "".join(f"<li><b>{escape(name)}</b> ({'lower' if lower else 'higher'} is better): {escape(meaning)}</li>"
                    for name, lower, meaning in compare.MEASURES)
    items += f"<li><b>what it forgot</b>: {escape(compare.FORGETTING_MEANING)}</li>"
    return f"<div id='compare-measures'><b>What the measures mean</b><ul>{items}</ul></div>"


def build(store: Store, page: gr.Tab) -> None:
    in_use_panel.build(store, page)
    gr.Markdown("Pick two or more adapters, and the base model if you like, to see them side by side. "
                "Settings where the adapters differ are highlighted. Nothing is trained here: it shows what the studio has stored.")
    sweep = gr.Dropdown(store.sweeps(), value=None, label="Sweep", elem_id="compare-sweep",
                        info="Pick a sweep to rank its runs, best first, and compare them below.")
    ranking = gr.HTML(elem_id="compare-ranking")
    picked = gr.CheckboxGroup(choices(store), label="Compare", info="Tick two or more; the base model too, to see what training changed.", elem_id="compare-pick")
    with gr.Row():
        show = gr.Button("Compare", variant="primary", elem_id="compare-show")
        again = gr.Button("Evaluate the chosen adapters again", elem_id="compare-evaluate")
    note = gr.HTML(elem_id="compare-note")
    settings_view = gr.HTML(elem_id="compare-settings")
    metrics_view = gr.HTML(elem_id="compare-metrics")
    curves = gr.HTML(label="Loss curves", elem_id="compare-curves")
    answers_view = gr.HTML(elem_id="compare-answers")
    general_view = gr.HTML(elem_id="compare-general")

    on_show(page, lambda: (gr.update(choices=choices(store)), gr.update(choices=store.sweeps())), None, [picked, sweep])

    @shown_to_user
    def rank(name: str | None):
        if not name:
            return "", gr.update()
        results = sweep_results(store, name)
        if not results:
            return html.message(f"No run of sweep '{name}' has finished yet; follow them in the Jobs tab."), gr.update()
        ranked = table_html(compare.sweep_table(results), f"Sweep '{name}', best first (lowest validation loss)")
        return ranked, [str(r.adapter.id) for r in results]

    @shown_to_user
    def show_comparison(chosen: list[str]):
        if len(chosen or []) < 2:
            raise StudioError("Pick at least two things to compare: two adapters, or an adapter and the base model.")
        columns = compare.columns(store, chosen)
        missing = [c.title for c in columns if c.adapter and not c.evaluation]
        hint = html.message(f"Not evaluated yet: {', '.join(missing)}. Press 'Evaluate the chosen adapters again'.") if missing else ""
        results = table_html(compare.metrics_table(columns), "Results") + measures_html()
        general = compare.general_table(store, columns)
        return (hint, table_html(compare.settings_table(columns), "Settings"), results,
                loss_chart(compare.loss_curves(store, columns), empty="The chosen adapters have no recorded training loss."),
                table_html(compare.answers_table(store, columns), "Answers to the validation prompts"),
                table_html(general, "What it forgot: answers to ordinary requests, marked where the adapter answers otherwise "
                           "than the base") if general.rows else "")

    @shown_to_user
    def evaluate_again(chosen: list[str]):
        ids = [int(c) for c in chosen or [] if c != compare.BASE]
        if not ids:
            raise StudioError("Pick the adapters to evaluate first.")
        jobs = [submit_evaluation(store, adapter_id) for adapter_id in ids]
        activity.record(store, signed_in(), "evaluate", f"queued evaluation jobs {', '.join(str(j.id) for j in jobs)}")
        return html.message(f"Evaluation queued as job {', '.join(str(j.id) for j in jobs)}; follow it in the Jobs tab, "
                            "then press Compare again.", ok=True)

    outputs = [note, settings_view, metrics_view, curves, answers_view, general_view]
    show.click(show_comparison, picked, outputs)
    sweep.input(rank, sweep, [ranking, picked]).success(show_comparison, picked, outputs)
    again.click(evaluate_again, picked, note)
