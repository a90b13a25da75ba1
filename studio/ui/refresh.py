"""Views of the store are redrawn whenever the page loads and whenever their tab is shown, so that
no list or picker shows what the store no longer holds (after a reload, a save in another browser,
a job that finished)."""

import gradio as gr
from gradio.context import Context

from studio.ui.access import needs


def on_show(page: gr.Tab, fn, inputs, outputs):
    """Run `fn` into `outputs` when the page loads and whenever `page` is selected; returns the event, to chain.

    Redrawing a view changes nothing, so every role may do it (studio.ui.access), unless `fn` says
    otherwise: a reviewer's page loads every tab's views, shown or not, without a refusal."""
    return gr.on([Context.root_block.load, page.select], fn if hasattr(fn, "studio_action") else needs("view")(fn), inputs, outputs,
                 show_progress="hidden")
