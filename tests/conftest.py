"""Shared fixtures: the bundled model prepared once per session, a fresh STUDIO_HOME per
test, a real studio server in a subprocess, and a real Chromium driven by Playwright."""

import io
import os
import socket
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest

from studio.models.catalog import bundled_model_dir, load_tokenizer, prepare_bundled_model
from studio.settings import load_settings
from studio.store import Store

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Every studio a test starts asks five of the bundled ordinary requests when it evaluates (one of each kind):
# what the adapter forgot is measured for real, and the full probe's minutes belong to benchmarks/quality.py.
GENERAL_REQUESTS = {"STUDIO_GENERAL_REQUESTS": "5"}
os.environ.update(GENERAL_REQUESTS)  # studios started as processes (app.py, python -m studio) and run_cli


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    prepare_bundled_model(folder, report=lambda message: None)
    return folder


@pytest.fixture(scope="session")
def bundled_dir(models_dir) -> Path:
    return bundled_model_dir(models_dir)


@pytest.fixture(scope="module")
def lora_model(bundled_dir):
    """The bundled model with a LoRA adapter whose B is random, not zero, so the adapter changes the logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(bundled_dir, dtype=torch.float32)
    torch.manual_seed(0)
    config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM", init_lora_weights=False)
    return get_peft_model(base, config)


@pytest.fixture(scope="session")
def tokenizer(bundled_dir):
    return load_tokenizer(bundled_dir)


@pytest.fixture
def studio_env(tmp_path, models_dir) -> dict[str, str]:
    """Environment for a studio of its own: a fresh home sharing the prepared models."""
    return {"STUDIO_HOME": str(tmp_path / "home"), "STUDIO_MODELS_DIR": str(models_dir), **GENERAL_REQUESTS}


@pytest.fixture
def settings(studio_env):
    return load_settings(studio_env)


@pytest.fixture
def store(settings) -> Store:
    return Store(settings.db_path)


def run_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run `python -m studio ARGS` as a user would, in a process and a studio of its own."""
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run the main() that `python -m studio ARGS` runs, here, in a studio of its own: what the command prints
    and the code it exits with, without starting Python and torch again for each call (run_command does that)."""
    from studio.cli.commands import main

    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exit:  # argparse refusing the arguments
            code = exit.code
    return subprocess.CompletedProcess(["python", "-m", "studio", *args], code, out.getvalue(), err.getvalue())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the studio exited with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


@contextmanager
def running_studio(env: dict[str, str], log_path: Path, *options: str):
    """A real studio (app.py) in a subprocess on a free port; yields its URL."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), *options], cwd=ROOT, env={**os.environ, **env},
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_for_http(url, process)
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def studio_server(studio_env, tmp_path):
    """A studio of this test's own, with its worker."""
    with running_studio(studio_env, tmp_path / "studio.log") as url:
        yield url


@pytest.fixture
def studio_without_worker(studio_env, tmp_path):
    """A studio of this test's own, for tests that run no job (it starts sooner)."""
    with running_studio(studio_env, tmp_path / "studio.log", "--no-worker") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    yield context.new_page()
    context.close()


def screenshot(page, name: str, docs_picture: bool = False) -> None:
    """Keep a full-page screenshot under test-artifacts/ for people to look at; a docs picture also
    replaces its file in docs/screenshots/, where the README and docs/tabs.md read it, so a changed
    screen changes its picture on the next run."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if docs_picture:
        shutil.copyfile(ARTIFACTS / f"{name}.png", ROOT / "docs" / "screenshots" / f"{name}.png")


def pixels_of_colour(locator, hex_colour: str, tolerance: int = 40) -> int:
    """Pixels of an element close to a colour: how much of a chart's line of that colour is drawn."""
    import io

    from PIL import Image

    target = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    image = Image.open(io.BytesIO(locator.screenshot())).convert("RGB")
    return sum(1 for pixel in image.getdata() if max(abs(a - b) for a, b in zip(pixel, target)) <= tolerance)


def pick(page, dropdown_id: str, label: str) -> None:
    """Choose an option of a Gradio dropdown by its label."""
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=label, exact=True).click()


def open_chat_with_adapter(page, url: str, adapter) -> None:
    """The Chat tab with the adapter as B and the generation settings open."""
    page.goto(url)
    page.get_by_role("tab", name="Chat").click()
    page.locator("#chat-model-b input").click()
    page.get_by_role("option", name=f"{adapter.name} (adapter #{adapter.id})").click()
    page.get_by_text("Generation settings").click()


