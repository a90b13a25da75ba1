"""Jobs on the real Huey queue with a real worker process: order, cancel, and the embedded worker's lifetime
(a killed worker's job resuming from its checkpoint: tests/test_workers.py)."""

import os
import subprocess
import sys
import time

import pytest
from conftest import ROOT, quick_spec, save_codewords
from peft import PeftModel
from transformers import AutoModelForCausalLM

from jobs.control import cancel_job, submit_training
from studio.store import FINISHED


@pytest.fixture
def env(studio_env):
    return {**os.environ, **studio_env}


def start_worker(env, tmp_path, name="worker"):
    log = open(tmp_path / f"{name}.log", "a")
    return subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def worker(env, tmp_path):
    process = start_worker(env, tmp_path)
    yield process
    process.terminate()
    process.wait(timeout=30)


def wait_for(condition, seconds=240, every=0.5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def submit(settings, store, dataset, name, **spec):
    return submit_training(store, dataset_id=dataset.id, base_model="bundled", spec=quick_spec(**spec), name=name)


@pytest.fixture(autouse=True)
def queue(settings):
    """This test process enqueues on the same queue as the workers it starts."""
    from jobs.queue import use_queue_of

    use_queue_of(settings)


@pytest.fixture
def dataset(settings, store, codeword_file, tokenizer):
    return save_codewords(settings, store, codeword_file, tokenizer, validation_fraction=0.0)


def test_queued_jobs_run_one_at_a_time_in_order_and_a_running_one_can_be_cancelled(settings, store, dataset, worker, bundled_dir):
    first = submit(settings, store, dataset, "long", max_steps=500, save_steps=100)
    second = submit(settings, store, dataset, "second", max_steps=2)
    assert (store.queue_position(first.id), store.queue_position(second.id)) == (1, 2)
    wait_for(lambda: store.job(first.id).step >= 2)
    assert store.job(second.id).state == "queued"  # one job at a time
    cancel_job(store, first.id)
    wait_for(lambda: store.job(second.id).state in FINISHED)
    first, second = store.job(first.id), store.job(second.id)
    assert (first.state, second.state) == ("cancelled", "succeeded") and first.step < 500
    assert first.finished <= second.started
    assert [m["step"] for m in store.metrics(second.id)] == [1, 2]
    assert store.adapter(second.adapter_id).status == "complete"
    # The cancelled job keeps what it learned as a loadable adapter, marked cancelled.
    stopped = store.adapter(first.adapter_id)
    assert stopped.status == "cancelled" and "cancelled" in (stopped.path / "README.md").read_text()
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bundled_dir), stopped.path)


def test_a_queued_job_can_be_cancelled_before_it_runs(settings, store, dataset):
    job = submit(settings, store, dataset, "never")
    assert cancel_job(store, job.id).state == "cancelled" and store.queue_position(job.id) is None


def test_the_embedded_worker_stops_with_the_studio_even_when_it_is_killed(env, tmp_path):
    from conftest import free_port, wait_for_http

    port = free_port()
    studio = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=open(tmp_path / "studio.log", "w"), stderr=subprocess.STDOUT)
    wait_for_http(f"http://127.0.0.1:{port}/", studio)
    children = wait_for(lambda: open(f"/proc/{studio.pid}/task/{studio.pid}/children").read().split(), seconds=30)
    worker = int(children[0])
    assert b"jobs.worker" in open(f"/proc/{worker}/cmdline", "rb").read()
    studio.kill()  # SIGKILL: the studio runs no clean-up of its own
    studio.wait()
    wait_for(lambda: not os.path.exists(f"/proc/{worker}") or "Z" in open(f"/proc/{worker}/stat").read().split()[2], seconds=30)
