"""The training plan: how long and how fast to train, chosen from the data and the machine.

OpenAI's fine-tuning API picks epochs from the dataset size alone: 3 by default, raised so
that small sets reach about 100 example views (at most 25 epochs), lowered so that large ones
stay near 25,000. What decides whether an adapter learns is the number of optimizer updates
and their size, so the plan targets a number of optimizer steps instead: a small dataset is
gone through many times (bounded, so a handful of rows is not drilled forever), a large one
once or less; the learning rate suits the method and rank; early stopping on the held-out
loss keeps the best checkpoint, so the extra passes cannot over-fit unnoticed.

Auto does not aim at a number of steps: it trains until the held-out loss stops improving
(AUTO_PATIENCE checks in a row without one better by studio.train.recipe.MIN_IMPROVEMENT),
keeping the best checkpoint, within a ceiling of MAX_PASSES passes and a time budget on this
machine (the ceiling is never below Balanced's steps where the budget allows them). Why: on real
data (77 bank intents, 616 rows) the held-out loss was still falling at 300 steps when the old
Auto, aiming at ~150 steps, stopped at 148; its answers were 40 % right, against 66 % after 425.

Measured on the bundled model (issue 14): 400 routing tickets needed 3 passes (144 steps) for
100 % held-out exact answers, 70 facts ~15 passes at 5e-4 for ROUGE-L 0.91.

Preference data (DPO, KTO) gets its own plan: fewer steps and passes (a pair moves an adapter much
further than an instruction row does, and repeated passes push the margins away), a learning rate
PREFERENCE_RATE_FACTOR times instruction tuning's, beta 0.1, and no early stopping (its held-out loss
is not the thing to watch). PREFERENCE_COST is what a pair costs in instruction-tuning tokens.
"""

import dataclasses
import math
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from studio.data.instructions import count_tokens, load_records, split_indices
from studio.data.preferences import count_pair_tokens
from studio.data.prompts import get_template, render
from studio.errors import SpecError
from studio.models.catalog import load_tokenizer
from studio.store import DatasetRecord, Store
from studio.train.estimate import duration_in_words, estimate
from studio.train.spec import TrainSpec

PRESETS = ["Auto", "Quick test", "Balanced", "Thorough"]
PRESET_FLAGS = {"auto": "Auto", "quick": "Quick test", "balanced": "Balanced", "thorough": "Thorough"}  # the CLI's names
PRESET_HELP = {
    "Auto": "Trains until the held-out loss stops improving and keeps the best checkpoint: at least Balanced's steps, at most {budget} on this machine.",
    "Quick test": "A fifth of Balanced's steps (at most 30), to check that everything works; it will rarely learn the task.",
    "Balanced": "About {target} optimizer steps: small datasets are seen many times (at most {passes} passes), large ones once.",
    "Thorough": "Twice Balanced's steps at rank 32, for hard tasks; takes longer.",
}
TARGET_STEPS = 150  # enough updates for the bundled model to learn a new format or a few dozen facts
MAX_PASSES = 20  # beyond this a tiny dataset is memorised word for word, not learned
MIN_STEPS_PER_PASS = 8  # small datasets get smaller batches, so a pass is still several updates
BATCH_SIZE = 8
BUDGET_MINUTES = {"cpu": 15.0, "cuda": 60.0}  # Auto's cap on the training loop
MIN_STEPS_WHEN_CUT = 100  # Auto's time budget never cuts a run below this many steps
AUTO_PATIENCE = 4  # Auto's checks without a better held-out loss before it stops
CHECKS_IN_BALANCED = 10  # Auto checks the held-out loss this many times in Balanced's steps (more often costs more than it tells)
CHECK_COST = 2  # and at most every this many times its validation batches, so checking stays a small part of the run
METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA", "dora": "DoRA", "rslora": "rsLoRA"}
PATIENCE = 3  # checks (a tenth of the run apart) without a better held-out loss before stopping
# A few rows seen many times are soon memorised word for word; dropout and larger steps make the adapter learn what
# they say instead. Measured on 24 made-up facts asked in new words (benchmarks/quality.py, clinic): ROUGE-L 0.76
# at 5e-4 without dropout, 0.81 with dropout 0.1, 0.85 with dropout 0.1 at 1e-3.
MANY_PASSES = 6
SMALL_DATA_DROPOUT = 0.1
SMALL_DATA_RATE_FACTOR = 2
PREFERENCE_TARGET_STEPS = 60  # see the module's docstring and benchmarks/preference_rate.py
PREFERENCE_MAX_PASSES = 3
# Of instruction tuning's learning rate. Measured (benchmarks/preference_rate.py, fresh rank-16 LoRA, DPO, 24 pairs, 12 steps):
# 5e-5 left the loss at 0.60, 2e-4 took it to 0.10, 5e-4 to 0.0008 (the margins running away); held-out pairs were
# all preferred at each. A plan runs about five times as many steps, so it takes 1e-4.
PREFERENCE_RATE_FACTOR = 0.2
# A pair's cost in instruction-tuning tokens, per token of its prompt twice and both answers: DPO also scores both
# answers under the reference (a forward pass, no backward); KTO scores each answer and a mismatched one, under the
# adapter and the reference. Measured roughly by benchmarks/preference_rate.py on a loaded CPU: 1.26 s an SFT row
# (~33 tokens), 3.5 s a DPO pair (~77), 6.3 s a KTO pair.
PREFERENCE_COST = {"dpo": 1.2, "kto": 2.1}
OBJECTIVE_NAMES = {"dpo": "DPO", "kto": "KTO"}


