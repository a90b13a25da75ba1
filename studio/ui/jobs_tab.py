"""The Jobs tab: every job with its state and queue position; for one job its progress,
live loss curve and log tail, with Cancel, Resume and Clone-and-edit."""

from dataclasses import dataclass
from html import escape

import gradio as gr

from jobs.control import can_cancel, can_resume, cancel_job, resume_job, submit_training
from jobs.run import job_folder
from jobs.status import JobStatus, job_status, log_tail, worker_statuses
from studio.errors import JobError
from studio.evaluate.verdict import LEARNED, train_longer_spec, verdict_for
from studio.people import activity
from studio.settings import Settings
from studio.store import JobRecord, Store
from studio.train.spec import PREFERENCE_OBJECTIVES
from studio.ui.access import needs, signed_in
from studio.ui.chart import loss_chart, step_chart
from studio.ui.errors import shown_to_user
from studio.ui.html import history, progress_html
from studio.ui.pickers import job_choices

HEADERS = ["id", "name", "state", "queue", "progress", "worker", "created", "by", "history"]
WORKER_HEADERS = ["worker", "device", "state", "job", "last heartbeat"]
REFRESH_SECONDS = 2
CURVE_COLOURS = {"training loss": "#3b6fd8", "validation loss": "#e8731a"}  # blue, orange
PREFERENCE_COLOURS = {"reward margin": "#2a9d4b", "preference accuracy": "#8e44ad"}  # green, purple
# The log box opens on its newest line: Gradio's autoscroll follows only a box already scrolled down.
SCROLL_LOG_DOWN = "() => { const box = document.querySelector('#job-log textarea'); if (box) box.scrollTop = box.scrollHeight; }"


@dataclass
class JobsTab:
    job: gr.Dropdown
    clone: gr.Button


def job_rows(store: Store) -> list[list]:
    return [[j.id, j.name, j.state, store.queue_position(j.id) or "", f"{j.step}/{j.total_steps}", j.worker or "", j.created,
             j.created_by, history(j)] for j in store.jobs()]


def worker_rows(store: Store) -> list[list]:
    return [[w.id, w.device, w.state, w.job_id or "", _ago(w.seconds_since_heartbeat)] for w in worker_statuses(store)]


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 5400 else f"{seconds / 3600:.0f} h ago"


def charts_html(status: JobStatus) -> str:
    """The loss chart; for a preference run (DPO, KTO), its reward margin and preference accuracy beside it."""
    loss = loss_chart(status.curve, CURVE_COLOURS)
    if not status.preference_curve:
        return loss
    preference = step_chart(status.preference_curve, "margin · accuracy", PREFERENCE_COLOURS)
    return (f"<div style='display:flex;flex-wrap:wrap;gap:16px'><div style='flex:1 1 560px'>{loss}</div>"
            f"<div style='flex:1 1 560px' id='job-preference-chart'>{preference}</div></div>")


def _adapter_of(store: Store, job: JobRecord) -> int | None:
    """The adapter a job made (training, mix) or measured (evaluation)."""
    return job.adapter_id if job.kind != "evaluate" else job.spec.get("adapter_id")


def verdict_html(store: Store, job: JobRecord) -> str:
    """The adapter's verdict for the top of its job; why there is none yet, when there is none."""
    adapter_id = _adapter_of(store, job)
    if adapter_id is None:
        return ""
    if job.kind == "train" and job.spec.get("objective") in PREFERENCE_OBJECTIVES:
        return ("<div id='job-verdict'>A preference run is judged by its reward margin and preference accuracy (the chart "
                "beside the loss), not by an evaluation against its base: try it in Chat or Compare.</div>")
    verdict = verdict_for(store, adapter_id)
    if verdict:
        forgot = verdict.forgetting and (verdict.forgetting.lost or verdict.forgetting.kept_changed)
        style = "studio-ok" if verdict.kind == LEARNED and not forgot else "studio-warn"
        return f"<div class='{style}' id='job-verdict'><b>Verdict: {escape(verdict.kind)}.</b> {escape(str(verdict))}</div>"
    evaluations = [j for j in store.jobs() if j.kind == "evaluate" and j.spec.get("adapter_id") == adapter_id]
    if evaluations and evaluations[0].state == "failed":
        return (f"<div class='studio-warn' id='job-verdict'>No verdict: its evaluation failed ({escape(evaluations[0].error or '')}). "
                "The adapter is saved and usable; evaluate it again from the Compare tab.</div>")
    return "<div id='job-verdict'>Verdict: the adapter is being evaluated against its base (about a minute).</div>"


