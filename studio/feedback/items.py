"""Feedback from the Chat tab: votes that keep what they judged, and corrections.

A vote stores the conversation so far, both full answers, the models and the generation
settings. A win is a preference pair (the winner's answer over the loser's); a tie, or two
identical answers, is not. A correction is the answer the user wanted: an instruction row,
and a pair preferring it over the model's answer. The user can drop items from training;
dropped votes still count in the rankings (studio.feedback.votes).
"""

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

from studio.adapters.lineage import FEEDBACK_SOURCE, count_of, items_in_words
from studio.data.instructions import store_records
from studio.data.prompts import get_template
from studio.errors import ChatError
from studio.feedback.votes import record_vote
from studio.store import AdapterRecord, DatasetRecord, Store


@dataclass(frozen=True)
class Answered:
    """One complete answer and what it answered: the thing a vote or a correction judges."""

    key: str  # the model, as studio.chat.server.Choice.key
    label: str
    turns: list[dict]  # the conversation up to and including the user's message, {"role", "content"}
    answer: str


@dataclass(frozen=True)
class FeedbackItem:
    """A vote or a correction as the Feedback panel lists it."""

    ref: str  # "vote:ID" or "correction:ID"
    created: str
    turns: list[dict]
    verdict: str  # who won, in words
    chosen: str | None  # None when the item is not a pair (a tie, identical answers)
    rejected: str | None
    model_keys: tuple[str, ...]  # the models the item is about
    generation: dict
    rater: str  # who voted or corrected (studio.store.authors)

    @property
    def prompt(self) -> str:
        return self.turns[-1]["content"]

    @property
    def is_pair(self) -> bool:
        return self.chosen is not None


def swapped_sides(seed: int, message_number: int) -> bool:
    """Blind A/B: whether the second model answers on side A for this message of the conversation.
    Drawn at random per message, the same for the same seed and message number, so a session can be replayed."""
    return random.Random(f"blind:{seed}:{message_number}").random() < 0.5


def vote(store: Store, a: Answered, b: Answered, winner: str, generation: dict) -> int:
    """Store a vote on two complete answers to the same message, with both answers and conversations; returns its id.

    Each side keeps its own conversation, so earlier answers may differ: a pair's prompt is the
    conversation the winner answered. Raises ChatError when an answer is missing.
    """
    if not a.answer.strip() or not b.answer.strip():
        raise ChatError("Both A and B must answer the message in full before a vote: wait for both answers, then vote.")
    if a.turns[-1] != b.turns[-1]:
        raise ChatError("A and B answered different messages, so their answers cannot be compared. Press Clear and ask again.")
    details = {"a_turns": json.dumps(a.turns), "b_turns": json.dumps(b.turns), "a_answer": a.answer, "b_answer": b.answer,
               "generation": json.dumps(generation)}
    return record_vote(store, a_key=a.key, a_label=a.label, b_key=b.key, b_label=b.label, winner=winner,
                       prompt=a.turns[-1]["content"], details=details)


def correct(store: Store, answered: Answered, correction: str, generation: dict) -> int:
    """Store the answer the user wanted instead of a model's; returns the correction's id.

    Raises ChatError for an empty correction or one equal to the model's answer.
    """
    correction = correction.strip()
    if not correction:
        raise ChatError("The correction is empty. Write the answer you wanted, then save it.")
    if correction == answered.answer.strip():
        raise ChatError("The correction is the model's own answer, unchanged. Edit it into the answer you wanted, then save it.")
    return store.add_correction(model_key=answered.key, model_label=answered.label, turns=json.dumps(answered.turns),
                                answer=answered.answer, correction=correction, generation=json.dumps(generation))


