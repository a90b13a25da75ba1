"""What a user sees before pressing Start: parameters that will train, memory, rough time.

Parameter counts are exact for the known architectures; memory and time are estimates
that say so. The time uses the speed this machine measured in earlier runs; before there is
one, its matrix-product speed (probed once) at the share of it that training typically reaches.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from studio.device import peak_flops, pick_device
from studio.train.recipe import total_steps
from studio.train.spec import TrainSpec

TYPICAL_CPU_UTILISATION = 0.35  # measured 0.38-0.41 on 2-core AVX2 and AVX-512-BF16 CPUs alike: estimate a little long
GPU_TOKENS_PER_SECOND_PER_PARAMETER = 8000.0 * 134_515_008  # a typical GPU trained the 135M model at ~8000 tokens/s


@dataclass(frozen=True)
class Estimate:
    trainable_parameters: int
    base_parameters: int
    memory_gb: float
    steps: int
    minutes: float
    seconds_per_step: float

    def describe(self, device: str) -> str:
        share = 100 * self.trainable_parameters / max(self.base_parameters, 1)
        return (f"**{self.trainable_parameters:,}** parameters will train ({share:.2f}% of {self.base_parameters / 1e6:.0f}M). "
                f"Memory: about **{self.memory_gb:.1f} GB**. Time: roughly **{duration_in_words(self.minutes)}** "
                f"for {self.steps} steps on this machine's {device.upper()}.")


def duration_in_words(minutes: float) -> str:
    """'12 min', or '2.5 h' from 90 minutes on."""
    return f"{max(1, round(minutes))} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def layer_shapes(config: dict) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear layer of one decoder block of a Llama-like model."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim = config.get("head_dim") or hidden // heads
    kv = config.get("num_key_value_heads", heads) * head_dim
    inner = config["intermediate_size"]
    return {"q_proj": (hidden, heads * head_dim), "k_proj": (hidden, kv), "v_proj": (hidden, kv),
            "o_proj": (heads * head_dim, hidden), "gate_proj": (hidden, inner), "up_proj": (hidden, inner),
            "down_proj": (inner, hidden)}


def estimate(spec: TrainSpec, model_dir: Path, train_rows: int, mean_tokens: float, device: str,
             tokens_per_second: float | None = None) -> Estimate:
    """Parameters, memory and time of a run; the time from `tokens_per_second` when this machine measured it."""
    config = json.loads((model_dir / "config.json").read_text())
    shapes = layer_shapes(config)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"] if spec.target_modules == "attention" else list(shapes)
    trainable = config["num_hidden_layers"] * sum(spec.rank * sum(shapes[t]) for t in targets)
    base = sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) // 4  # stored as float32
    bytes_per_weight = 0.56 if spec.method == "qlora" else 4.0
    tokens_per_step = spec.batch_size * min(mean_tokens, spec.max_length)
    activations = tokens_per_step * config["num_hidden_layers"] * config["hidden_size"] * (6 if spec.gradient_checkpointing else 34)
    memory = base * bytes_per_weight + trainable * 16 + activations * 2 + 0.6e9  # + runtime overhead
    steps = total_steps(spec, train_rows)
    speed = tokens_per_second or typical_tokens_per_second(device, base)
    per_step = spec.gradient_accumulation * tokens_per_step / speed
    return Estimate(trainable, base, memory / 1e9, steps, steps * per_step / 60 + 0.3, per_step)


def typical_tokens_per_second(device: str, base_parameters: int) -> float:
    """Training speed to expect before this machine has measured one: on a CPU, its own matrix-product
    speed (bf16 or float32, as training will run) at the usual share; CPUs differ too much for a constant."""
    if device == "cuda":
        return GPU_TOKENS_PER_SECOND_PER_PARAMETER / max(base_parameters, 1)
    return TYPICAL_CPU_UTILISATION * peak_flops(pick_device()) / (4 * max(base_parameters, 1))
