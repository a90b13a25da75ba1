"""The Train tab's blend and sweep controls in a real Chromium: the mix is shown in rows and tokens
before starting, Start queues one job per grid point on the blend, and Compare lists the sweep."""

import json

from conftest import pick, save_codewords, set_slider
from test_blend_sweep import GENERAL

from studio.data.instructions import inspect_file, save_dataset
from studio.store import Store


def test_a_sweep_on_a_blend_is_planned_queued_and_listed(studio_without_worker, settings, store, codeword_file, tokenizer, tmp_path, page):
    general_file = tmp_path / "general.jsonl"
    general_file.write_text("".join(json.dumps(r) + "\n" for r in GENERAL))
    general = save_dataset(store, settings.datasets_dir, inspect_file(general_file, tokenizer, max_bytes=2**22), name="general")
    team = save_codewords(settings, store, codeword_file, tokenizer)  # the newest: the Train tab picks it
    page.goto(studio_without_worker)
    page.get_by_role("tab", name="Train").click()
    page.locator("#train-estimate").get_by_text("parameters").wait_for(timeout=60_000)
    assert page.locator("#train-dataset input").input_value() == f"codewords ({team.rows} rows, #{team.id})"

    page.get_by_text("Blend in other data (against forgetting)").click()
    pick(page, "train-blend", f"general ({general.rows} rows, #{general.id})")
    set_slider(page, "#train-blend-share", "20")
    plan = page.locator("#train-blend-plan")
    plan.get_by_text("The blend: 25 rows").wait_for(timeout=30_000)
    assert "codewords: 20 rows" in plan.inner_text() and "general: 5 rows" in plan.inner_text()

    page.get_by_text("Sweep: try several settings at once").click()
    page.locator("#train-sweep textarea").fill("rank=4,8")
    page.get_by_label("Adapter name").fill("codeword sweep")
    page.locator("#train-start").click()
    page.locator("#job-progress-text").get_by_text("codeword sweep rank=4").wait_for(timeout=30_000)
    jobs = Store(settings.db_path).jobs()
    assert sorted(j.name for j in jobs) == ["codeword sweep rank=4", "codeword sweep rank=8"]
    assert {j.sweep for j in jobs} == {"codeword sweep"} and {store.dataset(j.dataset_id).rows for j in jobs} == {25}

    page.get_by_role("tab", name="Compare").click()
    pick(page, "compare-sweep", "codeword sweep")
    page.locator("#compare-ranking").get_by_text("No run of sweep 'codeword sweep' has finished yet").wait_for(timeout=30_000)
