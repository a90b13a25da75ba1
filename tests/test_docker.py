"""Docker cannot run here, so the image's own entry command and settings are run on the host."""

import json
import os
import re
import subprocess
import sys

import yaml
from conftest import ROOT, free_port, wait_for_http


def image_command_and_settings() -> tuple[list[str], dict[str, str]]:
    text = (ROOT / "Dockerfile").read_text()
    command = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    settings = dict(pair.split("=", 1) for line in re.findall(r"^ENV (STUDIO_.*)$", text, re.M) for pair in line.split())
    return command, settings


def test_the_images_command_starts_the_studio_listening_on_all_addresses(tmp_path, models_dir):
    command, settings = image_command_and_settings()
    assert settings == {"STUDIO_HOME": "/data", "STUDIO_HOST": "0.0.0.0", "STUDIO_PORT": "7860"}
    port = free_port()
    env = {**os.environ, **settings, "STUDIO_HOME": str(tmp_path / "data"), "STUDIO_PORT": str(port),
           "STUDIO_MODELS_DIR": str(models_dir)}
    env.pop("STUDIO_AUTH", None)
    with open(tmp_path / "studio.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_http(f"http://127.0.0.1:{port}/", process)
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert "listens on 0.0.0.0 with no login" in (tmp_path / "studio.log").read_text()


def test_the_compose_services_run_commands_that_exist():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["studio"]["environment"]["STUDIO_QUEUE"] == "redis://redis:6379/0"
    studio = services["studio"]["command"]
    assert subprocess.run([sys.executable, *studio[1:], "--help"], cwd=ROOT, capture_output=True).returncode == 0
    for name in ("worker-0", "worker-1"):
        assert services[name]["command"][1:] == ["-m", "jobs.worker"]
