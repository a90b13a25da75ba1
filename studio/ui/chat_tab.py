"""The Chat tab: A and B answer one message side by side, streaming, with the same settings;
votes on which answered better, and each pair's win rate."""

import threading

import gradio as gr

from studio.chat import Choice, GenerationSettings, ModelServer, choose_listed
from studio.errors import ChatError
from studio.models import BUNDLED_NAME
from studio.settings import Settings
from studio.store import Store
from studio.ui.errors import shown_to_user
from studio.votes import WINNERS, record_vote, win_rates

VOTE_HEADERS = ["model 1", "model 2", "up to", "votes", "1 wins", "2 wins", "ties", "1 win rate"]


def model_choices(store: Store) -> list[tuple[str, str]]:
    adapters = [(f"{a.name} (adapter #{a.id}{', stopped early' if a.status == 'cancelled' else ''})", f"adapter:{a.id}")
                for a in store.adapters()]
    names = {a.id: a.name for a in store.adapters()}
    merged = [(f"{names.get(m.adapter_id, 'adapter')} merged ({m.dtype}, model #{m.id})", f"base:{m.path}") for m in store.merges()]
    return [(f"{BUNDLED_NAME} (base model)", "base:bundled")] + adapters + merged


def vote_rows(store: Store) -> list[list]:
    return [[r.first, r.second, r.day, r.votes, r.first_wins, r.second_wins, r.ties, f"{r.first_win_rate:.0%}"]
            for r in win_rates(store)]


