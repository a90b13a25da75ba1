"""What an adapter forgot: ordinary requests and a team's own "must not change" prompts, asked of the base model
and of the adapter, in the base model's own chat format (its chat template, else the Alpaca form).

The requests (general_requests.json, bundled: knowledge, an instruction to follow, formats, arithmetic and a
few two-turn exchanges) are not the task's: an adapter that answers them as the base does kept its general
skills. Two measures: how many greedy answers changed (ROUGE-L against the base's answer below CHANGED: a
greedy answer that parts from the base's after twenty words has not forgotten anything), and how much less
likely the adapter finds the base's own answers (nats a token), which shows drift before answers change.
The verdict says both in words.
"""

import hashlib
import json
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from studio.data.prompts import DEFAULT_TEMPLATE, build_prompt
from studio.evaluate.scores import rouge_l
from studio.models.generate import greedy_batch

GENERAL_REQUESTS_FILE = Path(__file__).with_name("general_requests.json")
MUST_NOT_CHANGE = "must not change"  # the kind of a team's own prompts
MAX_NEW_TOKENS = 32  # enough to tell an answer from a label, a sentence from a clipped one
CHANGED = 0.5  # an answer whose ROUGE-L against the base's is below this says something else
PROBE_BATCH = 30  # requests answered at once: on a CPU a step of 30 costs little more than one of 10
KEPT_CHANGED, KEPT_DRIFT = 0.25, 0.2  # at most this share changed and this drift: general skills kept
LOST_CHANGED, LOST_DRIFT = 0.6, 0.5  # this share changed or this drift: general skills lost


@dataclass(frozen=True)
class Probe:
    kind: str  # knowledge, instruction, format, arithmetic, two turns, or MUST_NOT_CHANGE
    turns: list[dict]  # user and assistant messages, ending with the user's


@lru_cache(maxsize=1)
def _bundled() -> tuple[Probe, ...]:
    return tuple(Probe(item["kind"], item["messages"]) for item in json.loads(GENERAL_REQUESTS_FILE.read_text()))


def general_requests(count: int | None = None) -> list[Probe]:
    """The bundled requests, or `count` of them taken in turn from each kind, so a short probe still covers them all."""
    every = list(_bundled())
    if count is None or count >= len(every):
        return every
    by_kind: dict[str, list[Probe]] = {}
    for probe in every:
        by_kind.setdefault(probe.kind, []).append(probe)
    taken, rank = [], 0
    while len(taken) < count:
        taken += [probes[rank] for probes in by_kind.values() if rank < len(probes)][:count - len(taken)]
        rank += 1
    return taken


def must_not_change(prompts: list[str]) -> list[Probe]:
    """A team's own prompts, one request each."""
    return [Probe(MUST_NOT_CHANGE, [{"role": "user", "content": p}]) for p in prompts]


def probe_key(base_dir: Path, quantized: bool, probes: list[Probe]) -> str:
    """What the base's answers to `probes` depend on: the model's files, its precision and the probes themselves."""
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in base_dir.iterdir() if p.is_file())
    content = json.dumps([str(base_dir.resolve()), files, quantized, MAX_NEW_TOKENS, [[p.kind, p.turns] for p in probes]])
    return hashlib.sha256(content.encode()).hexdigest()


def base_answers(model, tokenizer, probes: list[Probe]) -> list[dict]:
    """The base model's greedy answer to each probe (the adapter switched off) and its log-likelihood: the same
    for every adapter of a base, so evaluations keep them (Store.base_answers) and ask the adapter alone."""
    prompts = _prompts(tokenizer, probes)
    with model.disable_adapter():
        answers = greedy_batch(model, tokenizer, prompts, [MAX_NEW_TOKENS] * len(prompts), PROBE_BATCH)
        likelihoods = _answer_log_likelihoods(model, tokenizer, prompts, answers)
    return [{"ids": ids, "log_likelihood": value} for ids, value in zip(answers, likelihoods)]


def ask_adapter(model, tokenizer, probes: list[Probe], base: list[dict]) -> list[dict]:
    """Each probe's answer from the adapter beside the base's, whether it changed, and the drift: how much
    less likely, in nats a token, the adapter finds the base's own answer."""
    if not probes:
        return []
    prompts = _prompts(tokenizer, probes)
    adapter_ids = greedy_batch(model, tokenizer, prompts, [MAX_NEW_TOKENS] * len(prompts), PROBE_BATCH)
    under_adapter = _answer_log_likelihoods(model, tokenizer, prompts, [b["ids"] for b in base])
    rows = []
    for row, (probe, before, mine, after) in enumerate(zip(probes, base, adapter_ids, under_adapter)):
        base_answer = tokenizer.decode(before["ids"], skip_special_tokens=True).strip()
        adapter_answer = tokenizer.decode(mine, skip_special_tokens=True).strip()
        rows.append({"row": row, "kind": probe.kind, "prompt": _in_words(probe.turns), "base_answer": base_answer,
                     "adapter_answer": adapter_answer, "changed": int(rouge_l(adapter_answer, base_answer) < CHANGED),
                     "drift": (before["log_likelihood"] - after) / max(len(before["ids"]), 1)})
    return rows


