"""Views of the store are redrawn whenever the page loads and whenever their tab is shown, so that
no list or picker shows what the store no longer holds (after a reload, a save in another browser,
a job that finished)."""

import gradio as gr
from gradio.context import Context


def on_show(page: gr.Tab, fn, inputs, outputs):
    """Run `fn` into `outputs` when the page loads and whenever `page` is selected; returns the event, to chain."""
    return gr.on([Context.root_block.load, page.select], fn, inputs, outputs, show_progress="hidden")
