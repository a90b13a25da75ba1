"""Shared fixtures: the bundled model prepared once per session, a fresh STUDIO_HOME per
test, a real studio server in a subprocess, and a real Chromium driven by Playwright."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from studio.models import bundled_model_dir, load_tokenizer, prepare_bundled_model
from studio.settings import load_settings
from studio.store import Store

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    prepare_bundled_model(folder, report=lambda message: None)
    return folder


@pytest.fixture(scope="session")
def bundled_dir(models_dir) -> Path:
    return bundled_model_dir(models_dir)


@pytest.fixture(scope="session")
def tokenizer(bundled_dir):
    return load_tokenizer(bundled_dir)


@pytest.fixture
def studio_env(tmp_path, models_dir) -> dict[str, str]:
    """Environment for a studio of its own: a fresh home sharing the prepared models."""
    return {"STUDIO_HOME": str(tmp_path / "home"), "STUDIO_MODELS_DIR": str(models_dir)}


@pytest.fixture
def settings(studio_env):
    return load_settings(studio_env)


@pytest.fixture
def store(settings) -> Store:
    return Store(settings.db_path)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """Run `python -m studio ARGS` as a user would, in a studio of its own."""
    return subprocess.run([sys.executable, "-m", "studio", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600)


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


@pytest.fixture
def studio_server(studio_env, tmp_path):
    """A real studio (app.py) in a subprocess on a free port; yields its URL."""
    port = free_port()
    log = open(tmp_path / "studio.log", "w")
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env={**os.environ, **studio_env},
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


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


def screenshot(page, name: str) -> None:
    """Keep a full-page screenshot under test-artifacts/ for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
