"""The Compare tab in a real Chromium, on a studio that holds two trained adapters and an evaluation.
(Merging and downloading in the browser are part of the journey test.)"""

import io

from PIL import Image


def coloured_pixels(locator) -> int:
    """Pixels of clear colour (not white, grey or black) in an element: what drawn lines add."""
    image = Image.open(io.BytesIO(locator.screenshot())).convert("RGB")
    return sum(1 for r, g, b in image.getdata() if max(r, g, b) - min(r, g, b) > 60)


def test_compare_shows_settings_metrics_answers_and_curves(trained_qlora, evaluated, stocked_home, studio_without_worker, page):
    store = stocked_home  # requested before the server: it starts on this copy
    lora = store.adapter(evaluated.adapter_id)
    qlora = store.adapter(trained_qlora.id)
    label = {a.id: f"#{a.id} {a.name} ({a.method})" for a in (lora, qlora)}
    page.goto(studio_without_worker)

    # Compare: the base model and both adapters side by side.
    page.get_by_role("tab", name="Compare").click()
    chart = page.locator("#compare-curves")
    before = coloured_pixels(chart)
    for text in ("Base model (no adapter)", label[lora.id], label[qlora.id]):
        page.get_by_label(text, exact=True).check()
    page.locator("#compare-show").click()
    settings_table = page.locator("#compare-settings")
    settings_table.get_by_text("max_steps").wait_for(timeout=30_000)
    differing = settings_table.locator("tr.studio-diff").all_inner_texts()
    assert any(row.startswith("method") for row in differing) and any(row.startswith("max_steps") for row in differing)
    assert not any(row.startswith("rank") for row in differing)
    metrics = page.locator("#compare-metrics").inner_text()
    assert f"{evaluated.base_loss:.4g} → {evaluated.adapter_loss:.4g}" in metrics and "not evaluated" in metrics
    assert "The codeword for eagles is ZEPHYR-4." in page.locator("#compare-answers").inner_text()
    assert page.locator("#compare-answers tr").count() == 1 + evaluated.rows
    page.wait_for_timeout(1500)  # the chart draws after the data arrives
    assert coloured_pixels(chart) > before + 500, "the loss curves drew no lines"
