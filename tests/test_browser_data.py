"""The Data tab in a real Chromium: upload, see problems and the preview, drop rows, save; a preference
file too, its two answers side by side."""

import pytest
from conftest import FIXTURES, running_studio, screenshot


@pytest.fixture(scope="module")
def studio(tmp_path_factory, models_dir):
    """One studio for this module's tests: each uploads and saves a dataset of its own."""
    folder = tmp_path_factory.mktemp("data-studio")
    with running_studio({"STUDIO_HOME": str(folder / "home"), "STUDIO_MODELS_DIR": str(models_dir)}, folder / "studio.log", "--no-worker") as url:
        yield url


def upload(page, url, name):
    page.goto(url)
    page.locator("#data-upload input[type=file]").set_input_files(str(FIXTURES / name))


def test_upload_shows_mapping_problems_and_preview_then_saves(studio, page):
    upload(page, studio, "problems.jsonl")
    status = page.locator("#data-status")
    status.get_by_text("7 of 9 rows will be used").wait_for(timeout=60_000)
    problems = page.locator("#data-problems").inner_text()
    assert "Exact duplicate of an earlier row — 1 row (row 5)" in problems
    assert "personal data" in problems and "(rows 7, 9)" in problems
    preview = page.locator("#data-preview")
    assert preview.locator(".studio-example .studio-response").first.inner_text() == "Bonjour<|im_end|>"
    assert "### Instruction:\nTranslate to French." in preview.locator(".studio-example .studio-prompt").first.inner_text()
    assert "Tokens per row" in page.locator("#data-histogram").inner_text()

    page.get_by_label("Exact duplicate of an earlier row").check()
    status.get_by_text("6 of 9 rows will be used").wait_for()
    page.locator("#data-save").click()
    page.locator("#data-saved").get_by_text("Saved as 'problems'").wait_for()
    assert "6 rows" in page.locator("#data-saved").inner_text()


def test_a_refused_file_explains_itself_and_the_example_loads_with_one_click(studio, page, tmp_path):
    upload(page, studio, "missing_output.csv")
    page.locator("#data-status").get_by_text("no column holds the output").wait_for(timeout=60_000)
    assert "Columns found: instruction, notes" in page.locator("#data-status").inner_text()
    corrupt = tmp_path / "customers.parquet"
    corrupt.write_bytes(b"PAR1 not a table")
    page.locator("#data-upload button[aria-label='Clear']").click()
    page.locator("#data-upload input[type=file]").set_input_files(str(corrupt))  # a second refused file in a row
    page.locator("#data-status").get_by_text("customers.parquet is not a readable Parquet file").wait_for(timeout=60_000)
    assert "/tmp" not in page.locator("#data-status").inner_text() and "Error" not in page.locator("body").inner_text()

    page.locator("#data-example").click()
    page.locator("#data-status").get_by_text("42 of 42 rows will be used").wait_for(timeout=30_000)
    assert "library_helpdesk.jsonl" in page.locator("#data-status").inner_text()
    assert "Larkfield" in page.locator("#data-preview").inner_text()
    page.locator("#data-save").click()
    page.locator("#data-saved").get_by_text("Saved as 'library_helpdesk'").wait_for()

    page.locator("#data-test").click()  # the user's own test file, attached to the dataset just saved
    page.locator("#data-test-attach").click()
    page.locator("#data-test-note").get_by_text("Choose the saved dataset whose adapters the test file should judge.").wait_for()
    page.locator("#data-test-dataset input").click()
    page.get_by_role("option", name="library_helpdesk").first.click()
    page.locator("#data-test-upload input[type=file]").set_input_files(str(FIXTURES / "alpaca.jsonl"))
    page.locator("#data-test-attach").click()
    page.locator("#data-test-note").get_by_text("Adapters of 'library_helpdesk' are now judged on 'alpaca (test)'").wait_for(timeout=30_000)
    assert "Error" not in page.locator("#data-test").inner_text()

def test_a_preference_file_is_previewed_side_by_side_and_saved_as_pairs(studio, page):
    upload(page, studio, "pairs.jsonl")
    page.locator("#data-status").get_by_text("4 of 6 pairs will be used").wait_for(timeout=60_000)
    for problem in ("A prompt, chosen or rejected answer is missing or empty — 1 row (row 2)",
                    "The chosen and rejected answers are the same — 1 row (row 3)"):
        assert problem in page.locator("#data-problems").inner_text()
    pair = page.locator("#data-preview .studio-example").nth(1)  # row 4, the second pair used
    assert "Row 4" in pair.inner_text() and "What is the capital of France?" in pair.locator(".studio-prompt").inner_text()
    chosen, rejected = pair.locator(".studio-chosen"), pair.locator(".studio-rejected")
    assert "Paris." in chosen.inner_text() and "London, the capital" in rejected.inner_text()
    assert "tokens" in chosen.inner_text() and "tokens" in rejected.inner_text()
    left, right = chosen.bounding_box(), rejected.bounding_box()
    assert left["x"] + left["width"] <= right["x"] and abs(left["y"] - right["y"]) < 2  # side by side
    screenshot(page, "data-preference-pairs")

    page.get_by_label("Exact duplicate of an earlier row").check()
    page.locator("#data-status").get_by_text("3 of 6 pairs will be used").wait_for()
    page.locator("#data-save").click()
    page.locator("#data-saved").get_by_text("Saved as 'pairs'").wait_for()
    assert "3 rows" in page.locator("#data-saved").inner_text() and "DPO" in page.locator("#data-saved").inner_text()
