"""A studio a new user can trust, in a real Chromium on a real studio with a login: re-saving rows
never changes a saved dataset or an adapter's split, a reload shows the store's truth, a stop
leaves no uploads on disk, and nothing leaves the machine."""

import re
from pathlib import Path

import httpx
from conftest import FIXTURES, pick, running_studio, save_codewords, set_slider

from studio.data.held_out import adapter_dataset, validation_records
from studio.data.instructions import inspect_file, save_dataset

LOGIN = {"username": "me", "password": "secret"}


def sign_in(page, url):
    page.goto(url)
    page.get_by_label("username").fill(LOGIN["username"])
    page.get_by_label("password").fill(LOGIN["password"])
    page.get_by_role("button", name="Login").click()
    page.locator("#logout").wait_for(timeout=60_000)


def test_resaving_reloading_and_stopping_leave_store_and_disk_as_they_should(settings, store, studio_env, tokenizer, codeword_file,
                                                                              page, tmp_path):
    original = save_codewords(settings, store, codeword_file, tokenizer, validation_fraction=0.25)
    trained = store.add_job(kind="train", name="codewords-lora", dataset_id=original.id, base_model="bundled", spec="{}")
    store.update_job(trained.id, state="succeeded")
    adapter = store.add_adapter(name="codewords-lora", job_id=trained.id, path=tmp_path / "adapter", base_model="bundled",
                                dataset_hash=original.content_hash, method="lora", spec={}, summary={}, status="complete", parent_id=None)
    held_out = validation_records(original)
    waiting = store.add_job(kind="train", name="waiting", dataset_id=original.id, base_model="bundled", spec="{}")
    log = tmp_path / "studio.log"
    with running_studio({**studio_env, "STUDIO_AUTH": f"{LOGIN['username']}:{LOGIN['password']}"}, log, "--no-worker") as url:
        sign_in(page, url)

        # A reload shows what was saved and finished elsewhere since the page was opened.
        save_dataset(store, settings.datasets_dir, inspect_file(FIXTURES / "alpaca.jsonl", tokenizer, max_bytes=2**20), name="added-later")
        page.get_by_role("tab", name="Jobs").click()
        pick(page, "jobs-pick", f"#{waiting.id} waiting (queued)")
        store.update_job(waiting.id, state="succeeded")
        page.get_by_role("tab", name="Data").click()
        page.get_by_role("tab", name="Jobs").click()
        page.wait_for_function(f"document.querySelector('#jobs-pick input').value == '#{waiting.id} waiting (succeeded)'", timeout=10_000)
        page.reload()
        page.wait_for_function("document.querySelector('#data-datasets')?.innerText.includes('added-later')", timeout=30_000)

        # The adapter's rows saved again under another name and split: a new dataset; the old one and its split stay.
        page.locator("#data-upload input[type=file]").set_input_files(str(codeword_file))
        page.locator("#data-status").get_by_text("20 of 20 rows will be used").wait_for(timeout=60_000)
        page.locator("#data-name input, #data-name textarea").first.fill("codewords-v2")
        set_slider(page, "#data-validation", "10")
        page.locator("#data-save").click()
        saved = page.locator("#data-saved")
        saved.get_by_text("Saved as 'codewords-v2'").wait_for()
        assert f"also saved as '{original.name}' (dataset {original.id}), which stays as it was" in saved.inner_text()
        page.locator("#data-save").click()
        saved.get_by_text("already saved as 'codewords-v2'").wait_for()
        assert store.dataset(original.id) == original and adapter_dataset(store, adapter) == original
        assert validation_records(original) == held_out
        assert [(d.name, round(d.validation_fraction, 2)) for d in store.datasets()][:2] == [("codewords-v2", 0.1), ("added-later", 0.05)]

        # Clearing the file clears what was shown for it and what Save would save.
        page.locator("#data-upload button[aria-label='Clear']").click()
        page.wait_for_function("document.querySelector('#data-save').disabled", timeout=10_000)
        assert page.locator("#data-status").inner_text().strip() == "" and page.locator("#data-saved").inner_text().strip() == ""

        page.locator("#logout").click()
        page.get_by_role("button", name="Login").wait_for(timeout=30_000)

        with httpx.Client(base_url=url) as client:
            assert client.post("login", data=LOGIN).status_code == 200
            assert client.get("config").json()["analytics_enabled"] is False
            uploaded = client.post("gradio_api/upload", files={"files": ("private.jsonl", b'{"instruction": "a", "output": "b"}\n')}).json()[0]
            web_folder = re.match(r"(.*/adapter-studio-web-[^/]+)/", uploaded).group(1)
            answers = [client.post("login", data={**LOGIN, "password": "guess"}).status_code for _ in range(5)]
            refused = client.post("login", data=LOGIN)
        assert answers == [400] * 5 and refused.status_code == 429 and "Too many wrong passwords" in refused.json()["detail"]
        assert Path(uploaded).exists()
    # running_studio sent SIGTERM, as `kill` and service managers do
    assert not Path(web_folder).exists()
    assert "share=True" not in log.read_text()
