"""The Train and Jobs tabs in a real Chromium: start a brief job and watch it run to the end."""

import re

from conftest import save_codewords, screenshot


def set_number(page, label: str, value) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Tab")


def step_shown(page) -> int:
    match = re.search(r"step (\d+) of", page.locator("#job-progress-text").inner_text())
    return int(match.group(1)) if match else 0


def test_start_a_job_from_the_train_tab_and_watch_progress_and_loss(studio_server, page, settings, store, codeword_file, tokenizer):
    save_codewords(settings, store, codeword_file, tokenizer)
    page.goto(studio_server)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-estimate").get_by_text("parameters").wait_for(timeout=60_000)
    page.get_by_text("Advanced settings").click()
    for label, value in [("Max steps", 4), ("Batch size", 4), ("Max length", 96), ("Save steps", 2), ("Learning rate", 0.002)]:
        set_number(page, label, value)
    page.get_by_label("Adapter name").fill("from-the-browser")
    screenshot(page, "train-tab")
    page.locator("#train-start").click()

    # Start lands on the job, which the worker picks up; progress and the loss curve move.
    progress = page.locator("#job-progress-text")
    progress.get_by_text("from-the-browser").wait_for(timeout=30_000)
    page.wait_for_function("() => /step [1-9]\\d* of 4/.test(document.querySelector('#job-progress-text')?.innerText)", timeout=180_000)
    first_step = step_shown(page)
    page.locator("#job-curve canvas, #job-curve svg").first.wait_for(timeout=30_000)
    progress.get_by_text("succeeded").wait_for(timeout=240_000)
    assert step_shown(page) == 4 > first_step
    assert store.metrics(store.jobs()[0].id)[-1]["step"] == 4
    assert "tokens/s" in progress.inner_text()
    page.wait_for_function("() => /succeeded: adapter/.test(document.querySelector('#job-log textarea')?.value)", timeout=10_000)
    screenshot(page, "jobs-tab")
