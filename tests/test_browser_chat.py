"""The Chat tab in a real Chromium and through gradio_client: A/B side by side, votes, Clear, Stop."""

import time

import pytest
from conftest import open_chat_with_adapter, pick, set_slider

QUESTION = "What is the codeword for boats?"


def test_ab_chat_streams_both_sides_then_takes_a_vote(trained_studio, page):
    url, adapter = trained_studio
    open_chat_with_adapter(page, url, adapter)
    set_slider(page, "#chat-temperature", "0")  # greedy: the answers below are the models' own, not luck
    set_slider(page, "#chat-max-new-tokens", "16")
    votes = [page.locator(f"#chat-vote-{winner}") for winner in ("a", "b", "tie")]
    assert all(button.is_disabled() for button in votes)  # nothing answered yet
    page.locator("#chat-message textarea").fill(QUESTION)
    page.locator("#chat-send").click()

    page.locator("#chat-status-a").get_by_text("tokens/s · done").wait_for(timeout=120_000)
    disabled_while_b_answers = all(button.is_disabled() for button in votes)
    b_was_answering = "done" not in page.locator("#chat-status-b").inner_text()  # read after the buttons: B was not done then
    assert disabled_while_b_answers or not b_was_answering
    page.locator("#chat-status-b").get_by_text("done").wait_for(timeout=120_000)
    assert QUESTION in page.locator("#chat-a").inner_text() and QUESTION in page.locator("#chat-b").inner_text()
    assert "ZEPHYR" in page.locator("#chat-b").inner_text() and "ZEPHYR" not in page.locator("#chat-a").inner_text()

    page.locator("#chat-vote-b").click()  # waits until the buttons are enabled
    page.locator("#chat-voted").get_by_text("Saved: B better").wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('#chat-vote-a, #chat-vote-b, #chat-vote-tie')].every(b => b.disabled)")
    assert page.get_by_text("Error", exact=True).count() == 0
    cells = [c.strip() for c in page.locator("#chat-votes").get_by_role("row").nth(1).get_by_role("gridcell").all_inner_texts()]
    assert cells[:2] == [f"{adapter.name} (#{adapter.id})", "SmolLM2-135M-Instruct (base)"], cells  # the adapter's key sorts first
    assert cells[3:] == ["1", "1", "0", "0", "100%"], cells  # and it won

    # Feedback: the vote kept both answers; Edit stores the answer the user wanted.
    page.locator("#chat-edit-a").click()
    prefilled = page.locator("#chat-correction textarea").input_value()
    assert prefilled.strip() and prefilled in page.locator("#chat-a").inner_text() and "ZEPHYR" not in prefilled  # A's own answer
    page.locator("#chat-correction textarea").fill("The codeword for boats is ZEPHYR-1.")
    page.locator("#chat-save-correction").click()
    page.locator("#chat-voted").get_by_text("Saved your correction of A's answer.").wait_for()
    page.get_by_text("Feedback: votes and corrections").click()
    feedback = page.locator("#chat-feedback")
    feedback.get_by_text("corrected SmolLM2-135M-Instruct (base)").wait_for()
    assert f"{adapter.name} (#{adapter.id}) over SmolLM2-135M-Instruct (base)" in feedback.inner_text()
    rows = [r.get_by_role("gridcell").first.inner_text().strip() for r in feedback.get_by_role("row").all()[1:]]
    assert sorted(rows) == ["correction:1", "vote:1"], rows
    page.locator("#chat-feedback-train").click()  # with nothing picked
    page.get_by_text("Pick the adapter to continue in 'Feedback about' first").first.wait_for()
    pick(page, "chat-feedback-model", f"{adapter.name} (adapter #{adapter.id})")
    feedback.get_by_text("corrected SmolLM2-135M-Instruct (base)").wait_for(state="detached")  # the base's correction is not about it
    pick(page, "chat-feedback-items", "vote:1")
    page.locator("#chat-feedback-train").click()
    page.locator("#chat-voted").get_by_text(f"DPO on 1 pair, continuing adapter #{adapter.id}").wait_for(timeout=30_000)
    page.locator("#chat-clear").click()
    page.locator("#chat-voted").get_by_text("Queued job").wait_for(state="detached")
    assert QUESTION not in page.locator("#chat-a").inner_text()


def test_blind_ab_hides_the_models_until_the_vote(trained_studio, page):
    from studio.feedback.items import swapped_sides

    url, adapter = trained_studio
    open_chat_with_adapter(page, url, adapter)
    set_slider(page, "#chat-max-new-tokens", "4")
    page.locator("#chat-seed input").fill("1")  # seed 1 puts B's model on side A for the first message
    page.locator("#chat-seed input").press("Tab")
    page.locator("#chat-blind input").check()
    page.locator("#chat-message textarea").fill("Hello")
    page.locator("#chat-send").click()
    page.locator("#chat-status-b").get_by_text("done").wait_for(timeout=120_000)
    statuses = page.locator("#chat-status-a").inner_text() + page.locator("#chat-status-b").inner_text()
    assert "Model A" in statuses and "Model B" in statuses
    assert adapter.name not in statuses and "SmolLM2" not in statuses
    page.locator("#chat-vote-tie").click()
    names = [f"{adapter.name} (#{adapter.id})", "SmolLM2-135M-Instruct (base)"]
    assert swapped_sides(1, 0)
    on_a, on_b = names  # the adapter, chosen for B, answered on side A
    page.locator("#chat-voted").get_by_text(f"Saved: tie. Revealed: A was {on_a}, B was {on_b}.").wait_for()


def test_ab_single_model_and_stopped_chat_through_gradio_client(trained_studio):
    from gradio_client import Client

    url, adapter = trained_studio
    client = Client(url, verbose=False)
    settings = [0, 0.9, 16, 0, "", False]  # temperature, top-p, max new tokens, seed, system prompt, blind
    chat_a, chat_b, status_a, status_b, message = client.predict(QUESTION, "base:bundled", f"adapter:{adapter.id}", [], [],
                                                                 *settings, api_name="/chat")
    assert [m["role"] for m in chat_a] == [m["role"] for m in chat_b] == ["user", "assistant"]
    assert "ZEPHYR" in str(chat_b[-1]["content"]) and "ZEPHYR" not in str(chat_a[-1]["content"])
    assert "· done" in status_a and "· done, but cut off" in status_b and message == ""  # 16 tokens: B's answer takes 17
    assert client.predict(api_name="/vote_a")[0].startswith("Saved: A better")
    assert client.predict(api_name="/vote_b")[0].startswith("Nothing to vote on")  # once per pair of answers
    with pytest.raises(Exception, match="is not one of the studio's models"):
        client.predict(QUESTION, "/etc", "", [], [], *settings, api_name="/chat")

    chat_a, chat_b, status_a, status_b, _ = client.predict(QUESTION, f"adapter:{adapter.id}", "", [], [], *settings, api_name="/chat")
    assert "ZEPHYR" in str(chat_a[-1]["content"]) and chat_b == [] and status_b == ""

    story = client.submit("Tell me a long story about a dragon.", "base:bundled", f"adapter:{adapter.id}", [], [],
                          0.8, 0.9, 400, 1, "", False, api_name="/chat")
    while not story.outputs():  # A has begun (or waits its turn)
        time.sleep(0.2)
    client.predict(api_name="/stop")
    chat_a, chat_b, status_a, status_b, _ = story.result()
    assert status_a.endswith("· stopped") and status_b == "Stopped before this side answered." and chat_b == []

    with pytest.raises(Exception, match="Type a message first"):
        client.predict("  ", "base:bundled", "", [], [], *settings, api_name="/chat")
