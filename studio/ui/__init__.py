"""The Gradio UI: one module per tab, rendered into one Blocks app by build_app."""

from pathlib import Path

import gradio as gr

from studio.chat.server import ModelServer
from studio.errors import JobError
from studio.settings import Settings
from studio.store import Store
from studio.train.spec import TrainSpec
from studio.ui import chat_tab, compare_tab, data_tab, download_tab, jobs_tab, merge_tab, train_tab
from studio.ui.errors import shown_to_user
from studio.ui.refresh import on_show

CSS = """
.studio-error {border-left: 4px solid #d33; background: #fdf0f0; padding: 8px 12px; border-radius: 4px;}
.studio-warn {border-left: 4px solid #d98e04; background: #fff8e6; padding: 8px 12px; border-radius: 4px; margin-top: 6px;}
.studio-ok {border-left: 4px solid #2a7; background: #effaf3; padding: 8px 12px; border-radius: 4px;}
.studio-example {border: 1px solid #ddd; border-radius: 6px; padding: 8px; margin-bottom: 8px;}
.studio-example pre {white-space: pre-wrap; margin: 0; font-size: 13px;}
.studio-prompt {color: #666;}
.studio-response {background: #e6f4ea; color: #124; font-weight: 600;}
.studio-pair {display: flex; gap: 8px; margin-top: 6px;}
.studio-pair > div {flex: 1 1 0; border-radius: 4px; padding: 6px;}
.studio-chosen {background: #e6f4ea;}
.studio-rejected {background: #fdf0f0;}
.studio-bar {background: #6a8fd8; height: 14px; display: inline-block;}
.studio-table {border-collapse: collapse; margin-bottom: 12px;}
.studio-table td, .studio-table th {border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; white-space: pre-wrap;}
.studio-diff td {background: #fff3c4;}
"""


def build_app(settings: Settings, store: Store, model_dir: Path, downloads_dir: Path) -> gr.Blocks:
    with gr.Blocks(title="Adapter Studio", analytics_enabled=False) as app:
        with gr.Row():
            gr.Markdown("# Adapter Studio\nFine-tune open language models on your own examples, by clicking.")
            if settings.auth:  # signed in: a way out, for a shared or borrowed computer
                gr.Button("Log out", link="/logout", size="sm", scale=0, min_width=100, elem_id="logout")
        with gr.Tabs() as tabs:
            with gr.Tab("Data", id="data") as data_page:
                data_tab.build(settings, store, model_dir, data_page)
            with gr.Tab("Train", id="train") as train_page:
                train = train_tab.build(settings, store, train_page)
            with gr.Tab("Jobs", id="jobs") as jobs_page:
                jobs = jobs_tab.build(settings, store)
            with gr.Tab("Compare", id="compare") as compare_page:
                compare_tab.build(store, compare_page)
            with gr.Tab("Merge", id="merge") as merge_page:
                merge_tab.build(store, merge_page)
            with gr.Tab("Download", id="download") as download_page:
                download_tab.build(store, download_page, downloads_dir)
            with gr.Tab("Chat", id="chat") as chat_page:
                chat_tab.build(settings, store, ModelServer(settings.chat_memory_mb), chat_page)
        # Choices only: the picked job stays as it is, even when the user picks one before this answer arrives.
        on_show(jobs_page, lambda: gr.update(choices=jobs_tab.job_choices(store)), None, jobs.job)
        train.start_event.success(lambda job_id: (gr.Tabs(selected="jobs"), gr.update(choices=jobs_tab.job_choices(store), value=job_id)),
                                  train.started_job, [tabs, jobs.job])

        @shown_to_user
        def clone(job_id):
            """Clone-and-edit: the Train tab filled with the job's settings."""
            if job_id is None:
                raise gr.Error("Pick a job to clone first.")
            job = store.job(int(job_id))
            if job.kind != "train":
                raise JobError(f"Job {job.id} is a {job.kind} job; only training jobs can be cloned. Pick a training job.")
            spec = TrainSpec.from_dict(job.spec)
            values = [getattr(spec, name) for name in train.advanced]
            return (gr.Tabs(selected="train"), gr.update(choices=data_tab.dataset_choices(store), value=job.dataset_id),
                    job.base_model, spec.method, f"{job.name} (copy)", dict(zip(train.advanced, values)), *values)  # the clone's settings are the user's

        jobs.clone.click(clone, jobs.job, [tabs, train.dataset, train.model, train.method, train.name, train.edited, *train.advanced.values()])
    return app
