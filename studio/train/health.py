"""Training health: what experienced engineers watch in a run, said in plain words with what to change.

Checks read the metrics a job stored (so the Jobs tab can warn while it runs) and the adapter's
result summary (after it ends); each warning names the step and the setting to change.
"""

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class HealthWarning:
    kind: str  # diverged, loss_rising, grad_spike, over_fitting, zero_layers, never_stops, chosen_falling, margin_runaway
    message: str  # what happened, and what to change


def diverged_message(step: int, loss: float, learning_rate: float) -> str:
    return (f"Training stopped at step {step}: the loss became {loss} (no longer a number), so nothing more can be learned. "
            f"The learning rate ({learning_rate:g}) is too high for this model and data: lower it, for example to "
            f"{learning_rate / 10:g}, keep 'Max grad norm' at 1.0, and start again.")


def training_warnings(metrics: list[dict], summary: dict | None = None) -> list[HealthWarning]:
    """Warnings for a run from its stored metrics (step, loss, eval_loss, grad_norm) and, once it
    ended, its result summary."""
    trained = [m for m in metrics if m.get("loss") is not None]
    warnings = [w for w in (_loss_rising(trained), _grad_spike(trained), _over_fitting(metrics)) if w] + preference_warnings(metrics)
    if summary and summary.get("zero_layers"):
        warnings.append(HealthWarning("zero_layers", f"{summary['zero_layers']} adapter layers still hold only zeros: they learned "
                                      "nothing. Raise the learning rate or train for more steps."))
    return warnings


def _loss_rising(trained: list[dict]) -> HealthWarning | None:
    lowest = math.inf
    for index, m in enumerate(trained):
        if index and m["loss"] > 2 * lowest and m["loss"] > lowest + 1.0:
            return HealthWarning("loss_rising", f"The training loss jumped to {m['loss']:.3g} at step {m['step']}, more than twice its "
                                 f"lowest ({lowest:.3g}): the run is becoming unstable. Lower the learning rate (for example by half) "
                                 "and keep 'Max grad norm' at 1.0.")
        lowest = min(lowest, m["loss"])
    return None


def _grad_spike(trained: list[dict]) -> HealthWarning | None:
    norms = [(m["step"], m["grad_norm"]) for m in trained if m.get("grad_norm") is not None and math.isfinite(m["grad_norm"])]
    for index in range(5, len(norms)):
        usual = statistics.median(n for _, n in norms[:index])
        step, norm = norms[index]
        if usual > 0 and norm > 10 * usual:
            return HealthWarning("grad_spike", f"The gradient norm spiked to {norm:.3g} at step {step}, over ten times its usual "
                                 f"{usual:.3g}: one batch pushed the adapter hard. If the loss jumps too, lower the learning rate "
                                 "or set 'Max grad norm' to 1.0; look at the rows of that batch for broken examples.")
    return None


def _over_fitting(metrics: list[dict]) -> HealthWarning | None:
    evaluated = [m for m in metrics if m.get("eval_loss") is not None]
    if len(evaluated) < 3:
        return None
    last = evaluated[-3:]
    rising = last[0]["eval_loss"] < last[1]["eval_loss"] < last[2]["eval_loss"]
    train_losses = [m["loss"] for m in metrics if m.get("loss") is not None and last[0]["step"] <= m["step"] <= last[2]["step"]]
    if rising and len(train_losses) >= 2 and train_losses[-1] < train_losses[0]:
        return HealthWarning("over_fitting", f"The validation loss has risen three evaluations in a row (to {last[2]['eval_loss']:.3g} at "
                             f"step {last[2]['step']}) while the training loss keeps falling: the adapter is memorising its examples "
                             "instead of learning the task. Turn on early stopping, train fewer epochs, or add more varied data.")
    return None


def preference_warnings(metrics: list[dict]) -> list[HealthWarning]:
    """Warnings about a preference run (DPO, KTO) from its steps' reward margins and chosen log-likelihoods; none for
    other runs, whose steps record neither."""
    steps = [m for m in metrics if m.get("reward_margin") is not None and m.get("chosen_logp") is not None]
    if len(steps) < 2:
        return []
    warnings = []
    first, last = steps[0]["chosen_logp"], steps[-1]["chosen_logp"]
    if last < first - max(5.0, abs(first)):
        warnings.append(HealthWarning("chosen_falling", f"The chosen answers became much less likely ({first:.1f} → {last:.1f}): the "
                                      "adapter is pushing the rejected answers down by unlearning the chosen ones too. Lower the "
                                      "learning rate or raise beta."))
    if steps[-1]["reward_margin"] > 10:
        warnings.append(HealthWarning("margin_runaway", f"The reward margin ran away to {steps[-1]['reward_margin']:.1f}: the adapter "
                                      "has moved far from where it started and may answer oddly elsewhere. Raise beta, lower the "
                                      "learning rate or train fewer steps."))
    return warnings


def evaluation_warnings(evaluation) -> list[HealthWarning]:
    """After training: answers that never stop mean the model did not learn where an answer ends."""
    from studio.data.held_out import MAX_ANSWERS

    answered = min(evaluation.rows, MAX_ANSWERS) if evaluation else 0
    if not answered or evaluation.adapter_unstopped * 2 < answered:  # half or more never stopped
        return []
    return [HealthWarning("never_stops", f"{evaluation.adapter_unstopped} of {answered} of the adapter's answers to held-out prompts ran on to the "
                          "length limit without ending. The model has not learned where an answer stops: check that the prompt "
                          "format adds the end-of-sequence token after each answer (the Data tab's preview shows it), and that "
                          "'Learn from the answers only' is on.")]


def zero_lora_layers(model) -> list[str]:
    """Names of LoRA B matrices that are still all zero (they start at zero, so these never learned)."""
    return [name for name, parameter in model.named_parameters() if "lora_B" in name and not parameter.detach().any()]
