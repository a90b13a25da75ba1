"""What the Jobs tab shows of a job's life: an interruption stays in its history, a worker that
ended mid-job is lost, and Cancel and Resume apply only where they can act."""

import argparse
import json
import time

from jobs.control import can_cancel, can_resume, cancel_job
from jobs.queue import use_queue_of
from jobs.tasks import WORKER_ID, resume_orphans
from jobs.worker import stopped_state
from studio.cli.commands import jobs_command
from studio.ui.jobs_tab import job_rows


def running_job(store, worker: str, step: int = 7):
    job = store.add_job(kind="train", name="long", dataset_id=None, base_model="bundled", spec="{}")
    store.claim_job(job.id, worker, time.time() - 600)  # its heartbeat stopped ten minutes ago
    store.update_job(job.id, step=step, started="2026-01-01T00:00:00+00:00")
    return store.job(job.id)


def test_a_job_whose_worker_vanished_keeps_the_interruption_in_its_history(settings, store, studio_env, monkeypatch, capsys):
    use_queue_of(settings)  # resuming puts the job back on this studio's queue
    job = running_job(store, "elsewhere:4242")
    assert resume_orphans(store) == [job.id]
    job = store.job(job.id)
    assert job.state == "queued" and job.error is None  # resumed: the state alone no longer tells
    assert job.notes == "interrupted at step 7: its worker elsewhere:4242 stopped (the studio or the worker was stopped or killed)"
    store.note_job(job.id, "resumed at step 4, its last checkpoint")
    row = next(r for r in job_rows(store) if r[0] == job.id)
    assert row[-1] == ("interrupted at step 7: its worker elsewhere:4242 stopped (the studio or the worker was stopped or killed); "
                       "resumed at step 4, its last checkpoint")
    for name, value in studio_env.items():
        monkeypatch.setenv(name, value)
    jobs_command(argparse.Namespace(json=True))  # the CLI lists the same history
    assert json.loads(capsys.readouterr().out)[0]["notes"] == job_rows(store)[0][-1].split("; ")


def test_a_worker_that_ends_in_the_middle_of_its_job_is_lost_and_an_idle_one_stopped(store):
    assert stopped_state(store) == "stopped"
    other = running_job(store, "elsewhere:1")
    assert stopped_state(store) == "stopped"  # another worker's job is not this one's
    store.update_job(other.id, state="succeeded")
    running_job(store, WORKER_ID)
    assert stopped_state(store) == "lost"


def test_cancel_and_resume_apply_only_to_jobs_they_can_act_on(settings, store):
    use_queue_of(settings)
    job = store.add_job(kind="train", name="j", dataset_id=None, base_model="bundled", spec="{}")
    assert (can_cancel(job), can_resume(job)) == (True, False)  # queued
    store.claim_job(job.id, "w:1", time.time())
    assert (can_cancel(store.job(job.id)), can_resume(store.job(job.id))) == (True, False)  # running
    assert not can_cancel(cancel_job(store, job.id))  # cancel asked for once already
    store.update_job(job.id, state="interrupted", cancel_requested=0)
    assert (can_cancel(store.job(job.id)), can_resume(store.job(job.id))) == (True, True)
    for state in ("succeeded", "failed", "cancelled"):
        store.update_job(job.id, state=state)
        assert (can_cancel(store.job(job.id)), can_resume(store.job(job.id))) == (False, False)
