"""The Compare, Merge and Download tabs in a real Chromium, on a studio that holds two trained adapters."""

import io
import zipfile

from conftest import screenshot
from PIL import Image


def coloured_pixels(locator) -> int:
    """Pixels of clear colour (not white, grey or black) in an element: what drawn lines add."""
    image = Image.open(io.BytesIO(locator.screenshot())).convert("RGB")
    return sum(1 for r, g, b in image.getdata() if max(r, g, b) - min(r, g, b) > 60)


def pick(page, dropdown_id: str, label: str) -> None:
    page.locator(f"#{dropdown_id} input").click()
    page.get_by_role("option", name=label, exact=True).click()


def test_compare_merge_and_download(trained_qlora, evaluated, stocked_home, studio_server, page, tmp_path):
    store = stocked_home  # requested before studio_server: the server starts on this copy
    lora = store.adapter(evaluated.adapter_id)
    qlora = store.adapter(trained_qlora.id)
    label = {a.id: f"#{a.id} {a.name} ({a.method})" for a in (lora, qlora)}
    page.goto(studio_server)

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
    screenshot(page, "compare-tab")

    # Merge: a queued job with progress, then listed.
    page.get_by_role("tab", name="Merge").click()
    pick(page, "merge-adapter", label[lora.id])
    page.locator("#merge-start").click()
    progress = page.locator("#merge-progress")
    progress.get_by_text(f"merge {lora.name} (float32)").wait_for(timeout=30_000)
    progress.get_by_text("succeeded").wait_for(timeout=300_000)
    assert "step 5 of 5" in progress.inner_text()
    page.wait_for_function("() => document.querySelector('#merge-table')?.innerText.includes('float32')", timeout=10_000)
    screenshot(page, "merge-tab")

    # Download: the adapter and the merged model as zips.
    page.get_by_role("tab", name="Download").click()
    pick(page, "download-adapter", label[lora.id])
    page.locator("#download-adapter-zip").click()
    link = page.locator("#download-adapter-file a").first
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    download.value.save_as(tmp_path / "adapter.zip")
    with zipfile.ZipFile(tmp_path / "adapter.zip") as archive:
        assert f"{lora.path.name}/adapter_model.safetensors" in archive.namelist()
    merged = store.merges(lora.id)[0]
    pick(page, "download-merged", f"#{merged.id} {lora.name} merged (float32)")
    page.locator("#download-merged-zip").click()
    page.locator("#download-merged-file a").first.wait_for(timeout=120_000)
    screenshot(page, "download-tab")
