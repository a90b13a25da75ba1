"""What the running studio serves by URL: the files it made for this page, and nothing else."""

import stat

import httpx
from conftest import ROOT


def test_gradio_serves_uploads_but_no_file_outside_the_studios_own_web_folder(studio_without_worker, settings, models_dir):
    url = studio_without_worker
    upload = httpx.post(f"{url}gradio_api/upload", files={"files": ("rows.jsonl", b'{"instruction": "a", "output": "b"}\n')})
    uploaded = upload.json()[0]
    assert "/adapter-studio-web-" in uploaded, uploaded
    served = httpx.get(f"{url}gradio_api/file={uploaded}")
    assert served.status_code == 200 and b'"instruction"' in served.content  # the route works: what follows is refused, not broken

    for path in (settings.db_path, settings.home / "queue.db", models_dir / "SmolLM2-135M-Instruct" / "config.json",
                 ROOT / "README.md", "/etc/passwd"):
        response = httpx.get(f"{url}gradio_api/file={path}")
        assert response.status_code in (403, 404), (path, response.status_code)


def test_the_queue_file_is_private_to_the_studio(settings):
    from jobs.queue import use_queue_of

    use_queue_of(settings)
    assert stat.S_IMODE((settings.home / "queue.db").stat().st_mode) == 0o600
