"""TrainSpec: every training setting, its plain-language help, its allowed values, and presets.

Config is data: the Train tab, the CLI flags and the saved adapter's spec.json all come
from the fields below, so a setting is described once.
"""

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field

from studio.errors import SpecError
from studio.store import DatasetRecord

METHODS = ["lora", "qlora", "dora", "rslora"]
TARGET_PRESETS = ["attention", "all-linear"]
SCHEDULERS = ["cosine", "linear", "constant"]
OPTIMIZERS = ["adamw_torch", "adamw_8bit", "paged_adamw_8bit"]
MULTI_GPU = ["ddp", "fsdp"]
OBJECTIVES = ["sft", "dpo", "kto"]
PREFERENCE_OBJECTIVES = ("dpo", "kto")  # the objectives that learn from preference pairs


def setting(default, help: str, minimum=None, maximum=None, choices=None):
    return field(default=default, metadata={"help": help, "min": minimum, "max": maximum, "choices": choices})


@dataclass(frozen=True)
class TrainSpec:
    method: str = setting("lora", "LoRA trains small add-on matrices on a full-precision base. QLoRA loads the base in 4-bit to save memory, at some speed cost. "
                          "DoRA learns the size and the direction of each change apart: often better at low rank, about a third slower. "
                          "rsLoRA scales the adapter so that high ranks (64 and up) learn as steadily as low ones.", choices=METHODS)
    rank: int = setting(16, "Size of the add-on matrices. Higher learns more but trains slower; 8-32 suits most tasks.", 1, 256)
    lora_alpha: int = setting(32, "Strength of the adapter. Usually twice the rank.", 1, 1024)
    lora_dropout: float = setting(0.0, "Share of adapter inputs dropped at random in training, against over-fitting. Off by default: "
                                  "on a CPU drawing the random masks took a sixth of each step; 0.05-0.1 helps on small datasets trained for many epochs.", 0.0, 0.5)
    target_modules: str = setting("all-linear", "Which layers get adapters: 'attention' (fewer, faster) or 'all-linear' (better quality).", choices=TARGET_PRESETS)
    learning_rate: float = setting(2e-4, "How big each learning step is. 1e-4 to 3e-4 is usual for LoRA; lower it if the loss jumps about.", 1e-7, 1e-2)
    epochs: float = setting(1.0, "How many times to go through the data. Ignored when max steps is set.", 0.01, 100.0)
    max_steps: int = setting(0, "Stop after this many steps; 0 means use epochs.", 0, 1_000_000)
    batch_size: int = setting(8, "Examples per step. Larger is steadier but needs more memory.", 1, 512)
    gradient_accumulation: int = setting(1, "Steps whose gradients are added before an update: a larger batch without more memory.", 1, 256)
    max_length: int = setting(512, "Longest example in tokens; longer ones are cut.", 16, 32768)
    warmup_ratio: float = setting(0.03, "Share of training spent slowly raising the learning rate, for a calm start.", 0.0, 0.5)
    scheduler: str = setting("cosine", "How the learning rate falls over training.", choices=SCHEDULERS)
    weight_decay: float = setting(0.0, "Pull of the adapter weights towards zero, against over-fitting.", 0.0, 1.0)
    max_grad_norm: float = setting(1.0, "Cap on the size of each update, against sudden jumps.", 0.0, 100.0)
    optimizer: str = setting("adamw_torch", "The update rule. The 8-bit ones save memory; 'paged' ones need a GPU.", choices=OPTIMIZERS)
    gradient_checkpointing: bool = setting(False, "Recompute activations instead of storing them: less memory, about 30% slower.")
    seed: int = setting(42, "Makes a run repeatable.", 0, 2**31 - 1)
    responses_only: bool = setting(True, "Learn from the answers only, not from the prompts.")
    save_steps: int = setting(25, "Save a checkpoint every this many steps, so a crash loses little.", 1, 100_000)
    early_stopping_patience: int = setting(0, "Stop when the validation loss has not improved for this many checkpoints, and keep the best one. "
                                              "0 turns it off. Needs validation rows; with it on, a checkpoint is evaluated at least ten times a run.", 0, 100)
    gpus: int = setting(1, "GPUs this job trains on at once. More than 1 needs a worker that holds that many (python -m jobs.worker --gpu 0,1).", 1, 64)
    multi_gpu: str = setting("ddp", "How several GPUs share the work: 'ddp' gives each a whole copy of the model (LoRA and QLoRA); "
                                    "'fsdp' splits the model across them, for models too big for one GPU (LoRA, DoRA, rsLoRA).", choices=MULTI_GPU)
    objective: str = setting("sft", "What the run learns from: 'sft' imitates the answers of instruction data; 'dpo' learns from "
                                    "preference pairs to prefer the chosen answer over the rejected one (usually after 'sft', continuing its adapter); "
                                    "'kto' learns from the same pairs taken one answer at a time, each marked good or bad: steadier than DPO "
                                    "when the two answers of a pair are far apart or of mixed quality.",
                             choices=OBJECTIVES)
    beta: float = setting(0.1, "DPO and KTO only: how closely the adapter is held to where it started. Lower lets it move further from "
                               "its starting answers; 0.1 is usual.", 0.01, 1.0)
    start_adapter_id: int | None = setting(None, "Continue from this adapter's weights (its id) instead of starting afresh. It must be trained on the "
                                                 "same base model; its rank, alpha and target layers are used, whatever is set here.", 1, 2**31 - 1)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainSpec":
        """Build and validate a spec, naming each unknown or bad field."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(f"Unknown training setting: {', '.join(unknown)}. Known settings: {', '.join(sorted(known))}.")
        coerced, problems = {}, []
        for name, value in values.items():
            try:
                coerced[name] = _coerce(cls, name, value)
            except SpecError as error:
                problems.append(str(error))
        problems += cls.problems(coerced)
        if problems:
            raise SpecError(" ".join(problems))  # every bad field at once, not the first alone
        spec = cls(**coerced)
        spec.validate()
        return spec

    @classmethod
    def problems(cls, values: dict) -> list[str]:
        """What is wrong with each of these (coerced) values, field by field."""
        found = []
        for f in dataclasses.fields(cls):
            value, meta = values.get(f.name), f.metadata
            if value is None:
                continue  # an optional setting left unset, or a default
            if meta["choices"] and value not in meta["choices"]:
                found.append(f"{label(f.name)} must be one of {', '.join(meta['choices'])}, not '{value}'.")
            elif meta["min"] is not None and not meta["min"] <= value <= meta["max"]:
                found.append(f"{label(f.name)} must be between {meta['min']} and {meta['max']}, not {value}.")
        return found

    def validate(self) -> None:
        problems = self.problems(dataclasses.asdict(self))
        if problems:
            raise SpecError(" ".join(problems))
        if self.gpus > 1 and self.multi_gpu == "fsdp" and self.method == "qlora":
            raise SpecError("QLoRA trains on several GPUs with 'ddp', not 'fsdp'. Choose ddp, or LoRA to split a model with fsdp.")
        if self.optimizer == "paged_adamw_8bit" and not _cuda():
            raise SpecError("The paged 8-bit optimizer needs a GPU. Choose adamw_torch or adamw_8bit on this machine.")


def _coerce(cls, name: str, value):
    kind = {f.name: f.type for f in dataclasses.fields(cls)}[name]
    if isinstance(kind, types.UnionType):  # an optional setting: None, or a value of its one other type
        if value is None or value == "":
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(kind, kind) if isinstance(kind, str) else kind
    try:
        if kind is bool and isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        if kind is int and isinstance(value, float) and value != int(value):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise SpecError(f"{label(name)} must be {KIND_NAMES.get(kind, 'text')}, not {value!r}.") from None


KIND_NAMES = {int: "a whole number", float: "a number", bool: "yes or no"}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


LABELS = {"lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout", "gpus": "GPUs", "multi_gpu": "Multi-GPU mode",
          "max_grad_norm": "Gradient clipping (max norm)", "warmup_ratio": "Warm-up share", "responses_only": "Learn from answers only",
          "save_steps": "Checkpoint every (steps)", "start_adapter_id": "Continue from adapter", "early_stopping_patience": "Early stopping patience",
          "target_modules": "Target layers", "max_length": "Max length (tokens)"}


def label(name: str) -> str:
    """A setting's name as people read it ("LoRA alpha", not "Lora alpha")."""
    return LABELS.get(name, name.replace("_", " ").capitalize())


def help_for(name: str) -> str:
    return {f.name: f.metadata["help"] for f in dataclasses.fields(TrainSpec)}[name]


def check_objective(dataset: DatasetRecord, spec: TrainSpec) -> None:
    """DPO and KTO learn from preference pairs, instruction tuning from instructions: refuse the wrong kind of dataset
    before a job is queued."""
    if spec.objective in PREFERENCE_OBJECTIVES and dataset.shape != "preference":
        raise SpecError(f"Dataset {dataset.id} '{dataset.name}' holds instructions and answers, not preference pairs, so "
                        f"{spec.objective.upper()} cannot train on it. Save a preference file (prompt, chosen, rejected) or your "
                        "Chat feedback as a dataset, or train this one with the 'sft' objective.")
    if spec.objective not in PREFERENCE_OBJECTIVES and dataset.shape == "preference":
        raise SpecError(f"Dataset {dataset.id} '{dataset.name}' holds preference pairs: train it with the 'dpo' or 'kto' "
                        "objective (Preference training, under Advanced settings; --objective on the command line).")
