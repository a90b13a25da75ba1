"""A new user's whole journey in a real Chromium, on a studio with its own worker: upload a file,
drop the flagged rows, start a Quick-test QLoRA job and watch it finish, see base vs adapter in
Compare, merge, download both, and chat A (base) vs B (adapter) and vote. Each tab's screenshot
lands in test-artifacts/ and replaces its picture in docs/screenshots/, which the README and
docs/tabs.md show."""

import json
import zipfile

from playwright.sync_api import expect

from conftest import CODEWORD_RECORDS, pick, pixels_of_colour, screenshot, set_number, set_slider
from test_jobs import wait_for

from studio.store import Store
from studio.ui.jobs_tab import CURVE_COLOURS

QUESTION = "What is the codeword for boats?"


def download(page, link, path):
    with page.expect_download() as started:
        link.click()
    started.value.save_as(path)
    return zipfile.ZipFile(path)


def test_a_new_user_trains_compares_merges_downloads_and_chats(studio_server, settings, page, tmp_path):
    data = tmp_path / "codewords.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CODEWORD_RECORDS + CODEWORD_RECORDS[:1]))  # one row twice
    page.goto(studio_server)

    # Data: the guide is there; upload, read the problem and the preview, drop the flagged row, save.
    page.locator("#start-here").get_by_text("New here?").wait_for()  # Markdown renders after the page's first paint
    page.locator("#data-upload input[type=file]").set_input_files(str(data))
    status = page.locator("#data-status")
    status.get_by_text("21 of 21 rows will be used").wait_for(timeout=60_000)
    assert "Exact duplicate of an earlier row — 1 row (row 21)" in page.locator("#data-problems").inner_text()
    assert "### Instruction:\nWhat is the codeword for apples?" in page.locator("#data-preview .studio-prompt").first.inner_text()
    page.get_by_label("Exact duplicate of an earlier row").check()
    status.get_by_text("20 of 21 rows will be used").wait_for()
    page.locator("#data-save").click()
    page.locator("#data-saved").get_by_text("Saved as 'codewords'").wait_for()
    screenshot(page, "data-tab", docs_picture=True)
    page.get_by_text("Answers that must not change (optional)").click()  # a prompt of the team's own that must keep its answer
    pick(page, "data-keep-dataset", "codewords (20 rows, #1)")
    page.locator("#data-keep-prompts textarea").fill("What is the capital of France?")
    page.locator("#data-keep-save").click()
    page.locator("#data-keep-note").get_by_text("asks 1 must-not-change prompt from now on").wait_for()

    # Train: the new dataset, QLoRA, the Quick-test preset made briefer still; Start lands on the job.
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-estimate").get_by_text("parameters").wait_for(timeout=60_000)
    page.get_by_label("QLoRA (4-bit, less memory)").check()
    page.locator("#train-preset").get_by_label("Quick test").check()  # no early stopping: the adapter keeps its last step
    page.locator("#train-estimate").get_by_text("Quick test:").wait_for()  # the preset's plan has filled the fields in
    page.get_by_text("Advanced settings").click()
    briefer = [("Max steps", 8), ("Batch size", 4), ("Max length (tokens)", 96), ("Checkpoint every (steps)", 4), ("Learning rate", 0.003)]
    for label, value in briefer:
        set_number(page, label, value)
    for label, value in briefer:  # what the user typed stays, whatever the plan says
        expect(page.get_by_label(label, exact=True)).to_have_value(str(value))
    page.get_by_label("Adapter name").fill("codewords-qlora")
    screenshot(page, "train-tab", docs_picture=True)
    page.locator("#train-start").click()

    # Jobs: progress and the loss curve move to the end.
    progress = page.locator("#job-progress-text")
    progress.get_by_text("codewords-qlora").wait_for(timeout=30_000)
    page.wait_for_function("() => /step [1-7] of 8/.test(document.querySelector('#job-progress-text')?.innerText)", timeout=180_000)
    page.locator("#job-curve canvas, #job-curve svg").first.wait_for(timeout=30_000)
    progress.get_by_text("succeeded").wait_for(timeout=240_000)
    assert "step 8 of 8" in progress.inner_text() and "tokens/s" in progress.inner_text()
    page.wait_for_timeout(2500)  # the chart redraws with the last points
    screenshot(page, "jobs-tab", docs_picture=True)
    curve = page.locator("#job-curve")
    assert pixels_of_colour(curve, CURVE_COLOURS["training loss"]) > 100, "no training loss line"
    assert pixels_of_colour(curve, CURVE_COLOURS["validation loss"]) > 100, "no validation loss line"
    page.get_by_text("Workers", exact=True).click()  # the studio's own worker, with its device and a fresh heartbeat
    page.wait_for_function("() => /cpu \\(\\d+ cores\\)\\s+(idle|busy)\\s+\\S*\\s*\\d+ s ago/"
                           ".test(document.querySelector('#workers-table')?.innerText)", timeout=10_000)

    # The worker evaluates the adapter on the held-out rows by itself (this waits as a user would, in
    # the Jobs tab); Compare then shows base vs adapter.
    store = Store(settings.db_path)
    adapter = store.adapters()[0]
    evaluation = wait_for(lambda: Store(settings.db_path).latest_evaluation(adapter.id), seconds=300)
    adapter_label = f"#{adapter.id} {adapter.name} (qlora)"
    page.get_by_role("tab", name="Compare").click()
    page.get_by_label("Base model (no adapter)", exact=True).check()
    page.get_by_label(adapter_label, exact=True).check()
    page.locator("#compare-show").click()
    page.locator("#compare-settings").get_by_text("max_steps").wait_for(timeout=30_000)
    assert f"{evaluation.base_loss:.4g} → {evaluation.adapter_loss:.4g}" in page.locator("#compare-metrics").inner_text()
    assert page.locator("#compare-answers tr").count() == 1 + evaluation.rows == 6  # five rows held out (the minimum)
    # What it forgot: the ordinary requests (five in tests) and the team's prompt, base beside adapter.
    assert page.locator("#compare-general tr").count() == 1 + evaluation.general_asked + 1 == 7
    assert "What is the capital of France?" in page.locator("#compare-general").inner_text()
    assert "must-not-change prompts" in page.locator("#compare-metrics").inner_text()
    screenshot(page, "compare-tab", docs_picture=True)

    # Merge into the unquantised base, in bfloat16: a queued job with progress, then listed.
    page.get_by_role("tab", name="Merge").click()
    pick(page, "merge-adapter", adapter_label)
    page.locator("#merge-dtype").get_by_label("bfloat16").check()
    page.locator("#merge-start").click()
    merge_progress = page.locator("#merge-progress")
    merge_progress.get_by_text("succeeded").wait_for(timeout=300_000)
    page.wait_for_function("() => document.querySelector('#merge-table')?.innerText.includes('bfloat16')", timeout=10_000)
    screenshot(page, "merge-tab", docs_picture=True)

    # Download: the adapter and the merged model, each a zip that holds its weights.
    page.get_by_role("tab", name="Download").click()
    pick(page, "download-adapter", adapter_label)
    page.locator("#download-adapter-zip").click()
    page.locator("#download-adapter-file").get_by_text(f"Download adapter-{adapter.id}-").wait_for(timeout=60_000)
    with download(page, page.locator("#download-adapter-file"), tmp_path / "adapter.zip") as archive:
        assert f"{adapter.path.name}/adapter_model.safetensors" in archive.namelist()
    merged = Store(settings.db_path).merges(adapter.id)[0]
    pick(page, "download-merged", f"#{merged.id} {adapter.name} merged (bfloat16)")
    page.locator("#download-merged-zip").click()
    page.locator("#download-merged-file").get_by_text(f"Download merged-{merged.id}-bfloat16.zip").wait_for(timeout=120_000)
    screenshot(page, "download-tab", docs_picture=True)
    with download(page, page.locator("#download-merged-file"), tmp_path / "merged.zip") as archive:
        assert f"{merged.path.name}/model.safetensors" in archive.namelist()

    # Chat: A is the base model, B the adapter; B has learnt the codewords, A has not; a vote is kept.
    page.get_by_role("tab", name="Chat").click()
    pick(page, "chat-model-b", f"{adapter.name} (adapter #{adapter.id})")
    page.get_by_text("Generation settings").click()
    set_slider(page, "#chat-temperature", "0")
    set_slider(page, "#chat-max-new-tokens", "16")
    page.locator("#chat-message textarea").fill(QUESTION)
    page.locator("#chat-send").click()
    page.locator("#chat-status-b").get_by_text("done").wait_for(timeout=120_000)
    assert "ZEPHYR" in page.locator("#chat-b").inner_text() and "ZEPHYR" not in page.locator("#chat-a").inner_text()
    page.locator("#chat-vote-b").click()
    page.locator("#chat-voted").get_by_text("Saved: B better").wait_for()
    screenshot(page, "chat-tab", docs_picture=True)
    assert "codewords-qlora" in page.locator("#chat-votes").inner_text()