def plain_turns(history: list[dict] | None) -> list[dict]:
    """Chatbot messages as {"role", "content"} with text content (Gradio hands content over as parts)."""
    turns = []
    for message in history or []:
        content = message["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        turns.append({"role": message["role"], "content": content})
    return turns


def build(settings: Settings, store: Store, server: ModelServer, page: gr.Tab) -> None:
    gr.Markdown("Pick a model for **A** and, to compare, one for **B**; both answer your message with the same settings. "
                "Leave B empty to chat with A alone. Answers take turns on this machine, so B starts when A is done.")
    with gr.Row():
        model_a = gr.Dropdown(model_choices(store), value="base:bundled", label="Model A", allow_custom_value=True,
                              info="The base model, a trained adapter or a merged model.", elem_id="chat-model-a")
        model_b = gr.Dropdown([("(none: chat with A alone)", "")] + model_choices(store), value="", label="Model B",
                              allow_custom_value=True, info="The model to compare A with.", elem_id="chat-model-b")
    with gr.Accordion("Generation settings (the same for A and B)", open=False):
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature", elem_id="chat-temperature", info="0 gives the same answer every time; higher is more varied.")
            top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="Top-p", info="Pick words only from the likeliest that make up this share.")
            max_new_tokens = gr.Slider(1, 1024, value=256, step=1, label="Max new tokens", elem_id="chat-max-new-tokens", info="The longest answer, in tokens.")
            seed = gr.Number(0, precision=0, label="Seed", info="The same seed and settings give the same answers.")
        system = gr.Textbox(label="System prompt", lines=2, info="Instructions both models read before the conversation.")
    with gr.Row():
        with gr.Column():
            status_a = gr.Markdown(elem_id="chat-status-a")
            chat_a = gr.Chatbot(label="A", height=420, buttons=["copy", "copy_all"], elem_id="chat-a")
        with gr.Column(visible=False) as column_b:
            status_b = gr.Markdown(elem_id="chat-status-b")
            chat_b = gr.Chatbot(label="B", height=420, buttons=["copy", "copy_all"], elem_id="chat-b")
    message = gr.Textbox(label="Message", placeholder="Type a message and press Enter",
                         info="Sent to A and B alike; each keeps its own conversation.", elem_id="chat-message")
    with gr.Row():
        send = gr.Button("Send", variant="primary", elem_id="chat-send")
        stop = gr.Button("Stop", variant="stop", elem_id="chat-stop")
        clear = gr.Button("Clear", elem_id="chat-clear")
    with gr.Row(visible=False) as vote_row:
        # Enabled once both answers are complete, until the vote: one vote per pair of answers.
        vote_buttons = {winner: gr.Button(text, interactive=False, elem_id=f"chat-vote-{winner}") for winner, text in WINNERS.items()}
    voted = gr.Markdown(elem_id="chat-voted")
    table = gr.Dataframe(vote_rows(store), headers=VOTE_HEADERS, interactive=False, elem_id="chat-votes",
                         label="Win rates to date, per pair (a tie counts half)")
    last_pair = gr.State(None)  # what answered the last message, until it gets its vote
    stops: dict[str, threading.Event] = {}  # one per browser session: Stop sets it

    @shown_to_user
    def respond(text, a_ref, b_ref, history_a, history_b, temperature_value, top_p_value, max_tokens, seed_value, system_prompt,
                request: gr.Request):
        if not (text or "").strip():
            raise ChatError("Type a message first.")
        if not a_ref:
            raise ChatError("Pick a model for A first.")
        generation = GenerationSettings(float(temperature_value), float(top_p_value), int(max_tokens), int(seed_value or 0),
                                        (system_prompt or "").strip())
        generation.validate()
        sides = [choose_listed(a_ref, settings, store)] + ([choose_listed(b_ref, settings, store)] if b_ref else [])
        stop_event = stops.setdefault(request.session_hash, threading.Event())
        stop_event.clear()
        histories = [plain_turns(history_a), plain_turns(history_b)]
        shown = [list(h) for h in histories]
        statuses = ["", "Waiting for A to finish: the two answer in turn." if b_ref else ""]
        done = []
        for side, choice in enumerate(sides):
            if stop_event.is_set():
                statuses[side] = "Stopped before this side answered."
                break
            turns = histories[side] + [{"role": "user", "content": text}]
            shown[side] = turns + [{"role": "assistant", "content": ""}]
            for update in server.stream(choice, turns, generation, stop_event):
                shown[side][-1]["content"] = update.text
                statuses[side] = f"**{choice.label}** · {update.describe()}"
                yield shown[0], shown[1], *statuses, "", None
            if update.complete:
                done.append(choice)
        yield shown[0], shown[1], *statuses, "", _pair(done, text)

    def _pair(done: list[Choice], prompt: str) -> dict | None:
        """The pair a vote judges: only two complete answers make one (not a stopped one, nor A alone)."""
        if len(done) < 2:
            return None
        return {"a_key": done[0].key, "a_label": done[0].label, "b_key": done[1].key, "b_label": done[1].label, "prompt": prompt}

    def stop_answer(request: gr.Request) -> None:
        stops.setdefault(request.session_hash, threading.Event()).set()

    def cleared():
        return [], [], "", "", None, ""

    chat_outputs = [chat_a, chat_b, status_a, status_b, message, last_pair]
    chat_inputs = [message, model_a, model_b, chat_a, chat_b, temperature, top_p, max_new_tokens, seed, system]
    send.click(respond, chat_inputs, chat_outputs, api_name="chat")
    message.submit(respond, chat_inputs, chat_outputs, api_visibility="private")
    stop.click(stop_answer, None, None, api_name="stop")
    clear_outputs = [chat_a, chat_b, status_a, status_b, last_pair, voted]
    clear.click(cleared, None, clear_outputs, api_name="clear")
    # Another model makes the conversation so far someone else's: start afresh.
    model_a.input(cleared, None, clear_outputs)
    model_b.input(cleared, None, clear_outputs)
    model_b.change(lambda ref: (gr.Column(visible=bool(ref)), gr.Row(visible=bool(ref))), model_b, [column_b, vote_row])
    last_pair.change(lambda pair: [gr.Button(interactive=pair is not None)] * len(vote_buttons), last_pair,
                     list(vote_buttons.values()), show_progress="hidden")
    page.select(lambda: (gr.Dropdown(choices=model_choices(store)), gr.Dropdown(choices=[("(none: chat with A alone)", "")] + model_choices(store)),
                         vote_rows(store)), None, [model_a, model_b, table])

    def vote_for(winner: str):
        @shown_to_user
        def vote(pair: dict | None):
            if pair is None:  # said in place, not raised: an error would mark the last vote's confirmation and table as failed
                return ("Nothing to vote on: votes count once both A and B have answered the last message in full, "
                        "and once per pair of answers."), gr.skip(), None
            record_vote(store, winner=winner, **pair)
            return f"Saved: {WINNERS[winner]} ({pair['a_label']} vs {pair['b_label']}).", vote_rows(store), None

        return vote

    for winner, button in vote_buttons.items():
        button.click(vote_for(winner), last_pair, [voted, table, last_pair], api_name=f"vote_{winner}")