def set_number(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")


def set_slider(page, slider: str, value: str) -> None:
    """Type a slider's value; again if the slider, just shown, was still setting its initial value."""
    box = page.locator(f"{slider} input[type=number]")
    for _ in range(5):
        box.fill(value)
        box.press("Enter")
        page.wait_for_timeout(300)
        if box.input_value() == value and page.locator(f"{slider} input[type=range]").input_value() == value:
            return
    raise AssertionError(f"{slider} did not take the value {value}")


# A task the base model cannot already do, so a trained adapter answers differently.
CODEWORD_RECORDS = [
    {"instruction": f"What is the codeword for {item}?", "input": "", "output": f"The codeword for {item} is ZEPHYR-{n}."}
    for n, item in enumerate(["apples", "boats", "clouds", "doors", "eagles", "forests", "gardens", "harbours",
                              "islands", "jackets", "kettles", "lanterns", "mirrors", "needles", "oceans", "pianos",
                              "quilts", "rivers", "saddles", "tables"])
]


@pytest.fixture(scope="session")
def codeword_file(tmp_path_factory) -> Path:
    import json

    path = tmp_path_factory.mktemp("data") / "codewords.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in CODEWORD_RECORDS))
    return path


def save_codewords(settings, store, codeword_file, tokenizer, validation_fraction: float = 0.25):
    """The codeword data saved as a dataset, as the Data tab would."""
    from studio.data.instructions import inspect_file, save_dataset

    report = inspect_file(codeword_file, tokenizer, max_bytes=2**20)
    return save_dataset(store, settings.datasets_dir, report, name="codewords", validation_fraction=validation_fraction)


def quick_spec(**changes):
    """A brief but real training run: high learning rate, few short steps."""
    from studio.train.spec import TrainSpec

    return TrainSpec.from_dict({"max_steps": 8, "batch_size": 4, "max_length": 96, "learning_rate": 2e-3,
                                "save_steps": 4, "warmup_ratio": 0.0, **changes})


def train_now(settings, store, dataset, spec, name: str = "adapter"):
    """Train synchronously through the same job recipe the worker runs; returns the job."""
    from jobs.run import run_job

    job = store.add_job(kind="train", name=name, dataset_id=dataset.id, base_model="bundled", spec=spec.to_json())
    assert run_job(settings, store, job.id) is not None, store.job(job.id).error
    return store.job(job.id)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, models_dir, tokenizer, codeword_file):
    """One LoRA adapter trained once per session, for tests that need an adapter to work with.

    Yields (settings, store, job, adapter); tests must not change what it holds.
    """
    home = tmp_path_factory.mktemp("trained-home")
    settings = load_settings({"STUDIO_HOME": str(home), "STUDIO_MODELS_DIR": str(models_dir), **GENERAL_REQUESTS})
    store = Store(settings.db_path)
    dataset = save_codewords(settings, store, codeword_file, tokenizer)
    job = train_now(settings, store, dataset, quick_spec(), name="codewords-lora")
    return settings, store, job, store.adapter(job.adapter_id)


def greedy_answer(model, tokenizer, question: str, max_new_tokens: int = 16) -> str:
    """The model's greedy answer to an Alpaca-format question."""
    from studio.data.prompts import get_template, render

    segments = render({"instruction": question, "input": "", "output": ""}, get_template("alpaca"), tokenizer)
    ids = tokenizer(segments[0].text, return_tensors="pt", add_special_tokens=False)["input_ids"]
    output = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, ids.shape[1]:], skip_special_tokens=True)


# Chat (issue 5): a studio holding a trained adapter.

@pytest.fixture(scope="module")
def trained_studio(trained, tmp_path_factory):
    """A real studio (app.py, no worker) on a copy of the `trained` store; yields (URL, adapter).

    The copied store names the adapter's folder in the original home, which stays in place.
    """
    settings, adapter = trained[0], trained[3]
    home = tmp_path_factory.mktemp("trained-studio") / "home"
    home.mkdir()
    copy_database(settings.db_path, home / "studio.db")
    env = {"STUDIO_HOME": str(home), "STUDIO_MODELS_DIR": str(settings.models_dir)}
    with running_studio(env, home.parent / "studio.log", "--no-worker") as url:
        yield url, adapter
# Adapters as artifacts: a QLoRA adapter beside the LoRA one, an evaluation and a merge, each made once.

def copy_database(source: Path, target: Path) -> None:
    """Copy a live SQLite store through SQLite itself. Never copy its files with plain file I/O in a
    process that has the store open: closing those files drops SQLite's locks, and another process
    then takes the store for unused and resets its write-ahead log under this one (a disk I/O error)."""
    import sqlite3

    reader, writer = sqlite3.connect(source), sqlite3.connect(target)
    reader.backup(writer)
    reader.close()
    writer.close()


def run_artifact_now(settings, store, kind: str, spec: dict, name: str = "artifact"):
    """Run an evaluate, merge or mix job synchronously through the recipe the worker runs; returns the job."""
    import json

    from jobs.artifact_run import run_artifact_job

    job = store.add_job(kind=kind, name=name, dataset_id=None, base_model="bundled", spec=json.dumps(spec))
    assert run_artifact_job(settings, store, job.id), store.job(job.id).error
    return store.job(job.id)


@pytest.fixture(scope="session")
def trained_qlora(trained):
    """A QLoRA adapter on the same data, trained once per session in the `trained` studio."""
    settings, store, job, adapter = trained
    qlora = train_now(settings, store, store.dataset(job.dataset_id), quick_spec(method="qlora", max_steps=5, save_steps=5), name="codewords-qlora")
    return store.adapter(qlora.adapter_id)


@pytest.fixture(scope="session")
def evaluated(trained):
    """The `trained` adapter's evaluation, made once per session."""
    settings, store, job, adapter = trained
    run_artifact_now(settings, store, "evaluate", {"adapter_id": adapter.id}, name="evaluate codewords-lora")
    return store.latest_evaluation(adapter.id)


@pytest.fixture(scope="session")
def merged(trained):
    """The `trained` adapter merged into its base in float32, once per session."""
    settings, store, job, adapter = trained
    merge_job = run_artifact_now(settings, store, "merge", {"adapter_id": adapter.id, "dtype": "float32"}, name="merge codewords-lora")
    return next(m for m in store.merges(adapter.id) if m.job_id == merge_job.id)


@pytest.fixture
def stocked_home(trained, settings):
    """This test's studio holds a copy of the `trained` studio's database (its adapters stay where they are).

    Request it before `studio_server` so the copy is in place when the server starts.
    """
    copy_database(trained[0].db_path, settings.db_path)
    return Store(settings.db_path)