def build(settings: Settings, store: Store) -> JobsTab:
    table = gr.Dataframe(job_rows(store), headers=HEADERS, interactive=False, label="Jobs", elem_id="jobs-table")
    job = gr.Dropdown(job_choices(store), label="Job", info="Pick a job to follow.", elem_id="jobs-pick")
    progress = gr.HTML(elem_id="job-progress")
    curve = gr.HTML(label="Loss", elem_id="job-curve")
    with gr.Row():  # enabled only when they apply to the picked job
        cancel = gr.Button("Cancel", variant="stop", interactive=False, elem_id="job-cancel")
        resume = gr.Button("Resume", interactive=False, elem_id="job-resume")
        clone = gr.Button("Clone and edit", elem_id="job-clone")
        longer = gr.Button("Train longer (continue from this adapter)", elem_id="job-train-longer")
    log = gr.Textbox(label="Log (last lines)", info="What the job reports as it runs; the whole log is train.log in the job's folder.",
                     lines=10, max_lines=10, autoscroll=True, elem_id="job-log")
    with gr.Accordion("Workers", open=False):
        gr.Markdown("The processes that run jobs, one job at a time each. A worker that stopped in the middle of a job "
                    "(killed, or stopped with the studio) or is silent for more than half a minute is *lost*: its job is "
                    "resumed from its last checkpoint by another worker. One that ended idle is *stopped*.")
        workers = gr.Dataframe(worker_rows(store), headers=WORKER_HEADERS, interactive=False, elem_id="workers-table")
    timer = gr.Timer(REFRESH_SECONDS)

    @needs("view")  # a redraw: the job picker is refreshed at each page load, for every role
    def details(job_id):
        """Progress, loss chart, log tail, and which of Cancel and Resume apply."""
        if job_id is None:
            return "Pick a job to see its progress.", "", "", gr.update(interactive=False), gr.update(interactive=False)
        status = job_status(store, int(job_id))
        return (verdict_html(store, status.job) + progress_html(status), charts_html(status), log_tail(job_folder(settings, int(job_id)) / "train.log"),
                gr.update(interactive=can_cancel(status.job)), gr.update(interactive=can_resume(status.job)))

    def refresh(job_id, drawn):
        """Redraw the loss chart only when it changed: a redraw would close a point's tooltip."""
        text, chart, tail, cancellable, resumable = details(job_id)
        return (job_rows(store), worker_rows(store), gr.update(choices=job_choices(store)), text, chart if chart != drawn else gr.skip(),
                tail, cancellable, resumable, chart)

    drawn = gr.State(None)
    timer.tick(refresh, [job, drawn], [table, workers, job, progress, curve, log, cancel, resume, drawn])
    job.change(details, job, [progress, curve, log, cancel, resume]).then(None, js=SCROLL_LOG_DOWN)

    @shown_to_user
    def cancel_selected(job_id):
        if job_id is None:
            raise gr.Error("Pick a job first.")
        cancel_job(store, int(job_id))
        activity.record(store, signed_in(), "jobs", f"cancelled job {int(job_id)}")
        return details(job_id)

    @shown_to_user
    def resume_selected(job_id):
        if job_id is None:
            raise gr.Error("Pick a job first.")
        resume_job(store, int(job_id))
        activity.record(store, signed_in(), "jobs", f"resumed job {int(job_id)}")
        return details(job_id)

    @shown_to_user
    def train_longer(job_id):
        """Queue a run that continues from the chosen job's adapter with its settings, for as many steps again."""
        if job_id is None:
            raise gr.Error("Pick a job first.")
        chosen = store.job(int(job_id))
        adapter_id = _adapter_of(store, chosen)
        trained = store.job(store.adapter(adapter_id).job_id) if adapter_id else None
        if trained is None or trained.kind != "train":
            raise JobError("Train longer continues a trained adapter: pick a training job that finished with one.")
        adapter = store.adapter(adapter_id)
        new = submit_training(store, dataset_id=trained.dataset_id, base_model=trained.base_model, spec=train_longer_spec(adapter),
                              name=f"{adapter.name} longer", test_dataset_id=trained.test_dataset_id)
        activity.record(store, signed_in(), "train", f"queued job {new.id} '{new.name}' (Train longer)")
        return gr.update(choices=job_choices(store), value=new.id)

    longer.click(train_longer, job, job)
    cancel.click(cancel_selected, job, [progress, curve, log, cancel, resume])
    resume.click(resume_selected, job, [progress, curve, log, cancel, resume])
    return JobsTab(job, clone)