def feedback_items(store: Store, model_key: str | None = None, rater: str | None = None) -> list[FeedbackItem]:
    """The votes (with their answers) and corrections not dropped, newest first; only those about
    `model_key`, and only `rater`'s, when given."""
    items = [_vote_item(v) for v in store.votes() if v.get("a_turns") and not v.get("dropped")]
    items += [_correction_item(c) for c in store.corrections() if not c["dropped"]]
    items.sort(key=lambda item: (item.created, item.ref.split(":")[0], int(item.ref.split(":")[1])), reverse=True)
    return [item for item in items if (model_key is None or model_key in item.model_keys) and rater in (None, item.rater)]


def raters(store: Store) -> list[str]:
    """Everyone whose votes or corrections are in the feedback, by name."""
    return sorted({item.rater for item in feedback_items(store)})


@dataclass(frozen=True)
class Disagreement:
    """Two or more raters who judged the same two models on the same message differently."""

    prompt: str
    choices: dict[str, str]  # rater: what they chose, in words ("SmolLM2 base", "tie")


def disagreements(store: Store) -> list[Disagreement]:
    """Where raters disagree: votes by different people on the same message to the same two models with
    different winners. A team's feedback loop should settle these before training on them."""
    judged: dict[tuple, dict[str, str]] = {}
    for row in store.votes():
        if not row.get("a_turns") or row.get("dropped"):
            continue
        labels = {row["a_key"]: row["a_label"], row["b_key"]: row["b_label"]}
        choice = "tie" if row["winner"] == "tie" else labels[row[f"{row['winner']}_key"]]
        same = (json.loads(row["a_turns"])[-1]["content"], frozenset(labels))  # the message both sides answered
        judged.setdefault(same, {})[row["created_by"]] = choice
    return [Disagreement(prompt, choices) for (prompt, _), choices in judged.items() if len(set(choices.values())) > 1]


def _vote_item(row: dict) -> FeedbackItem:
    answers = {side: (row[f"{side}_answer"], row[f"{side}_key"], row[f"{side}_label"], json.loads(row[f"{side}_turns"])) for side in "ab"}
    base = {"ref": f"vote:{row['id']}", "created": row["created"], "model_keys": (row["a_key"], row["b_key"]),
            "generation": json.loads(row["generation"] or "{}"), "rater": row["created_by"]}
    if row["winner"] == "tie" or row["a_answer"].strip() == row["b_answer"].strip():
        verdict = "tie: not a pair" if row["winner"] == "tie" else "identical answers: not a pair"
        return FeedbackItem(**base, turns=answers["a"][3], verdict=verdict, chosen=None, rejected=None)
    won, lost = answers[row["winner"]], answers["b" if row["winner"] == "a" else "a"]
    return FeedbackItem(**base, turns=won[3], verdict=f"{won[2]} over {lost[2]}", chosen=won[0], rejected=lost[0])


def _correction_item(row: dict) -> FeedbackItem:
    return FeedbackItem(ref=f"correction:{row['id']}", created=row["created"], turns=json.loads(row["turns"]),
                        verdict=f"corrected {row['model_label']}", chosen=row["correction"], rejected=row["answer"], model_keys=(row["model_key"],),
                        generation=json.loads(row["generation"] or "{}"), rater=row["created_by"])


def drop(store: Store, refs: list[str]) -> None:
    """Leave items out of training, by their refs ("vote:3", "correction:2"). Raises ChatError for none or an unknown ref."""
    if not refs:
        raise ChatError("No feedback is selected. Pick the items to drop from the list, then press Drop.")
    known = {item.ref for item in feedback_items(store)}
    unknown = [ref for ref in refs if ref not in known]
    if unknown:
        raise ChatError(f"No feedback item is called {', '.join(unknown)} (or it was dropped already). Pick items from the Feedback list.")
    for table, kind in (("votes", "vote"), ("corrections", "correction")):
        store.drop_feedback(table, [int(ref.split(":")[1]) for ref in refs if ref.startswith(f"{kind}:")])


