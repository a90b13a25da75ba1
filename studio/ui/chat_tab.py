"""The Chat tab: A and B answer one message side by side, streaming, with the same settings;
votes on which answered better, corrections (Edit), the feedback collected, and each pair's win rate."""

import dataclasses
import threading

import gradio as gr
from gradio.context import Context

from jobs.control import feedback_plan, submit_feedback_training
from studio.adapters.in_use import in_use
from studio.chat.server import GenerationSettings, ModelServer, choose_listed
from studio.errors import ChatError, StudioError
from studio.feedback.items import (MIN_CORRECTIONS, Answered, correct, disagreements, drop, feedback_items, parse_weights, raters,
                                  swapped_sides)
from studio.feedback.items import vote as record_feedback_vote
from studio.feedback.votes import WINNERS, leaderboard, win_rates
from studio.people import activity
from studio.settings import Settings
from studio.store import Store
from studio.ui.access import needs, signed_in
from studio.ui.errors import shown_to_user
from studio.ui.pickers import model_choices
from studio.ui.refresh import on_show

VOTE_HEADERS = ["model 1", "model 2", "up to", "votes", "1 wins", "2 wins", "ties", "1 win rate"]
LEADERBOARD_HEADERS = ["model", "rating", "95% range", "votes", "wins"]
FEEDBACK_HEADERS = ["item", "when (UTC)", "rater", "verdict", "message", "preferred answer", "other answer"]


def vote_rows(store: Store) -> list[list]:
    return [[r.first, r.second, r.day, r.votes, r.first_wins, r.second_wins, r.ties, f"{r.first_win_rate:.0%}"]
            for r in win_rates(store)]


def leaderboard_rows(store: Store) -> list[list]:
    return [[s.label, round(s.rating), f"{s.low:.0f} to {s.high:.0f}", s.votes, s.wins] for s in leaderboard(store)]


def feedback_rows(store: Store, model_ref: str | None, rater: str | None = None) -> list[list]:
    """The Feedback panel's table for a model and a rater picked in the lists (all when none): newest first,
    who rated, who won, both answers."""
    # The list names a merged model "base:PATH"; its answers are kept under its chat key, "model:PATH".
    key = f"model:{model_ref[5:]}" if model_ref and model_ref.startswith("base:") and model_ref != "base:bundled" else model_ref
    return [[i.ref, i.created[:16].replace("T", " "), i.rater, i.verdict, i.prompt, i.chosen or "", i.rejected or ""]
            for i in feedback_items(store, key or None, rater or None)]


