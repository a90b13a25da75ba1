"""The Gradio UI: one module per tab, rendered into one Blocks app by build_app."""

import gradio as gr

from studio.settings import Settings
from studio.store import Store
from studio.ui import data_tab

CSS = """
.studio-error {border-left: 4px solid #d33; background: #fdf0f0; padding: 8px 12px; border-radius: 4px;}
.studio-ok {border-left: 4px solid #2a7; background: #effaf3; padding: 8px 12px; border-radius: 4px;}
.studio-example {border: 1px solid #ddd; border-radius: 6px; padding: 8px; margin-bottom: 8px;}
.studio-example pre {white-space: pre-wrap; margin: 0; font-size: 13px;}
.studio-prompt {color: #666;}
.studio-response {background: #e6f4ea; color: #124; font-weight: 600;}
.studio-bar {background: #6a8fd8; height: 14px; display: inline-block;}
"""


def build_app(settings: Settings, store: Store, model_dir) -> gr.Blocks:
    with gr.Blocks(title="Adapter Studio") as app:
        gr.Markdown("# Adapter Studio\nFine-tune open language models on your own examples, by clicking.")
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                data_tab.build(settings, store, model_dir)
    return app
