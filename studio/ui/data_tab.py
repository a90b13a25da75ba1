"""The Data tab: upload a file, see its mapping, problems and rendered preview, save it. A file of preference
pairs (a chosen and a rejected column) is recognised, checked and previewed with its two answers side by side."""

from pathlib import Path

import gradio as gr

from studio.data.instructions import DEFAULT_MAX_LENGTH, EXAMPLE_DATASET, ISSUE_KINDS, PREVIEW_ROWS, DataReport, IssueKind, preview_rows
from studio.data.preferences import ISSUE_KINDS as PAIR_ISSUE_KINDS
from studio.data.preferences import PreferenceReport, inspect_data_file, save_report
from studio.data.prompts import templates
from studio.data.readers import FORMATS
from studio.errors import StudioError
from studio.evaluate.measure import attach_test_file
from studio.models.catalog import load_tokenizer
from studio.people import activity
from studio.settings import Settings
from studio.store import DatasetRecord, Store
from studio.ui import html
from studio.ui.access import signed_in
from studio.ui.errors import shown_to_user
from studio.ui.pickers import dataset_choices
from studio.ui.refresh import on_show

ROLES = ["instruction", "input", "output", "messages"]
DATASET_HEADERS = ["id", "name", "rows", "format", "template", "validation %", "saved", "by"]
START_HERE = """**New here? Five steps from examples to your own model.**
1. **Data** (this tab): upload a file of examples, or load the example below. Read the problems found, tick any rows to drop, and press *Save dataset*.
2. **Train**: pick your dataset, keep the *Quick test* preset for a first try, and press *Start training*.
3. **Jobs**: watch the progress and the loss curve; the loss should go down.
4. **Compare**: see how the base model and your adapter answer the held-out examples.
5. **Chat**: ask the base model (A) and your adapter (B) the same question side by side. *Merge* and *Download* take the result with you.
"""


def dataset_rows(store: Store) -> list[list]:
    return [[d.id, d.name, d.rows, d.format, d.template, round(d.validation_fraction * 100), html.readable_time(d.created),
             d.created_by]
            for d in store.datasets()]


def saved_note(store: Store, record: DatasetRecord, existed: bool) -> str:
    """What a save did, in words: a new dataset, or the one already saved with these rows and settings."""
    held_out = f"{round(record.validation_fraction * 100)} % held out for validation"
    if existed:
        note = (f"These rows are already saved as '{record.name}' (dataset {record.id}, {record.rows} rows, {held_out}) "
                "with the same settings; it is used as it is.")
    else:
        note = f"Saved as '{record.name}' (dataset {record.id}, {record.rows} rows, {held_out})."
        twins = [d for d in store.datasets() if d.content_hash == record.content_hash and d.id != record.id]
        if twins:
            note += (" The same rows are also saved as " + ", ".join(f"'{d.name}' (dataset {d.id})" for d in twins)
                     + ", which stays as it was, with its own split.")
    if record.shape == "preference":
        return note + (" Next: open the Train tab and pick this dataset: its plan trains it with DPO (or KTO, chosen under "
                       "Advanced settings, Preference training), best continuing an adapter tuned on instructions first.")
    return note + " Next: open the Train tab, pick this dataset and press Start training."


def issue_kinds(report: DataReport | PreferenceReport | None) -> dict[str, IssueKind]:
    """The kinds of problem a report can list: those of preference pairs, or of instruction data."""
    return PAIR_ISSUE_KINDS if isinstance(report, PreferenceReport) else ISSUE_KINDS


def drop_choices(report: DataReport | PreferenceReport | None) -> list[tuple[str, str]]:
    return [(kind.title, name) for name, kind in issue_kinds(report).items() if not kind.always_dropped]


def preview_choices(report: DataReport | PreferenceReport | None) -> list[tuple[str, str]]:
    kinds = [(f"Rows with: {issue_kinds(report)[i.kind].title.lower()} ({len(i.rows)})", i.kind) for i in report.issues] if report else []
    return [("Rows that will be used", "")] + kinds


def shown(report: DataReport | PreferenceReport, drop: set[str], rows: list[int]) -> tuple[str, str]:
    """The summary and the preview of `rows` (0-based), as pairs side by side or rendered training examples."""
    if isinstance(report, PreferenceReport):
        return html.pairs_summary(report, drop), html.pairs_preview(report, drop, rows)
    return html.summary(report, drop), html.preview(report, drop, rows)