def preset_help(device: str) -> str:
    """What each preset does, in one line each, for the Train tab."""
    values = {"budget": f"{BUDGET_MINUTES[device]:.0f} min", "target": TARGET_STEPS, "passes": MAX_PASSES}
    return " ".join(f"{name}: {PRESET_HELP[name].format(**values)}" for name in PRESETS)


@dataclass(frozen=True)
class DataStats:
    rows: int
    train_rows: int
    validation_rows: int
    mean_tokens: float  # prompt and answer, per row; a pair's prompt twice and both its answers
    pairs: bool = False  # preference pairs, for DPO or KTO


@dataclass(frozen=True)
class Plan:
    preset: str
    spec: TrainSpec
    stats: DataStats
    steps: int
    passes: float
    minutes: float
    capped: bool  # the time budget cut the run short of the preset's steps
    kept: list[str]  # settings the user chose that the plan left as they were
    until_stopped: bool = False  # Auto: steps and minutes are a ceiling; it stops when the held-out loss stops improving

    def describe(self) -> str:
        """The plan in words and numbers, as the Train tab and the CLI show it before training."""
        s, spec = self.stats, self.spec
        kind = "pairs" if s.pairs else "examples"
        held = f"{s.validation_rows} held out to check on" if s.validation_rows else f"none held out (too few {'pairs' if s.pairs else 'rows'})"
        seen = f"each seen {self.passes:.0f} times" if self.passes >= 1.5 else (
            "each seen once" if self.passes >= 0.95 else f"{self.passes:.0%} of them seen once")
        what = f"{OBJECTIVE_NAMES[spec.objective]} on " if s.pairs and spec.objective in OBJECTIVE_NAMES else ""
        batch = spec.batch_size * spec.gradient_accumulation
        if self.until_stopped:
            lines = [f"**{self.preset}**: {what}{s.rows} {kind} ({s.train_rows} to train on, {held}). Trains until the held-out loss "
                     f"stops improving, checked every {spec.save_steps} steps, and keeps the best checkpoint: "
                     f"**at most {self.steps} steps** of {batch} (each example seen up to {self.passes:.0f} times), "
                     f"at most **{duration_in_words(self.minutes)}** on this machine."]
        else:
            lines = [f"**{self.preset}**: {what}{s.rows} {kind} ({s.train_rows} to train on, {held}), {seen}: "
                     f"**{self.steps} steps** of {batch}, about **{duration_in_words(self.minutes)}** on this machine."]
        lines.append(f"Learning rate {spec.learning_rate:g} ({_rate_reason(spec, s.pairs, self.passes)}), rank {spec.rank}, alpha {spec.lora_alpha}"
                     + (f", beta {spec.beta:g} (how closely the adapter stays to where it started)." if s.pairs else "."))
        if s.pairs:
            lines.append("Watch the reward margin and preference accuracy in the Jobs tab: both should rise. "
                         "Preference training has no early stopping; few passes keep the margins from running away.")
        elif self.until_stopped:
            lines.append(f"It stops after {spec.early_stopping_patience} checks in a row without a better held-out loss, "
                         "so a task learned early ends early and one still improving goes on.")
        elif spec.early_stopping_patience and s.validation_rows:
            lines.append(f"Stops early if the held-out loss has not improved for {spec.early_stopping_patience} checks in a row, "
                         "and keeps the best checkpoint, so extra passes cannot over-fit unnoticed.")
        elif not s.validation_rows:
            lines.append("With no rows held out there is no early stopping, and the verdict is judged on training rows "
                         "(it shows that the adapter learned them, not that it generalises). Save the data with more rows to hold some out.")
        if self.capped and self.until_stopped:
            lines.append("The ceiling is Auto's time budget on this machine; choose Thorough, or set the steps, to train longer.")
        elif self.capped:
            lines.append("Cut to fit Auto's time budget on this machine; choose Balanced or Thorough to train the full plan.")
        if self.kept:
            lines.append(f"Kept as you set them: {', '.join(self.kept)}.")
        return "\n\n".join(lines)


