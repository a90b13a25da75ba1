"""A plain verdict on an adapter: did it learn, from its held-out evaluation against the base.

Short answers (a label, a date, a code) are right or wrong, so exact match decides; long ones
(facts in sentences) are judged by ROUGE-L, which credits the right words in other order or
with small slips. The held-out loss backs up a partial verdict. Every verdict says what it was
judged on, what the adapter forgot (studio.evaluate.forgetting) and, unless it learned, what to do next.
"""

import dataclasses
import statistics
from dataclasses import dataclass

from studio.evaluate.forgetting import Forgetting
from studio.store import AdapterRecord, EvaluationRecord, Store
from studio.train.spec import TrainSpec

LEARNED = "learned"
PARTLY = "learned partly"
NOT_LEARNED = "did not learn"
WORSE = "got worse"
SHORT_ANSWER_WORDS = 8  # references up to this many words (median) are judged by exact match
GOOD = 0.8  # exact match (short answers) or ROUGE-L (long ones) at which the adapter has learned
GAIN = 0.15  # a gain over the base this large is real learning, not noise on 20 answers
LOSS_GAIN = 0.3  # a held-out loss this much lower than the base's counts as learning partly
FEW_STEPS = 20  # below this many optimizer steps an adapter has barely started


@dataclass(frozen=True)
class Verdict:
    kind: str  # LEARNED, PARTLY, NOT_LEARNED or WORSE
    sentence: str  # the verdict with its numbers
    judged_on: str  # what the answers were measured on
    next_step: str | None  # what to do, unless it learned
    forgetting: Forgetting | None = None  # how far it moved on requests that are not its task; None if not asked

    def __str__(self) -> str:
        return " ".join(part for part in (self.sentence, self.judged_on, self.next_step, str(self.forgetting or "")) if part)


def short_answers(references: list[str]) -> bool:
    return statistics.median(len(r.split()) for r in references) <= SHORT_ANSWER_WORDS if references else True


def judge(evaluation: EvaluationRecord, adapter: AdapterRecord, references: list[str], forgetting: Forgetting | None = None) -> Verdict:
    """The verdict on one evaluation of an adapter (its stored answers' references tell short from long)."""
    e = evaluation
    short = short_answers(references)
    measure, base, mine = ("exact", e.base_exact, e.adapter_exact) if short else ("ROUGE-L", e.base_rouge, e.adapter_rouge)
    numbers = (f"it answers {mine:.0%} of {len(references)} held-out examples exactly; the base model {base:.0%}" if short else
               f"its answers score ROUGE-L {mine:.2f} against the references (1 is word for word); the base model {base:.2f}, "
               f"and {e.adapter_exact:.0%} exactly (base {e.base_exact:.0%})")
    loss_drop = 1 - e.adapter_loss / e.base_loss if e.base_loss else 0.0
    if mine >= GOOD and mine > base:
        kind = LEARNED
    elif mine <= base - 0.1 or (mine <= base and loss_drop < -0.2):
        kind = WORSE
    elif mine - base >= GAIN or loss_drop >= LOSS_GAIN:
        kind = PARTLY
    else:
        kind = NOT_LEARNED
    sentence = {LEARNED: f"Learned: {numbers}.", PARTLY: f"Learned partly: {numbers}.",
                NOT_LEARNED: f"Did not learn: {numbers}.", WORSE: f"Got worse than the base model: {numbers}."}[kind]
    if kind == PARTLY and mine - base < GAIN:
        sentence += f" Its held-out loss fell {loss_drop:.0%} ({e.base_loss:.3g} → {e.adapter_loss:.3g}): it is getting closer."
    return Verdict(kind, sentence, _judged_on(e), _next_step(kind, adapter), forgetting)


def _judged_on(e: EvaluationRecord) -> str:
    if e.source == "training rows":
        return (f"Judged on {e.rows} rows it trained on, as the dataset holds none out: this shows it learned them, "
                "not that it answers new questions well.")
    if e.source.startswith("test file"):
        overlap = f"; {e.overlap} of them also appear in the training rows, so they say nothing about new examples" if e.overlap else ""
        return f"Judged on your {e.source} ({e.rows} rows{overlap})."
    return f"Judged on {e.rows} validation rows it never trained on."


def _next_step(kind: str, adapter: AdapterRecord) -> str | None:
    steps = adapter.summary.get("steps") or 0
    if kind == LEARNED:
        return None
    if kind == WORSE:
        rate = adapter.spec.get("learning_rate")
        return (f"Next: train again with a lower learning rate (half of {rate:g}) or fewer passes, and check that the data's answers "
                "are what you want." if rate else "Next: check that the data's answers are what you want.")
    if adapter.status == "cancelled":
        return f"It was stopped after {steps} steps. Next: *Train longer* continues from this adapter."
    if steps < FEW_STEPS:
        return f"It trained only {steps} steps, too few to learn a task. Next: *Train longer* continues from this adapter, or use the Auto preset."
    return "Next: *Train longer* continues from this adapter for as many steps again."


def verdict_for(store: Store, adapter_id: int) -> Verdict | None:
    """The verdict from an adapter's latest evaluation; None before it was evaluated."""
    evaluation = store.latest_evaluation(adapter_id)
    if evaluation is None:
        return None
    probed = store.probe_answers(evaluation.id)
    return judge(evaluation, store.adapter(adapter_id), [a["reference"] for a in store.answers(evaluation.id)],
                 Forgetting.of(probed) if probed else None)


def train_longer_spec(adapter: AdapterRecord) -> TrainSpec:
    """The settings of *Train longer*: the adapter's own, continuing from its weights for as many steps again."""
    known = {f.name for f in dataclasses.fields(TrainSpec)}
    spec = {k: v for k, v in adapter.spec.items() if k in known}
    steps = adapter.summary.get("steps")
    length = {"max_steps": int(steps), "epochs": 1.0} if steps else {}
    return TrainSpec.from_dict({**spec, **length, "start_adapter_id": adapter.id})


CARD_START, CARD_END = "<!-- verdict -->", "<!-- /verdict -->"


def write_to_card(adapter_dir, verdict: Verdict) -> None:
    """Put the verdict at the top of the adapter's model card (README.md), replacing an earlier one."""
    card = adapter_dir / "README.md"
    if not card.exists():
        return
    text = card.read_text()
    if CARD_START in text:
        text = text[:text.index(CARD_START)] + text[text.index(CARD_END) + len(CARD_END) + 1:]
    heading = text.index("\n# ") + 1 if "\n# " in text else 0
    end = text.index("\n", heading) + 1
    block = f"{CARD_START}\n**Verdict: {verdict.kind}.** {verdict}\n{CARD_END}\n"
    card.write_text(text[:end] + "\n" + block + text[end:])