def select(store: Store, refs: list[str]) -> list[FeedbackItem]:
    """The items named by `refs`, in the list's order. Raises ChatError when none is named or one is unknown."""
    if not refs:
        raise ChatError("No feedback is selected. Tick the votes and corrections to use, then try again.")
    items = {item.ref: item for item in feedback_items(store)}
    unknown = [ref for ref in refs if ref not in items]
    if unknown:
        raise ChatError(f"No feedback item is called {', '.join(unknown)} (or it was dropped). Pick items from the Feedback list.")
    return [items[ref] for ref in refs]


def preference_rows(items: list[FeedbackItem]) -> list[dict]:
    """The pairs among `items` as preference rows: {"prompt", "chosen", "rejected"} for a single question,
    chat-format conversations (the same turns, then each answer) when there were earlier turns or a system prompt.
    Each row names its source item, for lineage."""
    rows = []
    for item in items:
        if not item.is_pair:
            continue
        turns = _with_system(item)
        if len(turns) == 1:
            rows.append({"prompt": item.prompt, "chosen": item.chosen, "rejected": item.rejected, "source": item.ref})
        else:
            rows.append({"chosen": turns + [{"role": "assistant", "content": item.chosen}],
                         "rejected": turns + [{"role": "assistant", "content": item.rejected}], "source": item.ref})
    return rows


def _with_system(item: FeedbackItem) -> list[dict]:
    system = (item.generation.get("system_prompt") or "").strip()
    return ([{"role": "system", "content": system}] if system else []) + item.turns


def export(store: Store, path: Path, refs: list[str] | None = None) -> int:
    """Write the chosen items' pairs (corrections as pairs too) as a JSONL preference file the Data tab reads back;
    all items when `refs` is None. Returns the rows written. Raises ChatError when there is no pair to write."""
    items = feedback_items(store) if refs is None else select(store, refs)
    rows = preference_rows(items)
    if not rows:
        raise ChatError("None of this feedback is a preference pair (ties and identical answers are not). "
                        "Vote on answers that differ, or correct an answer, then export again.")
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return len(rows)


# Corrections train as instruction rows too once there are this many: fewer make a pass over a handful of rows that
# teaches little beyond what their pairs already teach.
MIN_CORRECTIONS = 4


MOST_WEIGHT = 5  # a rater's items are trained on at most this many times each


def parse_weights(text: str) -> dict[str, int]:
    """Raters' weights written "ana=2, ben=1": each item of a rater of weight 2 is trained on twice, of weight 0 not at
    all; a rater not named weighs 1. Raises ChatError, naming the part that is wrong, for anything else."""
    weights = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        name, _, times = part.partition("=")
        if not name.strip() or not times.strip().isdigit() or int(times) > MOST_WEIGHT:
            raise ChatError(f"'{part}' is not a rater's weight. Write NAME=TIMES with TIMES a whole number from 0 to {MOST_WEIGHT}, "
                            "separated by commas, e.g. ana=2, ben=1.")
        weights[name.strip()] = int(times)
    return weights


@dataclass(frozen=True)
class TrainingPlan:
    """What Train on feedback does with the chosen items: DPO on the pairs and, with enough corrections,
    instruction tuning on the corrections first. Said in words before anything is queued."""

    pairs: list[FeedbackItem]  # wins and corrections: each a preference pair, repeated as its rater's weight says
    corrections: list[FeedbackItem]  # the corrections that train as instruction rows first; empty when too few
    template: str  # the adapter's prompt format, which the instruction rows are trained in
    weights: dict[str, int] = dataclasses.field(default_factory=dict)  # raters' weights other than 1 (parse_weights)

    def describe(self, adapter_name: str) -> str:
        pairs = f"DPO on {count_of(len(self.pairs), 'pair')} ({items_in_words(dict.fromkeys(i.ref for i in self.pairs))})"
        weighed = "".join(f"; {rater}'s items {'count ' + str(times) + ' times' if times else 'are left out'}"
                          for rater, times in sorted(self.weights.items()) if times != 1)
        if not self.corrections:
            return f"{pairs[0].upper()}{pairs[1:]}, continuing '{adapter_name}'{weighed}."
        return (f"First instruction tuning on {count_of(len(self.corrections), 'correction')} as instruction rows, with as many "
                f"of the rows '{adapter_name}' trained on so that it keeps what it knew, continuing '{adapter_name}'; "
                f"then {pairs}, continuing from that{weighed}.")