def disagreement_note(store: Store) -> str:
    """Where raters disagree, in words: worth settling before training on those votes."""
    found = disagreements(store)
    if not found:
        return ""
    lines = [f"- “{d.prompt[:80]}”: " + "; ".join(f"{rater} chose {choice}" for rater, choice in sorted(d.choices.items()))
             for d in found[:10]]
    more = f"\n- … and {len(found) - 10} more" if len(found) > 10 else ""
    return (f"**Raters disagree on {len(found)} message{'s' if len(found) != 1 else ''}** (the same two models, different winners). "
            "Settle them, or train on one rater's items:\n" + "\n".join(lines) + more)


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
            seed = gr.Number(0, precision=0, label="Seed", elem_id="chat-seed", info="The same seed and settings give the same answers.")
        blind = gr.Checkbox(False, label="Blind A/B", elem_id="chat-blind",
                            info="Hide which model answers on which side until you vote. The sides are drawn at random for each "
                                 "message (the same seed draws the same sides).")
        system = gr.Textbox(label="System prompt", lines=2, info="Instructions both models read before the conversation.")
    with gr.Row():
        with gr.Column():
            status_a = gr.Markdown(elem_id="chat-status-a")
            chat_a = gr.Chatbot(label="A", height=420, buttons=["copy", "copy_all"], elem_id="chat-a")
            edit_a = gr.Button("Edit A's answer", size="sm", interactive=False, elem_id="chat-edit-a")
        with gr.Column(visible=False) as column_b:
            status_b = gr.Markdown(elem_id="chat-status-b")
            chat_b = gr.Chatbot(label="B", height=420, buttons=["copy", "copy_all"], elem_id="chat-b")
            edit_b = gr.Button("Edit B's answer", size="sm", interactive=False, elem_id="chat-edit-b")
    with gr.Group(visible=False) as correction_box:
        correction = gr.Textbox(label="The answer you wanted", lines=4, elem_id="chat-correction",
                                info="Kept as a correction: an instruction row, and a pair preferring it over the model's answer.")
        save_correction = gr.Button("Save correction", variant="primary", elem_id="chat-save-correction")
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
    standings = gr.Dataframe(leaderboard_rows(store), headers=LEADERBOARD_HEADERS, interactive=False, elem_id="chat-leaderboard",
                             label="Leaderboard from all votes: Bradley-Terry rating on the Elo scale (1000 is an average model; "
                                   "+400 means ten times the odds of winning); the range narrows as votes come in")
    with gr.Accordion("Feedback: votes and corrections collected for training", open=False):
        with gr.Row():
            feedback_model = gr.Dropdown([("(every model)", "")] + model_choices(store), value="", label="Feedback about",
                                         elem_id="chat-feedback-model")
            feedback_rater = gr.Dropdown([("(everyone)", "")], value="", label="Rated by", elem_id="chat-feedback-rater",
                                         info="Whose votes and corrections to list, drop or train on.")
        disagreement = gr.Markdown(elem_id="chat-feedback-disagreement")
        feedback_table = gr.Dataframe(feedback_rows(store, None), headers=FEEDBACK_HEADERS, interactive=False, wrap=True,
                                      elem_id="chat-feedback", label="Newest first. Ties and identical answers are kept for the ranking but are not pairs.")
        with gr.Row():
            feedback_pick = gr.Dropdown([], multiselect=True, label="Items", elem_id="chat-feedback-items",
                                        info="The items to drop from training, or to train on.")
            pick_all = gr.Button("Pick all listed", elem_id="chat-feedback-pick-all")
            drop_button = gr.Button("Drop from training", elem_id="chat-feedback-drop")
            train_button = gr.Button("Train on feedback", variant="primary", elem_id="chat-feedback-train")
        feedback_weights = gr.Textbox(label="Raters' weights (optional)", placeholder="ana=2, ben=1", elem_id="chat-feedback-weights",
                                      info="Each item of a rater of weight 2 is trained on twice, of weight 0 not at all; "
                                           "a rater not named weighs 1. Give a domain expert's corrections more weight than a newcomer's votes.")
        gr.Markdown("*Train on feedback* saves the picked wins and corrections as a preference dataset and queues a DPO job "
                    f"that continues the adapter picked in *Feedback about*; with {MIN_CORRECTIONS} corrections or more, it first "
                    "trains on the corrections as instruction rows (with as many rows it trained on, so it keeps what it knew). The new adapter lists its parent and the feedback it learned from.")
        feedback_plan_note = gr.Markdown(elem_id="chat-feedback-plan")
    last_pair = gr.State(None)  # what answered the last message, until it gets its vote
    last_answers = gr.State({})  # side -> the last complete answer, for Edit
    editing = gr.State(None)  # the side whose answer is being corrected
    stops: dict[str, threading.Event] = {}  # one per browser session: Stop sets it

    @shown_to_user
    def respond(text, a_ref, b_ref, history_a, history_b, temperature_value, top_p_value, max_tokens, seed_value, system_prompt,
                blind_value, request: gr.Request):
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
        hidden = bool(blind_value and b_ref)
        if hidden and swapped_sides(generation.seed, sum(t["role"] == "user" for t in histories[0])):
            sides.reverse()
        shown = [list(h) for h in histories]
        statuses = ["", "Waiting for A to finish: the two answer in turn." if b_ref else ""]
        done = {}
        for side, choice in enumerate(sides):
            if stop_event.is_set():
                statuses[side] = "Stopped before this side answered."
                break
            turns = histories[side] + [{"role": "user", "content": text}]
            shown[side] = turns + [{"role": "assistant", "content": ""}]
            for update in server.stream(choice, turns, generation, stop_event):
                shown[side][-1]["content"] = update.text
                statuses[side] = f"**{'Model ' + 'AB'[side] if hidden else choice.label}** · {update.describe()}"
                yield shown[0], shown[1], *statuses, "", None, {}
            if update.complete:
                done["ab"[side]] = dataclasses.asdict(Answered(choice.key, choice.label, turns, update.text))
        # Only two complete answers make a pair to vote on (not a stopped one, nor A alone).
        pair = {**done, "generation": dataclasses.asdict(generation), "blind": hidden} if len(done) == 2 else None
        yield shown[0], shown[1], *statuses, "", pair, {**done, "generation": dataclasses.asdict(generation)}

    def stop_answer(request: gr.Request) -> None:
        stops.setdefault(request.session_hash, threading.Event()).set()

    def cleared():
        return [], [], "", "", None, "", {}

    chat_outputs = [chat_a, chat_b, status_a, status_b, message, last_pair, last_answers]
    chat_inputs = [message, model_a, model_b, chat_a, chat_b, temperature, top_p, max_new_tokens, seed, system, blind]
    send.click(respond, chat_inputs, chat_outputs, api_name="chat")
    message.submit(respond, chat_inputs, chat_outputs, api_visibility="private")
    stop.click(stop_answer, None, None, api_name="stop")
    clear_outputs = [chat_a, chat_b, status_a, status_b, last_pair, voted, last_answers]
    clear.click(cleared, None, clear_outputs, api_name="clear")
    # Another model makes the conversation so far someone else's: start afresh.
    model_a.input(cleared, None, clear_outputs)
    model_b.input(cleared, None, clear_outputs)
    model_b.change(lambda ref: (gr.Column(visible=bool(ref)), gr.Row(visible=bool(ref))), model_b, [column_b, vote_row])
    last_pair.change(lambda pair: [gr.Button(interactive=pair is not None)] * len(vote_buttons), last_pair,
                     list(vote_buttons.values()), show_progress="hidden")
    last_answers.change(lambda answers: (gr.Button(interactive="a" in answers), gr.Button(interactive="b" in answers),
                                         gr.Group(visible=False)), last_answers, [edit_a, edit_b, correction_box], show_progress="hidden")

    def refreshed_feedback(model_key: str | None, rater: str | None):
        """The feedback listed for the picked model and rater, the raters to pick from, and where raters disagree."""
        rows = feedback_rows(store, model_key, rater)
        return (rows, gr.Dropdown(choices=[row[0] for row in rows], value=[]),
                gr.Dropdown(choices=[("(everyone)", "")] + raters(store), value=rater or ""), disagreement_note(store))

    feedback_filters = [feedback_model, feedback_rater]
    feedback_outputs = [feedback_table, feedback_pick, feedback_rater, disagreement]
    gr.on([feedback_model.input, feedback_rater.input], refreshed_feedback, feedback_filters, feedback_outputs)
    pick_all.click(lambda model_key, rater: [row[0] for row in feedback_rows(store, model_key, rater)], feedback_filters,
                   feedback_pick)

    def edit(side: str):
        def open_box(answers: dict):
            return gr.Group(visible=True), gr.Textbox(value=answers.get(side, {}).get("answer", ""), label=f"The answer you wanted from {side.upper()}"), side

        return open_box

    edit_a.click(edit("a"), last_answers, [correction_box, correction, editing])
    edit_b.click(edit("b"), last_answers, [correction_box, correction, editing])

    @needs("correct")
    @shown_to_user
    def save(side: str | None, text: str, answers: dict, model_key: str | None, rater: str | None):
        if side not in answers:
            raise ChatError("There is no complete answer to correct. Send a message, let the answer finish, then press Edit.")
        correct(store, Answered(**answers[side]), text or "", answers["generation"])
        activity.record(store, signed_in(), "correct", f"corrected {answers[side]['label']}'s answer")
        return (f"Saved your correction of {side.upper()}'s answer.", gr.Group(visible=False),
                *refreshed_feedback(model_key, rater))

    save_correction.click(save, [editing, correction, last_answers, *feedback_filters], [voted, correction_box, *feedback_outputs],
                          api_name="correct")

    @needs("drop_feedback")
    @shown_to_user
    def drop_items(refs: list[str] | None, model_key: str | None, rater: str | None):
        drop(store, refs or [])
        activity.record(store, signed_in(), "feedback", f"dropped {', '.join(refs or [])} from training")
        return f"Dropped {len(refs)} item{'s' if len(refs) != 1 else ''} from training.", *refreshed_feedback(model_key, rater)

    drop_button.click(drop_items, [feedback_pick, *feedback_filters], [voted, *feedback_outputs], api_name="drop_feedback")

    def adapter_to_continue(model_ref: str | None) -> int:
        if not (model_ref or "").startswith("adapter:"):
            raise ChatError("Pick the adapter to continue in 'Feedback about' first: Train on feedback continues an adapter with DPO.")
        return int(model_ref.split(":")[1])

    def plan_said(refs: list[str] | None, model_ref: str | None, weights: str) -> str:
        """What Train on feedback would do with the picked items, said before anything is queued."""
        if not refs:
            return ""
        try:
            adapter = store.adapter(adapter_to_continue(model_ref))
            return "Train on feedback will do this: " + feedback_plan(store, adapter.id, refs, parse_weights(weights)).describe(adapter.name)
        except StudioError as error:
            return str(error)

    @needs("train")
    @shown_to_user
    def train_on(refs: list[str] | None, model_ref: str | None, weights: str = ""):
        jobs = submit_feedback_training(store, settings.datasets_dir, adapter_to_continue(model_ref), refs or [], parse_weights(weights))
        steps = []
        for job in jobs:
            rows = store.dataset(job.dataset_id).rows
            what = (f"DPO on {rows} pair{'s' if rows != 1 else ''}" if job.spec["objective"] == "dpo"
                    else f"instruction tuning on {rows} correction{'s' if rows != 1 else ''}")
            start = f"adapter #{job.spec['start_adapter_id']}" if job.after_job_id is None else f"job {job.after_job_id}'s adapter"
            steps.append(f"job {job.id} '{job.name}': {what}, continuing {start}")
        activity.record(store, signed_in(), "train", f"queued {'; '.join(steps)} (Train on feedback)")
        return (f"Queued {'; then '.join(steps)}. Follow it in the Jobs tab; the new adapter then appears here and in Compare "
                "with its lineage.")

    gr.on([feedback_pick.change, feedback_weights.change], plan_said, [feedback_pick, feedback_model, feedback_weights], feedback_plan_note,
          show_progress="hidden")
    train_button.click(train_on, [feedback_pick, feedback_model, feedback_weights], voted, api_name="train_on_feedback")
    on_show(page, lambda model_key, rater: (gr.Dropdown(choices=model_choices(store)), gr.Dropdown(choices=[("(none: chat with A alone)", "")] + model_choices(store)),
                                   vote_rows(store), leaderboard_rows(store), gr.Dropdown(choices=[("(every model)", "")] + model_choices(store)),
                                   *refreshed_feedback(model_key, rater)),
                feedback_filters, [model_a, model_b, table, standings, feedback_model, *feedback_outputs])

    @needs("view")
    def opened_with_in_use():
        """A page opens with the adapter in use as Model A, when the team has chosen one."""
        current = in_use(store)
        return f"adapter:{current.adapter.id}" if current else gr.skip()

    Context.root_block.load(opened_with_in_use, None, model_a, show_progress="hidden")

    def vote_for(winner: str):
        @needs("vote")
        @shown_to_user
        def vote(pair: dict | None, model_key: str | None, rater: str | None):
            if pair is None:  # said in place, not raised: an error would mark the last vote's confirmation and table as failed
                return ("Nothing to vote on: votes count once both A and B have answered the last message in full, "
                        "and once per pair of answers."), gr.skip(), gr.skip(), None, *[gr.skip()] * len(feedback_outputs)
            record_feedback_vote(store, Answered(**pair["a"]), Answered(**pair["b"]), winner, pair["generation"])
            activity.record(store, signed_in(), "vote", f"{WINNERS[winner]}: {pair['a']['label']} vs {pair['b']['label']}")
            who = (f". Revealed: A was {pair['a']['label']}, B was {pair['b']['label']}." if pair["blind"]
                   else f" ({pair['a']['label']} vs {pair['b']['label']}).")
            return (f"Saved: {WINNERS[winner]}{who}", vote_rows(store), leaderboard_rows(store),
                    None, *refreshed_feedback(model_key, rater))

        return vote

    for winner, button in vote_buttons.items():
        button.click(vote_for(winner), [last_pair, *feedback_filters], [voted, table, standings, last_pair, *feedback_outputs],
                     api_name=f"vote_{winner}")
