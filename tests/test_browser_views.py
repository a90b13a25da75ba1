"""The Jobs and Compare views in a real Chromium, on a studio holding the session's trained adapters:
loss charts with named lines, whole steps and a lone validation point drawn; Cancel and Resume only
where they apply; Clone and edit filling the Train tab; an interruption kept in the jobs table; the log opened on its newest line; Compare's
measures explained and its prompts shown without the template's wording."""

import pytest
from conftest import pick, screenshot
from playwright.sync_api import expect

from jobs.run import job_folder


@pytest.fixture
def views_home(trained_qlora, evaluated, stocked_home, settings):
    """The stocked studio, plus a long log for the QLoRA job and a job interrupted after its first evaluation."""
    store = stocked_home
    log = job_folder(settings, trained_qlora.job_id) / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"log line {n}\n" for n in range(1, 121)))
    stopped = store.add_job(kind="train", name="stopped-run", dataset_id=None, base_model="bundled", spec="{}")
    store.update_job(stopped.id, state="interrupted", step=3, total_steps=8)
    for step, loss in [(1, 2.9), (2, 2.4), (3, 2.0)]:
        store.add_metrics(stopped.id, step, {"loss": loss})
    store.add_metrics(stopped.id, 3, {"eval_loss": 2.2})  # its one validation point so far
    store.note_job(stopped.id, "interrupted at step 3: its process was stopped by SIGKILL")
    return store, store.job(trained_qlora.job_id), store.job(stopped.id)


def inside(inner: dict, outer: dict) -> bool:
    return (inner["width"] > 0 and inner["height"] > 0 and inner["x"] >= outer["x"] and inner["y"] >= outer["y"]
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] and inner["y"] + inner["height"] <= outer["y"] + outer["height"])


def check_chart(page, chart_id: str, names: list[str], lone: str | None = None) -> None:
    """The chart names `names` in a legend inside its box, its steps are whole, and the series `lone` is one visible point."""
    chart = page.locator(f"#{chart_id}")
    chart.locator(".legend-item").first.wait_for(timeout=30_000)
    box = chart.bounding_box()
    items = chart.locator(".legend-item")
    assert items.all_inner_texts() == names
    assert all(inside(items.nth(i).bounding_box(), box) for i in range(items.count())), "a legend entry falls outside the chart"
    ticks = chart.locator("text.x-tick").all_text_contents()
    assert ticks and all(t.isdigit() for t in ticks), ticks
    if lone:
        point = chart.locator(f"g[data-series='{lone}'] circle")
        assert point.count() == 1 and inside(point.bounding_box(), box)


def test_jobs_and_compare_show_labelled_charts_and_only_the_actions_that_apply(views_home, evaluated, studio_without_worker, page):
    store, qlora_job, stopped = views_home
    adapter = store.adapter(evaluated.adapter_id)  # Compare shows answers of an evaluated adapter
    page.goto(studio_without_worker)

    # Jobs: a finished job's chart, buttons and log.
    page.get_by_role("tab", name="Jobs").click()
    pick(page, "jobs-pick", f"#{qlora_job.id} {qlora_job.name} (succeeded)")
    # the picked job's chart replaces the one shown first (the newest job's), after a round trip: wait for it
    expect(page.locator("#job-curve text.x-tick")).to_have_text(["1", "2", "3", "4", "5"], timeout=30_000)
    check_chart(page, "job-curve", ["training loss", "validation loss"])
    assert page.locator("#job-cancel").is_disabled() and page.locator("#job-resume").is_disabled()
    page.wait_for_function("() => { const box = document.querySelector('#job-log textarea');"
                           " return box && box.value.includes('log line 120') && box.scrollTop > 0"
                           " && box.scrollTop + box.clientHeight >= box.scrollHeight - 4; }", timeout=10_000)
    screenshot(page, "jobs-chart")

    # Clone and edit: the Train tab holds the job's settings, as the user's own.
    page.locator("#job-clone").click()
    expect(page.get_by_label("Adapter name")).to_have_value(f"{qlora_job.name} (copy)", timeout=10_000)
    page.get_by_text("Advanced settings").click()
    for label, name in [("Max steps", "max_steps"), ("Learning rate", "learning_rate"), ("Checkpoint every (steps)", "save_steps")]:
        expect(page.get_by_label(label, exact=True)).to_have_value(f"{qlora_job.spec[name]:g}")
    page.get_by_role("tab", name="Jobs").click()

    # An interrupted job: both actions apply, the table keeps why it stopped, its lone validation point shows.
    pick(page, "jobs-pick", f"#{stopped.id} stopped-run (interrupted)")
    page.wait_for_function("() => !document.querySelector('#job-resume').disabled", timeout=10_000)
    expect(page.locator("#job-curve text.x-tick")).to_have_text(["1", "2", "3"], timeout=30_000)
    check_chart(page, "job-curve", ["training loss", "validation loss"], "validation loss")
    assert not page.locator("#job-cancel").is_disabled()
    assert "interrupted at step 3: its process was stopped by SIGKILL" in page.locator("#jobs-table").inner_text()

    # Compare: the base model and the adapter; nothing highlighted, measures explained, questions without the template.
    page.get_by_role("tab", name="Compare").click()
    page.get_by_label("Base model (no adapter)", exact=True).check()
    page.get_by_label(f"#{adapter.id} {adapter.name} ({adapter.method})", exact=True).check()
    page.locator("#compare-show").click()
    page.locator("#compare-settings").get_by_text("max_steps").wait_for(timeout=30_000)
    assert page.locator("#compare-settings tr.studio-diff").count() == 0
    measures = page.locator("#compare-measures").inner_text()
    assert "perplexity (lower is better)" in measures and "ROUGE-L (higher is better)" in measures
    answers = page.locator("#compare-answers").inner_text()
    assert "What is the codeword for" in answers and "Below is an instruction" not in answers
    title = f"#{adapter.id} {adapter.name}"
    check_chart(page, "compare-curves", [f"{title} training", f"{title} validation"])