def training_plan(store: Store, refs: list[str], template: str, weights: dict[str, int] | None = None) -> TrainingPlan:
    """What Train on feedback will do with the items named by `refs`, for an adapter trained with `template`;
    `weights` (parse_weights) repeats each rater's items, so a domain expert's count more than a newcomer's.

    Corrections are also instruction rows when there are at least MIN_CORRECTIONS of them; an adapter of
    the one-question Alpaca format learns only corrections of a single question that way (the rest stay pairs).
    Raises ChatError when nothing is selected, an item is unknown, or none of the items is a pair.
    """
    chosen, weights = select(store, refs), weights or {}
    items = [item for item in chosen for _ in range(weights.get(item.rater, 1))]
    pairs = [item for item in items if item.is_pair]
    if not pairs:
        raise ChatError("None of the selected feedback is a preference pair (ties and identical answers are not). "
                        "Select wins or corrections, then train again.")
    one_question = get_template(template).kind != "chat"
    corrections = [i for i in pairs if i.ref.startswith("correction:") and not (one_question and len(i.turns) > 1)]
    return TrainingPlan(pairs, corrections if len(corrections) >= MIN_CORRECTIONS else [], template,
                        {rater: times for rater, times in weights.items() if any(i.rater == rater for i in chosen)})


def feedback_datasets(store: Store, datasets_dir: Path, adapter: AdapterRecord, plan: TrainingPlan) -> tuple[DatasetRecord, DatasetRecord | None]:
    """The plan's pairs saved as a preference dataset, and its corrections (when it has any) as an instruction
    dataset in the adapter's prompt format; each names its items in its source, the lineage back to the votes and corrections."""
    pairs = store_records(store, datasets_dir, [{"prompt": _with_system(i), "chosen": i.chosen, "rejected": i.rejected} for i in plan.pairs],
                          name=f"feedback on {adapter.name}", format="feedback", shape="preference", mapping={}, template="chat",
                          validation_fraction=0.0, split_seed=42, source_file=FEEDBACK_SOURCE + ", ".join(dict.fromkeys(i.ref for i in plan.pairs)))
    if not plan.corrections:
        return pairs, None
    rows = [{"messages": _with_system(i) + [{"role": "assistant", "content": i.chosen}]} for i in plan.corrections]
    rows += replay_rows(store, adapter, len(rows))
    corrections = store_records(store, datasets_dir, rows, name=f"corrections of {adapter.name}", format="feedback", shape="chat",
                                mapping={}, template=plan.template, validation_fraction=0.0, split_seed=42,
                                source_file=FEEDBACK_SOURCE + ", ".join(dict.fromkeys(i.ref for i in plan.corrections)))
    return pairs, corrections


def replay_rows(store: Store, adapter: AdapterRecord, count: int) -> list[dict]:
    """Up to `count` rows the adapter trained on (seeded), to train beside the corrections: a handful of corrections
    alone, seen several times, pull the whole adapter towards them, and it unlearns the rest (the feedback-loop
    benchmark's validation loss rose 1.585 -> 2.767 without them). Validation rows stay out: they measure the result."""
    from studio.data.held_out import adapter_dataset, training_records
    from studio.errors import EvaluationError

    try:
        dataset = adapter_dataset(store, adapter)
    except EvaluationError:  # an imported adapter whose data this studio does not hold: nothing to replay
        return []
    if dataset.shape == "preference":  # trained on pairs: no instruction rows to replay
        return []
    rows = training_records(dataset)
    return random.Random(f"replay:{adapter.id}").sample(rows, min(count, len(rows)))