def _rate_reason(spec: TrainSpec, pairs: bool, passes: float) -> str:
    if pairs:
        return f"{PREFERENCE_RATE_FACTOR:g} times instruction tuning's for {METHOD_NAMES[spec.method]} at rank {spec.rank}: a pair moves the adapter further"
    if spec.method == "rslora":
        return "lower for rsLoRA, whose scaling makes each step larger"
    if passes >= MANY_PASSES and spec.lora_dropout:
        return (f"twice the usual for {METHOD_NAMES[spec.method]} at rank {spec.rank}, with adapter dropout {spec.lora_dropout:g}: "
                "few examples seen many times are otherwise learned word for word instead of what they say")
    return f"suited to {METHOD_NAMES[spec.method]} at rank {spec.rank}"


def learning_rate(method: str, rank: int) -> float:
    """5e-4 for LoRA at rank 16 (alpha 2 x rank), lower for higher ranks (more weights move at once) and
    four times lower for rsLoRA, whose alpha / sqrt(rank) scaling is four times LoRA's at rank 16."""
    rate = 5e-4 * math.sqrt(16 / rank) * (0.25 if method == "rslora" else 1.0)
    return float(f"{min(1e-3, max(5e-5, rate)):.2g}")


def make_plan(stats: DataStats, preset: str, settings: dict, device: str, model_dir: Path,
              tokens_per_second: float | None = None) -> Plan:
    """The spec a preset gives on this data, with the settings the user chose kept as they are.

    `settings` holds only what the user set (method included); `tokens_per_second` is the real
    speed measured on this machine, if any. Raises SpecError for a bad preset or setting.
    """
    if preset not in PRESETS:
        raise SpecError(f"There is no preset '{preset}'. Choose one of: {', '.join(PRESETS)}.")
    method = settings.get("method", "lora")
    rank = int(settings.get("rank", 32 if preset == "Thorough" else 8 if preset == "Quick test" else 16))
    batch = min(BATCH_SIZE, stats.train_rows, max(2, stats.train_rows // MIN_STEPS_PER_PASS))
    rate = learning_rate(method, rank) * (PREFERENCE_RATE_FACTOR if stats.pairs else 1.0)
    planned = {"rank": rank, "lora_alpha": 2 * rank, "learning_rate": float(f"{rate:.2g}"), "batch_size": batch,
               "early_stopping_patience": PATIENCE if stats.validation_rows and preset != "Quick test" and not stats.pairs else 0,
               "objective": "dpo" if stats.pairs else "sft"}
    spec = TrainSpec.from_dict({**planned, **settings, "epochs": 1.0, "max_steps": 0})
    per_pass = math.ceil(stats.train_rows / (spec.batch_size * spec.gradient_accumulation))
    balanced = PREFERENCE_TARGET_STEPS if stats.pairs else TARGET_STEPS
    target = {"Quick test": balanced // 5, "Thorough": 2 * balanced}.get(preset, balanced)
    most = PREFERENCE_MAX_PASSES if stats.pairs else MAX_PASSES
    max_passes = most * 3 // 2 if preset == "Thorough" else most
    passes = min(max_passes, max(1, round(target / per_pass)))
    if passes >= MANY_PASSES and preset != "Quick test" and not stats.pairs:
        planned.update(lora_dropout=SMALL_DATA_DROPOUT, learning_rate=min(1e-3, SMALL_DATA_RATE_FACTOR * planned["learning_rate"]))
        spec = TrainSpec.from_dict({**planned, **settings, "epochs": 1.0, "max_steps": 0})
    steps = min(per_pass * passes, 30) if preset == "Quick test" else per_pass * passes
    speed = tokens_per_second  # None: estimate's typical speed for this model size
    cost = stats.mean_tokens * PREFERENCE_COST.get(spec.objective, 1.0)  # in instruction-tuning tokens per row
    minutes = estimate(spec, model_dir, stats.train_rows, cost, device, speed).seconds_per_step * steps / 60
    capped = False
    until_stopped = preset == "Auto" and bool(spec.early_stopping_patience) and not {"epochs", "max_steps"} & set(settings)
    if until_stopped:
        # A ceiling, not a target: MAX_PASSES passes or the time budget, never below Balanced's steps (or, on a slow
        # machine, MIN_STEPS_WHEN_CUT); early stopping ends the run when the held-out loss stops improving.
        per_step = minutes / steps
        within_budget = int(BUDGET_MINUTES[device] / per_step)
        ceiling = per_pass * max(passes, MAX_PASSES)
        most = min(max(min(ceiling, within_budget), min(steps, MIN_STEPS_WHEN_CUT)), ceiling)
        # Checks: about CHECKS_IN_BALANCED in Balanced's steps, fewer where the validation rows are many, at least four a run.
        check_every = max(1, min(max(steps // CHECKS_IN_BALANCED, math.ceil(CHECK_COST * stats.validation_rows / spec.batch_size)),
                                 most // 4))
        planned.update(save_steps=check_every, early_stopping_patience=AUTO_PATIENCE)
        spec = TrainSpec.from_dict({**planned, **settings, "epochs": 1.0, "max_steps": 0})
        steps, minutes, capped = most, per_step * most, within_budget < ceiling
    elif preset == "Auto" and minutes > BUDGET_MINUTES[device]:
        # Cut to the budget, but never below what can learn a task: a slow machine gets a longer run, said in minutes.
        cut = max(min(steps, MIN_STEPS_WHEN_CUT), int(steps * BUDGET_MINUTES[device] / minutes))
        steps, minutes, capped = cut, minutes * cut / steps, cut < steps
    chosen = {"max_steps": steps} if capped or until_stopped or preset == "Quick test" or steps % per_pass else {"epochs": float(passes)}
    if "epochs" in settings or "max_steps" in settings:  # the user's length wins
        chosen = {k: settings[k] for k in ("epochs", "max_steps") if k in settings}
        user = TrainSpec.from_dict({**planned, **settings})
        steps = user.max_steps or max(1, math.ceil(per_pass * user.epochs))
        minutes = estimate(user, model_dir, stats.train_rows, cost, device, speed).seconds_per_step * steps / 60
        capped = False
    spec = TrainSpec.from_dict({**dataclasses.asdict(spec), **{"epochs": 1.0, "max_steps": 0}, **chosen})
    kept = [f"{k.replace('_', ' ')} {getattr(spec, k):g}" for k in settings if k in planned and k != "objective" or k in ("epochs", "max_steps")]
    return Plan(preset, spec, stats, steps, steps / per_pass, minutes, capped, kept, until_stopped)


@lru_cache(maxsize=16)
def _token_counts(path: Path, template: str, model_dir: Path, pairs: bool) -> tuple[int, ...]:
    tokenizer = load_tokenizer(model_dir)
    records = load_records(path)
    if not pairs:
        return tuple(count_tokens([render(r, get_template(template), tokenizer) for r in records], tokenizer))
    # A pair's prompt is read twice, once before each answer.
    return tuple(2 * prompt + chosen + rejected for prompt, chosen, rejected in count_pair_tokens(records, tokenizer))


def dataset_stats(dataset: DatasetRecord, model_dir: Path) -> DataStats:
    """Rows (or pairs), the split and tokens per row of a saved dataset (cached: its file never changes)."""
    pairs = dataset.shape == "preference"
    counts = _token_counts(dataset.path, dataset.template, model_dir, pairs)
    train, held_out = split_indices(len(counts), dataset.validation_fraction, dataset.split_seed)
    return DataStats(len(counts), len(train), len(held_out), sum(counts) / max(len(counts), 1), pairs)


def measured_tokens_per_second(store: Store, base_model: str) -> float | None:
    """The real training speed of the newest finished run on this base model, as its job measured it."""
    for job in store.jobs(("succeeded", "cancelled")):
        if job.kind == "train" and job.base_model == base_model:
            speeds = [m["tokens_per_second"] for m in store.metrics(job.id) if m["tokens_per_second"]]
            if len(speeds) >= 3:
                return statistics.median(speeds[1:])  # the first step pays for warm-up
    return None