def _prompts(tokenizer, probes: list[Probe]) -> list[str]:
    template = "chat" if getattr(tokenizer, "chat_template", None) else DEFAULT_TEMPLATE
    return [build_prompt(p.turns, template, tokenizer) for p in probes]


def _in_words(turns: list[dict]) -> str:
    """A probe as people read it: its last request, after the exchange before it."""
    earlier = " / ".join(f"{t['role']}: {t['content']}" for t in turns[:-1])
    return f"({earlier}) {turns[-1]['content']}" if earlier else turns[-1]["content"]


def _answer_log_likelihoods(model, tokenizer, prompts: list[str], answers: list[list[int]]) -> list[float]:
    """The log-likelihood of each answer's tokens after its prompt, under the model as it is now."""
    import torch

    found = []
    with torch.inference_mode():
        for prompt, answer in zip(prompts, answers):
            start = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if not answer:
                found.append(0.0)
                continue
            ids = torch.tensor([start + answer], device=model.device)
            logits = model(input_ids=ids).logits[0, len(start) - 1:-1].float()
            picked = torch.log_softmax(logits, dim=-1).gather(1, ids[0, len(start):, None])
            found.append(float(picked.sum()))
    return found


@dataclass(frozen=True)
class Forgetting:
    """How far an adapter moved from its base on requests that are not its task."""

    asked: int
    changed: int
    drift: float  # nats a token the base's own answers lost under the adapter (mean over requests)
    base_words: float  # median words of an answer, base and adapter
    adapter_words: float
    kept_asked: int  # the team's must-not-change prompts
    kept_changed: list[str]  # those of them whose answer changed

    @classmethod
    def of(cls, rows: list[dict]) -> "Forgetting":
        general = [r for r in rows if r["kind"] != MUST_NOT_CHANGE]
        kept = [r for r in rows if r["kind"] == MUST_NOT_CHANGE]

        def words(key: str) -> float:
            return statistics.median(len(r[key].split()) for r in general) if general else 0.0

        drift = sum(r["drift"] for r in general) / len(general) if general else 0.0
        return cls(len(general), sum(r["changed"] for r in general), drift, words("base_answer"), words("adapter_answer"),
                   len(kept), [r["prompt"] for r in kept if r["changed"]])

    @property
    def lost(self) -> bool:
        return bool(self.asked) and (self.changed / self.asked >= LOST_CHANGED or self.drift >= LOST_DRIFT)

    @property
    def kept(self) -> bool:
        return not self.asked or (self.changed / self.asked <= KEPT_CHANGED and self.drift <= KEPT_DRIFT)

    def __str__(self) -> str:
        parts = [self._general()] if self.asked else []
        if self.kept_asked:
            if self.kept_changed:
                shown = "; ".join(f"“{p[:60]}”" for p in self.kept_changed[:3])
                parts.append(f"{len(self.kept_changed)} of your {self.kept_asked} must-not-change prompts now get another answer "
                             f"({shown}{'; …' if len(self.kept_changed) > 3 else ''}): see them in Compare.")
            else:
                parts.append("Your must-not-change prompt keeps its answer." if self.kept_asked == 1 else
                             f"All {self.kept_asked} of your must-not-change prompts keep their answers.")
        if self.lost or self.kept_changed:
            parts.append("If people will ask it other things than its task, blend general data into its training "
                         "(Train › Blend in other data) or train fewer steps; if it only ever sees its task, this does not matter.")
        return " ".join(parts)

    def _general(self) -> str:
        drift = f"the base's own answers {'lost' if self.drift >= 0 else 'gained'} {abs(self.drift):.2f} nats a token under it"
        if self.kept:
            return (f"Kept its general skills: {self.asked - self.changed} of {self.asked} ordinary requests get the base "
                    f"model's answer ({drift}).")
        text = f"Changed {self.changed} of {self.asked} general answers ({drift})"
        if self.lost and self.adapter_words <= 3 < self.base_words:
            return text + f"; it now answers everything like a label ({self.adapter_words:g} words against the base's {self.base_words:g})."
        if self.lost and self.adapter_words <= self.base_words / 2:
            return text + f"; its answers are clipped ({self.adapter_words:g} words against the base's {self.base_words:g})."
        return text + (": it lost much of its general skill." if self.lost else ": some of its general skill moved.")