def build(settings: Settings, store: Store, model_dir: Path, page: gr.Tab) -> None:
    report_state = gr.State(None)
    source = gr.State(None)  # the file being checked: an upload or the example
    with gr.Accordion("Start here", open=True, elem_id="start-here"):
        gr.Markdown(START_HERE)
        example = gr.Button(f"Load the example dataset ({EXAMPLE_DATASET.stem.replace('_', ' ')})", size="sm", elem_id="data-example")
    gr.Markdown("Upload your examples: each row is an instruction and the answer you want the model to learn, or a "
                "preference pair (a prompt with a *chosen* and a *rejected* answer, or two conversations that differ in their "
                "last answer) to teach it which answer to prefer. Supported: JSON, JSONL, CSV, TSV, Excel (.xlsx) and Parquet.")
    upload = gr.File(label="Data file (instructions or preference pairs)", file_types=list(FORMATS), elem_id="data-upload")
    with gr.Row():
        template = gr.Dropdown([("Automatic (by the kind of records)", "")] + [(t.title, t.name) for t in templates().values()],
                               value="", label="Prompt format", info="How each example is shown to the model.")
        max_length = gr.Number(DEFAULT_MAX_LENGTH, precision=0, minimum=16, label="Maximum length (tokens)",
                               info="Longer rows are cut in training; most instruction data fits in 512.")
    with gr.Accordion("Column mapping (which column holds what)", open=False):
        columns = [gr.Dropdown([], value=None, label=f"{role.capitalize()} column", allow_custom_value=False,
                                 info=f"The column that holds the {role}; (none) if the file has no such column.") for role in ROLES]
        recheck = gr.Button("Check again with these settings")
    status = gr.HTML(elem_id="data-status")
    problems = gr.HTML(elem_id="data-problems")
    drop = gr.CheckboxGroup(drop_choices(None), label="Drop rows with these problems",
                            info="Rows with empty text, broken conversations, a missing answer or two identical answers are always left out.",
                            elem_id="data-drop")
    with gr.Row():
        shown_rows = gr.Dropdown(preview_choices(None), value="", label="Preview", elem_id="data-preview-show",
                                 info="Page through the rows that will be used, or look at the rows with one kind of problem.")
        first_row = gr.Number(1, precision=0, minimum=1, label="From row", elem_id="data-preview-from",
                              info=f"The preview shows {PREVIEW_ROWS} rows from this row on.")
        next_rows = gr.Button(f"Next {PREVIEW_ROWS} rows", size="sm", elem_id="data-preview-next")
    with gr.Row():
        preview = gr.HTML(elem_id="data-preview")
        histogram = gr.HTML(elem_id="data-histogram")
    with gr.Row():
        name = gr.Textbox(label="Dataset name", info="A label for this dataset in the studio.", elem_id="data-name")
        validation = gr.Slider(0, 20, value=5, step=1, label="Held out for validation (%)",
                               info="Rows kept aside to measure the model on examples it did not train on.", elem_id="data-validation")
    save = gr.Button("Save dataset", variant="primary", interactive=False, elem_id="data-save")
    saved = gr.HTML(elem_id="data-saved")
    table = gr.Dataframe(dataset_rows(store), headers=DATASET_HEADERS, interactive=False, label="Saved datasets", elem_id="data-datasets")
    with gr.Accordion("Your own test file (optional)", open=False, elem_id="data-test"):
        gr.Markdown("Examples the adapters never train on, in any format above. The verdict and Compare then judge every adapter "
                    "of the chosen dataset on them instead of its validation rows; rows that are also training rows are flagged.")
        with gr.Row():
            test_for = gr.Dropdown(dataset_choices(store), value=None, label="Judge adapters of", elem_id="data-test-dataset")
            test_upload = gr.File(label="Test file", file_types=list(FORMATS), elem_id="data-test-upload")
        attach = gr.Button("Attach test file", elem_id="data-test-attach")
        attached = gr.HTML(elem_id="data-test-note")
    with gr.Accordion("Answers that must not change (optional)", open=False, elem_id="data-keep"):
        gr.Markdown("Requests your team relies on that are not this dataset's task, one per line. Every evaluation of its "
                    "adapters asks them of the base model and the adapter, beside the studio's own ordinary requests, and the "
                    "verdict says which now get another answer.")
        keep_for = gr.Dropdown(dataset_choices(store), value=None, label="For the adapters of", elem_id="data-keep-dataset")
        keep_prompts = gr.Textbox(lines=4, label="Prompts, one per line", elem_id="data-keep-prompts")
        keep = gr.Button("Save these prompts", elem_id="data-keep-save")
        kept = gr.HTML(elem_id="data-keep-note")
    on_show(page, lambda: (dataset_rows(store), gr.update(choices=dataset_choices(store)), gr.update(choices=dataset_choices(store))),
            None, [table, test_for, keep_for])

    def analyse(file, template_name, length, detect, kinds, *chosen):
        """Check the file; whatever was shown for an earlier file (results, a save note, an error) goes. Kinds of
        problem ticked to drop stay ticked where the file's kind of data has them."""
        reset = ["", gr.Button(interactive=False), gr.update(choices=preview_choices(None), value=""), 1]
        if not file:
            return [None, "", "", "", ""] + [gr.update()] * len(ROLES) + [gr.update(), gr.update()] + reset
        path = Path(file)
        mapping = None if detect else {role: column for role, column in zip(ROLES, chosen) if column}
        try:
            report = inspect_data_file(path, load_tokenizer(model_dir), max_bytes=settings.max_upload_bytes, name=path.name,
                                       mapping=mapping, template=template_name or None, max_length=int(length or DEFAULT_MAX_LENGTH))
        except StudioError as error:
            return [None, html.message(str(error)), "", "", ""] + [gr.update()] * len(ROLES) + [gr.update(), gr.update()] + reset
        mapped = getattr(report, "mapping", {})  # preference pairs have fixed column names
        dropdowns = [gr.update(choices=[("(none)", "")] + [(c, c) for c in report.columns], value=mapped.get(role, "")) for role in ROLES]
        ticked = [k for k in kinds or [] if k in issue_kinds(report)]
        summary, preview_html = shown(report, set(ticked), preview_rows(report, set(ticked)))
        return ([report, summary, html.problems(report), preview_html, html.histogram(report)] + dropdowns
                + [gr.update(choices=drop_choices(report), value=ticked), path.stem, "", gr.Button(interactive=True),
                   gr.update(choices=preview_choices(report), value=""), 1])

    outputs = [report_state, status, problems, preview, histogram, *columns, drop, name, saved, save, shown_rows, first_row]
    settings_in = [source, template, max_length, drop, *columns]
    upload.upload(lambda f: f, upload, source).then(lambda f, t, n, d, *c: analyse(f, t, n, True, d, *c), settings_in, outputs)
    upload.clear(lambda: None, None, source).then(lambda f, t, n, d, *c: analyse(f, t, n, True, d, *c), settings_in, outputs)
    example.click(lambda: str(EXAMPLE_DATASET), None, source).then(lambda f, t, n, d, *c: analyse(f, t, n, True, d, *c), settings_in, outputs)
    for trigger in (recheck.click, template.input, max_length.submit):
        trigger(lambda f, t, n, d, *c: analyse(f, t, n, False, d, *c), settings_in, outputs)

    def redraw(report: DataReport | PreferenceReport | None, kinds: list[str], show: str, start: float | None):
        if report is None:
            return gr.update(), gr.update()
        return shown(report, set(kinds), preview_rows(report, set(kinds), show, int(start or 1)))

    preview_in = [report_state, drop, shown_rows, first_row]
    gr.on([drop.change, shown_rows.input, first_row.submit, first_row.blur], redraw, preview_in, [status, preview])

    def after_shown(report: DataReport | PreferenceReport | None, kinds: list[str], show: str, start: float | None):
        """The row after the last one shown, so that the preview pages on."""
        rows = preview_rows(report, set(kinds), show, int(start or 1)) if report else []
        return rows[-1] + 2 if rows else gr.update()

    next_rows.click(after_shown, preview_in, first_row).then(redraw, preview_in, [status, preview])

    @shown_to_user
    def save_current(report: DataReport | PreferenceReport | None, kinds: list[str], label: str, percent: float):
        if report is None:
            raise StudioError("Upload a data file (or load the example) first; there is nothing to save yet.")
        before = {d.id for d in store.datasets()}
        record = save_report(store, settings.datasets_dir, report, name=label, drop=set(kinds), validation_fraction=percent / 100)
        activity.record(store, signed_in(), "upload", f"saved dataset #{record.id} '{record.name}' ({record.rows} rows, from {report.file_name})")
        return html.message(saved_note(store, record, record.id in before), ok=True), dataset_rows(store)

    save.click(save_current, [report_state, drop, name, validation], [saved, table]).then(
        lambda: (gr.update(choices=dataset_choices(store)),) * 2, None, [test_for, keep_for])

    @shown_to_user
    def attach_test(dataset_id, file):
        """The note (or what is wrong) in place, as for a checked file: no error badges on the fields."""
        if dataset_id is None:
            return html.message("Choose the saved dataset whose adapters the test file should judge."), gr.update(), gr.update()
        if not file:
            return html.message("Upload the test file first: held-out examples in any format the Data tab reads."), gr.update(), gr.update()
        try:
            note = attach_test_file(store, settings.datasets_dir, int(dataset_id), Path(file), load_tokenizer(model_dir),
                                    settings.max_upload_bytes, Path(file).name)
            activity.record(store, signed_in(), "upload", f"attached test file {Path(file).name} to dataset #{int(dataset_id)}")
        except StudioError as error:
            return html.message(str(error)), gr.update(), gr.update()
        return html.message(note, ok=True), dataset_rows(store), gr.update(choices=dataset_choices(store))

    attach.click(attach_test, [test_for, test_upload], [attached, table, test_for])

    @shown_to_user
    def show_kept(dataset_id):
        return "\n".join(store.dataset(int(dataset_id)).keep_prompts) if dataset_id is not None else ""

    @shown_to_user
    def save_kept(dataset_id, text: str):
        if dataset_id is None:
            return html.message("Choose the saved dataset whose adapters these prompts are asked of.")
        dataset = store.keep_answers_of(int(dataset_id), text.splitlines())
        activity.record(store, signed_in(), "upload", f"saved {len(dataset.keep_prompts)} must-not-change prompts of dataset #{dataset.id}")
        count = len(dataset.keep_prompts)
        return html.message(f"Every evaluation of the adapters of '{dataset.name}' asks {count} must-not-change prompt{'s' * (count != 1)} "
                            "from now on; press *Evaluate the chosen adapters again* in Compare for an adapter evaluated already.", ok=True)

    keep_for.input(show_kept, keep_for, keep_prompts)
    keep.click(save_kept, [keep_for, keep_prompts], kept)
