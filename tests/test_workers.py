"""Many workers on a real Redis: the app is the store's single writer, jobs spread over the
workers, a killed worker's job resumes on another; the multi-GPU launch command."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import torch
from conftest import ROOT, free_port, quick_spec, running_studio, save_codewords
from test_jobs import wait_for

from jobs.control import submit_training
from jobs.launch import child_command
from jobs.queue import use_queue_of
from jobs.remote_store import RemoteStore, start_store_server
from jobs.status import worker_statuses
from studio.errors import JobError, NotFound, SpecError
from studio.settings import load_settings
from studio.store import FINISHED, JobRecord, Store
from studio.store.authors import acting_as
from studio.train.recipe import checkpoint_step, latest_checkpoint
from studio.train.spec import TrainSpec


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server of this test's own on 127.0.0.1."""
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    wait_for(lambda: _pings(client), seconds=20)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.ConnectionError:
        return False


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    """A worker with one core's worth of threads: two on a 2-core machine must not fight over both."""
    return subprocess.Popen([sys.executable, "-m", "jobs.worker"], cwd=ROOT, env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def processes_under(pid: int) -> list[int]:
    try:
        children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    except FileNotFoundError:
        return []
    return [pid] + [p for child in children for p in processes_under(int(child))]


def open_files(pid: int) -> set[str]:
    try:
        return {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    except (FileNotFoundError, PermissionError):
        return set()


def test_two_workers_on_redis_share_two_jobs_and_resume_a_killed_workers_job(studio_env, redis_url, codeword_file, tokenizer, tmp_path):
    env = {**studio_env, "STUDIO_QUEUE": redis_url}
    settings = load_settings(env)
    store = Store(settings.db_path)
    use_queue_of(settings)
    dataset = save_codewords(settings, store, codeword_file, tokenizer, validation_fraction=0.0)
    with running_studio(env, tmp_path / "studio.log", "--no-worker"):
        workers = [start_worker(env, tmp_path / f"worker{n}.log") for n in (1, 2)]
        try:
            wait_for(lambda: len(store.workers()) == 2, seconds=60)  # both ready before the jobs come
            short = submit_training(store, dataset_id=dataset.id, base_model="bundled", spec=quick_spec(max_steps=2, save_steps=2),
                                    name="short")
            with acting_as("ana"):  # what the job makes on a worker, through Redis, is ana's
                long = submit_training(store, dataset_id=dataset.id, base_model="bundled", spec=quick_spec(max_steps=6, save_steps=2),
                                       name="long")
            work = settings.home / "jobs" / str(long.id)
            files_seen = set()

            def past_a_checkpoint():
                for worker in workers:
                    for pid in processes_under(worker.pid):
                        files_seen.update(open_files(pid))
                checkpoint = latest_checkpoint(work)
                return checkpoint is not None and store.job(long.id).step > checkpoint_step(checkpoint)

            wait_for(past_a_checkpoint, seconds=300)
            killed = next(w for w in workers if store.job(long.id).worker.endswith(f":{w.pid}"))
            ran_long_first = store.job(long.id).worker
            killed.kill()  # SIGKILL: no clean-up; its training child dies with it
            killed.wait()
            resumed_from = checkpoint_step(latest_checkpoint(work))
            before_crash = {m["step"]: m["loss"] for m in store.metrics(long.id)}
            survivor = next(w for w in workers if w is not killed)
            wait_for(lambda: all(store.job(j.id).state in FINISHED for j in [short, long]), seconds=300)
            files_seen.update(f for pid in processes_under(survivor.pid) for f in open_files(pid))
        finally:
            for worker in workers:
                worker.terminate()
                worker.wait(timeout=30)
    short, long = store.job(short.id), store.job(long.id)
    assert [j.state for j in [short, long]] == ["succeeded"] * 2, [j.error for j in [short, long]]
    for job in [short, long]:  # every step's metrics reached the store through Redis
        assert [m["step"] for m in store.metrics(job.id)] == list(range(1, job.total_steps + 1))
        assert all(m["loss"] is not None and m["tokens_per_second"] for m in store.metrics(job.id))
    assert long.worker.endswith(f":{survivor.pid}") and ran_long_first.endswith(f":{killed.pid}")  # both workers took work
    log = (work / "train.log").read_text()
    assert f"Resuming from {work / 'checkpoints' / f'checkpoint-{resumed_from}'}" in log
    assert store.adapter(long.adapter_id).summary["steps"] == 6
    assert (long.created_by, store.adapter(long.adapter_id).created_by, short.created_by) == ("ana", "ana", "unknown")
    # The resumed run continued where it stopped: the steps it redid after the checkpoint have the
    # losses they had before the crash (same weights, data order and random state).
    losses = {m["step"]: m["loss"] for m in store.metrics(long.id)}
    redone = [step for step in before_crash if step > resumed_from]
    assert redone and [round(losses[s], 3) for s in redone] == [round(before_crash[s], 3) for s in redone]
    # The workers never opened the database: the app wrote everything they reported.
    assert files_seen and not any("studio.db" in f for f in files_seen)
    states = {w.id: w.state for w in worker_statuses(store)}
    assert states[f"{os.uname().nodename}:{survivor.pid}"] == "stopped"


def test_remote_store_calls_run_in_the_app_and_its_errors_come_back(store, redis_url):
    start_store_server(store, redis_url)
    remote = RemoteStore(redis_url)
    job = remote.add_job(kind="train", name="remote", dataset_id=None, base_model="bundled", spec="{}")
    assert isinstance(job, JobRecord) and store.job(job.id).name == "remote"
    remote.update_job(job.id, step=3)  # recorded without waiting; the next answered call comes after it
    assert remote.job(job.id).step == 3
    with pytest.raises(NotFound, match="There is no job 999"):
        remote.job(999)
    assert remote.claim_job(job.id, "w1", time.time()) and not remote.claim_job(job.id, "w2", time.time())
    with pytest.raises(AttributeError, match="cannot call store.add_vote"):
        remote.add_vote


def test_of_two_workers_only_one_claims_a_job_and_only_one_interrupts_an_orphan(store):
    job = store.add_job(kind="train", name="j", dataset_id=None, base_model="bundled", spec="{}")
    assert store.claim_job(job.id, "a:1", 100.0) and not store.claim_job(job.id, "b:2", 101.0)
    assert not store.interrupt_job(job.id, 99.0, "gone")  # its worker reported since that heartbeat was read
    assert store.interrupt_job(job.id, 100.0, "gone") and not store.interrupt_job(job.id, 100.0, "gone")
    assert store.job(job.id).state == "interrupted" and store.claim_job(job.id, "b:2", 102.0)


def test_the_workers_view_calls_a_silent_worker_lost(store):
    store.record_worker("h:1", host="h", pid=1, device="cpu (2 cores)", state="busy", job_id=7, heartbeat=time.time(), started="1")
    store.record_worker("h:2", host="h", pid=2, device="cuda 0: H100", state="busy", job_id=8, heartbeat=time.time() - 120, started="2")
    store.record_worker("h:3", host="h", pid=3, device="cpu", state="stopped", job_id=None, heartbeat=time.time() - 999, started="3")
    store.record_worker("h:4", host="h", pid=4, device="cpu", state="busy", job_id=9, heartbeat=time.time() - 2 * 86400, started="4")
    assert [(w.id, w.state, w.job_id) for w in worker_statuses(store)] == [("h:1", "busy", 7), ("h:2", "lost", None), ("h:3", "stopped", None)]


def job_asking(gpus: int, multi_gpu: str = "ddp", kind: str = "train") -> JobRecord:
    spec = {"gpus": gpus, "multi_gpu": multi_gpu}
    return JobRecord(id=5, kind=kind, state="queued", name="n", dataset_id=1, base_model="bundled", spec=spec, task_id=None,
                     cancel_requested=0, worker=None, heartbeat=None, step=0, total_steps=0, error=None, adapter_id=None,
                     created="", started=None, finished=None, sweep=None)


def test_a_multi_gpu_job_starts_through_accelerate_launch():
    assert child_command(job_asking(1)) == [sys.executable, "-m", "jobs.run", "--job-id", "5"]
    ddp = child_command(job_asking(2), gpus_here=4)
    assert ddp[:3] == [sys.executable, "-m", "accelerate.commands.launch"] and ddp[-4:] == ["-m", "jobs.run", "--job-id", "5"]
    assert ddp[ddp.index("--num_processes") + 1] == "2" and "--multi_gpu" in ddp and "--use_fsdp" not in ddp
    fsdp = child_command(job_asking(4, "fsdp"), gpus_here=4)
    assert "--use_fsdp" in fsdp and "--multi_gpu" not in fsdp and fsdp[fsdp.index("--fsdp_use_orig_params") + 1] == "true"
    assert child_command(job_asking(2, kind="merge"), gpus_here=0)[-4:] == ["-m", "jobs.run", "--job-id", "5"]
    with pytest.raises(JobError, match=r"asks for 2 GPUs, but this worker sees 1.*--gpu 0,1"):
        child_command(job_asking(2), gpus_here=1)
    with pytest.raises(SpecError, match="QLoRA trains on several GPUs with 'ddp'"):
        TrainSpec.from_dict({"method": "qlora", "gpus": 2, "multi_gpu": "fsdp"})


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_a_two_gpu_job_trains_through_accelerate(settings, store, codeword_file, tokenizer, tmp_path):
    from jobs.run import job_folder

    dataset = save_codewords(settings, store, codeword_file, tokenizer, validation_fraction=0.0)
    job = store.add_job(kind="train", name="ddp", dataset_id=dataset.id, base_model="bundled",
                        spec=quick_spec(gpus=2, max_steps=4).to_json())
    folder = job_folder(settings, job.id)
    folder.mkdir(parents=True)
    env = {**os.environ, "STUDIO_HOME": str(settings.home), "STUDIO_MODELS_DIR": str(settings.models_dir)}
    done = subprocess.run(child_command(store.job(job.id)), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job = store.job(job.id)
    assert job.state == "succeeded" and store.adapter(job.adapter_id).summary["steps"] == 6


def test_a_job_in_two_processes_records_once_from_the_first(settings, store, codeword_file, tokenizer):
    """The multi-GPU path on CPU: two processes (torchrun, gloo) train one job as DDP does; the first
    alone records to the store and saves the adapter, and both finish."""
    dataset = save_codewords(settings, store, codeword_file, tokenizer, validation_fraction=0.0)
    job = store.add_job(kind="train", name="two-processes", dataset_id=dataset.id, base_model="bundled",
                        spec=quick_spec(gpus=2, max_steps=2).to_json())
    env = {**os.environ, "STUDIO_HOME": str(settings.home), "STUDIO_MODELS_DIR": str(settings.models_dir), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "jobs.run", "--job-id", str(job.id)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    job = store.job(job.id)
    assert job.state == "succeeded" and len(store.adapters()) == 1
    assert [m["step"] for m in store.metrics(job.id)] == [1, 2] and done.stdout.count("Job 1 succeeded") == 1
