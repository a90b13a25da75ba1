"""The feedback loop in a real Chromium with the studio's own worker: a blind vote and an edit in the Chat tab,
Train on feedback, and the new adapter in Compare and Chat with where it came from."""

from conftest import open_chat_with_adapter, pick, screenshot, set_slider
from test_jobs import wait_for

from studio.feedback.items import swapped_sides
from studio.store import FINISHED

QUESTION = "What is the codeword for boats?"
BASE = "SmolLM2-135M-Instruct (base)"


def test_a_blind_vote_and_an_edit_train_an_adapter_shown_with_its_lineage(stocked_home, studio_server, page):
    store, adapter = stocked_home, stocked_home.adapters()[-1]  # the `trained` codeword adapter, trained afresh
    open_chat_with_adapter(page, studio_server, adapter)
    set_slider(page, "#chat-temperature", "0")
    set_slider(page, "#chat-max-new-tokens", "12")
    page.locator("#chat-seed input").fill("1")
    page.locator("#chat-seed input").press("Tab")
    page.locator("#chat-blind input").check()
    page.locator("#chat-message textarea").fill(QUESTION)
    page.locator("#chat-send").click()
    page.locator("#chat-status-b").get_by_text("done").wait_for(timeout=120_000)
    statuses = page.locator("#chat-status-a").inner_text() + page.locator("#chat-status-b").inner_text()
    assert "Model A" in statuses and "Model B" in statuses and adapter.name not in statuses and "SmolLM2" not in statuses

    assert swapped_sides(1, 0)  # seed 1: the adapter, picked for B, answers on side A
    page.locator("#chat-vote-a").click()
    page.locator("#chat-voted").get_by_text(f"Saved: A better. Revealed: A was {adapter.name} (#{adapter.id}), B was {BASE}.").wait_for()
    page.locator("#chat-edit-a").click()
    page.locator("#chat-correction textarea").fill("The codeword for boats is ZEPHYR-1. Anything else?")
    page.locator("#chat-save-correction").click()
    page.locator("#chat-voted").get_by_text("Saved your correction of A's answer.").wait_for()

    page.get_by_text("Feedback: votes and corrections").click()
    pick(page, "chat-feedback-model", f"{adapter.name} (adapter #{adapter.id})")
    page.wait_for_function("text => document.querySelector('#chat-feedback')?.innerText.includes(text)",
                           arg=f"{adapter.name} (#{adapter.id}) over {BASE}")
    assert f"corrected {adapter.name} (#{adapter.id})" in page.locator("#chat-feedback").inner_text()
    page.locator("#chat-feedback-train").click()  # nothing picked
    page.get_by_text("No feedback is selected. Tick the votes and corrections to use, then try again.").first.wait_for()
    assert store.jobs(("queued", "running")) == []  # nothing was queued
    pick(page, "chat-feedback-items", "vote:1")
    pick(page, "chat-feedback-items", "correction:1")
    page.locator("#chat-feedback-plan").get_by_text(
        f"Train on feedback will do this: DPO on 2 pairs (1 vote and 1 correction), continuing '{adapter.name}'.").wait_for()
    page.locator("#chat-feedback-train").click()
    page.locator("#chat-voted").get_by_text(f"DPO on 2 pairs, continuing adapter #{adapter.id}").wait_for(timeout=30_000)
    screenshot(page, "chat-feedback-queued")

    queued = store.jobs()[0]  # newest first
    assert (queued.name, queued.spec["objective"], queued.spec["start_adapter_id"]) == (f"{adapter.name}-feedback", "dpo", adapter.id)
    wait_for(lambda: store.job(queued.id).state in FINISHED, seconds=240)  # the studio's worker runs it
    job = store.job(queued.id)
    assert job.state == "succeeded", job.error
    taught = store.adapter(job.adapter_id)
    said = f"from {adapter.name} (#{adapter.id}) via 1 vote and 1 correction"
    page.get_by_role("tab", name="Compare").click()
    page.get_by_label(f"#{taught.id} {taught.name} (lora) - {said}", exact=True).check()
    page.get_by_label(f"#{adapter.id} {adapter.name} (lora)", exact=True).check()
    page.locator("#compare-show").click()
    page.locator("#compare-settings").get_by_text(said).wait_for(timeout=30_000)
    assert "trained afresh" in page.locator("#compare-settings").inner_text()
    screenshot(page, "compare-feedback-lineage")

    page.get_by_role("tab", name="Chat").click()
    pick(page, "chat-model-a", f"{taught.name} (adapter #{taught.id}) - {said}")
