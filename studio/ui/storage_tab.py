"""The Storage tab: what each artifact takes on disk, deleting one after reading what depends on it, and
clearing what is safe to clear. The work is studio.storage's; the Delete button acts only on the item whose
confirmation is shown, so a changed pick never deletes what the user did not read about."""

from html import escape
from pathlib import Path

import gradio as gr

from studio.errors import StudioError
from studio.settings import Settings
from studio.storage.deleting import check_deletion, delete
from studio.storage.dependents import feedback_items
from studio.storage.disk import clear, clearable, stored
from studio.store import Store
from studio.ui import html
from studio.ui.access import current_role, signed_in
from studio.ui.errors import shown_to_user
from studio.ui.refresh import on_show

STORED_HEADERS = ["what", "MB", "ref", "folder"]


def stored_rows(store: Store, settings: Settings) -> list[list]:
    return [[s.what, round(s.bytes / 2**20, 1), s.ref, str(s.path)] for s in stored(store, settings)]


def deletable_choices(store: Store, settings: Settings) -> list[tuple[str, str]]:
    """Everything a person may delete, as (label, ref): the stored artifacts, then votes and corrections."""
    choices = [(f"{s.ref}: {s.what}", s.ref) for s in stored(store, settings)]
    return choices + [(f"{i.ref}: {i} ({i.created_by})", i.ref) for i in feedback_items(store)]


def storage_summary(store: Store, settings: Settings, downloads_dir: Path) -> str:
    """The total kept, and what is safe to clear, in HTML."""
    total = sum(s.bytes for s in stored(store, settings))
    lines = [f"<b>{total / 2**20:,.1f} MB</b> kept in {escape(str(settings.home))}."]
    safe = clearable(store, settings, downloads_dir)
    lines += [f"Safe to clear: {escape(k.what)}: <b>{k.bytes / 2**20:,.1f} MB</b>." for k in safe]
    if not safe:
        lines.append("Nothing needs clearing.")
    return '<div class="studio-ok">' + "<br>".join(lines) + "</div>"


def build(settings: Settings, store: Store, page: gr.Tab, downloads_dir: Path) -> None:
    gr.Markdown("**Storage** lists what the studio keeps on disk. Deleting asks first: it shows what goes with the item "
                "and what depends on it, and refuses while a job or the adapter in use needs it. A trainer deletes what "
                "they made; an admin anything. A dataset adapters were trained on is archived (out of the lists, its rows "
                "kept for them) unless an admin erases what came from it too.")
    summary = gr.HTML(elem_id="storage-summary")
    table = gr.Dataframe(headers=STORED_HEADERS, interactive=False, label="Kept on disk, largest first", elem_id="storage-table")
    clear_button = gr.Button("Clear what is safe to clear", elem_id="storage-clear")
    with gr.Row():
        pick = gr.Dropdown([], label="What to delete", info="A dataset, adapter, merged model, export, job, vote or correction.",
                           elem_id="delete-pick", scale=3)
        check = gr.Button("Show what depends on it", elem_id="delete-check", scale=1)
    confirmation = gr.Markdown(elem_id="delete-confirmation")
    also = gr.Checkbox(False, label="Also erase what came from it (admins): the adapters trained on this dataset, with their "
                       "merges and exports", visible=False, elem_id="delete-also")
    confirm = gr.Button("Delete", variant="stop", visible=False, elem_id="delete-confirm")
    result = gr.HTML(elem_id="delete-result")
    checked = gr.State(None)  # the ref whose confirmation is shown: the only one Delete acts on

    def redraw(**pick_update):
        return (stored_rows(store, settings), storage_summary(store, settings, downloads_dir),
                gr.update(choices=deletable_choices(store, settings), **pick_update))

    on_show(page, lambda: redraw(), None, [table, summary, pick])

    @shown_to_user
    def show_dependents(ref):
        if not ref:
            raise StudioError("Pick what to delete first.")
        found = check_deletion(store, ref)
        can_confirm = not found.blockers
        return (found.describe(), ref if can_confirm else None, gr.update(visible=can_confirm and bool(found.came_from_it), value=False),
                gr.update(visible=can_confirm), "")

    @shown_to_user
    def delete_checked(ref, with_what_came_from_it):
        if ref is None:
            raise StudioError("Press 'Show what depends on it' first, then Delete.")
        done = delete(store, settings, ref, person=signed_in(), role=current_role(store), with_what_came_from_it=with_what_came_from_it)
        return ("", None, gr.update(visible=False), gr.update(visible=False), html.message(done.describe(), ok=True), *redraw(value=None))

    @shown_to_user
    def clear_safe():
        freed = clear(store, settings, signed_in(), downloads_dir)
        return html.message(f"Cleared {freed / 2**20:,.1f} MB.", ok=True), *redraw()

    check.click(show_dependents, pick, [confirmation, checked, also, confirm, result])
    pick.change(lambda: ("", None, gr.update(visible=False), gr.update(visible=False)), None, [confirmation, checked, also, confirm],
                show_progress="hidden")
    confirm.click(delete_checked, [checked, also], [confirmation, checked, also, confirm, result, table, summary, pick])
    clear_button.click(clear_safe, None, [result, table, summary, pick])
