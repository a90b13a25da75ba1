"""The Gradio UI: one module per tab, rendered into one Blocks app by build_app."""

from pathlib import Path

import gradio as gr

from studio.chat.server import ModelServer
from studio.errors import JobError
from studio.people.roles import can
from studio.people.users import sign_in_required
from studio.settings import Settings
from studio.store import Store
from studio.train.spec import TrainSpec
from studio.ui import chat_tab, compare_tab, data_tab, download_tab, jobs_tab, merge_tab, people_tab, storage_tab, train_tab
from studio.ui.access import Guard, current_role, needs, signed_in
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


# Each tab: its id, its label, and the action its events need (studio.people.roles), which decides who sees it.
TAB_ACTIONS = {"data": "upload", "train": "train", "jobs": "manage_jobs", "compare": "evaluate", "merge": "merge",
               "download": "export", "chat": "chat", "storage": "delete", "people": "manage_people"}


def build_app(settings: Settings, store: Store, model_dir: Path, downloads_dir: Path) -> gr.Blocks:
    """The studio's Blocks app, every event guarded by the role it needs (studio.ui.access)."""
    with gr.Blocks(title="Adapter Studio", analytics_enabled=False) as app:
        guard = Guard(app, store)
        with gr.Row():
            gr.Markdown("# Adapter Studio\nFine-tune open language models on your own examples, by clicking.")
            who = gr.Markdown(elem_id="signed-in")
            if sign_in_required(store):  # signed in: a way out, for a shared or borrowed computer
                gr.Button("Log out", link="/logout", size="sm", scale=0, min_width=100, elem_id="logout")
        with gr.Tabs() as tabs:
            with gr.Tab("Data", id="data") as data_page, guard.section("upload"):
                data_tab.build(settings, store, model_dir, data_page)
            with gr.Tab("Train", id="train") as train_page, guard.section("train"):
                train = train_tab.build(settings, store, train_page)
            with gr.Tab("Jobs", id="jobs") as jobs_page, guard.section("manage_jobs"):
                jobs = jobs_tab.build(settings, store)
            with gr.Tab("Compare", id="compare") as compare_page, guard.section("evaluate"):
                compare_tab.build(store, compare_page)
            with gr.Tab("Merge", id="merge") as merge_page, guard.section("merge"):
                merge_tab.build(store, merge_page)
            with gr.Tab("Download", id="download") as download_page, guard.section("export"):
                download_tab.build(store, download_page, downloads_dir)
            with gr.Tab("Chat", id="chat") as chat_page, guard.section("chat"):
                chat_tab.build(settings, store, ModelServer(settings.chat_memory_mb), chat_page)
            with gr.Tab("Storage", id="storage") as storage_page, guard.section("delete"):
                storage_tab.build(settings, store, storage_page, downloads_dir)
            with gr.Tab("People", id="people") as people_page, guard.section("manage_people"):
                people_tab.build(store, people_page, downloads_dir)
        pages = {"data": data_page, "train": train_page, "jobs": jobs_page, "compare": compare_page, "merge": merge_page,
                 "download": download_page, "chat": chat_page, "storage": storage_page,
                 "people": people_page}
        with guard.section("manage_jobs"):
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

        @needs("view")
        def shown_for_role():
            """Each person sees the tabs their role may use, and who they are signed in as."""
            role = current_role(store)
            name = signed_in()
            line = f"Signed in as **{name}** ({role})" if sign_in_required(store) else ""
            usable = [key for key in pages if can(role, TAB_ACTIONS[key])]
            # Only what changes: an update to a shown tab would redraw it under the user's first clicks.
            # "hidden", not False: Gradio 6 hides a tab's button only then (False hides its content alone).
            first = gr.skip() if usable[0] == "data" else gr.Tabs(selected=usable[0])
            return (line, first, *[gr.skip() if key in usable else gr.Tab(visible="hidden") for key in pages])

        app.load(shown_for_role, None, [who, tabs, *pages.values()], show_progress="hidden")
        app.event_actions = guard.install()  # what each event needs, for tests
    return app
