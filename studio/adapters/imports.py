"""Adapters made outside the studio's own training: any peft LoRA folder or zip becomes a registered adapter.

An adapter is checked before anything is kept (safetensors weights only, a peft LoRA config, a
base model available here whose layers fit the adapter's shapes), then copied into
STUDIO_HOME/adapters under a staging name and renamed into place, so a refused or interrupted
import leaves nothing behind and never touches what is already saved.
"""

import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

from studio.adapters.registry import slug
from studio.errors import AdapterImportError, ModelError, NotFound
from studio.models.catalog import BUNDLED, BUNDLED_NAME, PICKLE_SUFFIXES, load_tokenizer, resolve_model
from studio.settings import Settings
from studio.staging import move_into_place, scratch_folder
from studio.store import AdapterRecord, Store

WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.(?P<part>lora_A|lora_B)(?:\.[^.]+)?\.weight$")


def resolve_adapter(store: Store, settings: Settings, ref: str) -> AdapterRecord:
    """The adapter a user named: a registered one by id, name or folder, or any peft adapter folder.

    A folder that is not registered is imported first; a copy of a registered adapter (same
    weights, e.g. `train --output DIR`) is that adapter. Raises NotFound for a name that is
    neither, AdapterImportError for a folder that cannot be imported.
    """
    try:
        return store.find_adapter(ref)
    except NotFound:
        if not Path(ref).expanduser().is_dir():
            raise
    return import_adapter(store, settings, Path(ref).expanduser())


def import_adapter(store: Store, settings: Settings, source: Path, name: str = "", base_model: str = "",
                   template: str = "") -> AdapterRecord:
    """Register a peft LoRA adapter from a folder or a .zip, as a copy under STUDIO_HOME/adapters.

    `base_model` (a model reference) overrides the base the adapter names; `template` the prompt
    format it was trained with (default: its spec.json, else the base's chat template if it has one).
    Returns the adapter already registered when its weights are the same. Raises AdapterImportError
    for unsafe or incomplete input and for an adapter whose base is not here or does not fit.
    """
    with scratch_folder(settings.adapters_dir) as staging:
        folder = _unpack(source, staging / "in", settings.max_upload_bytes) if source.is_file() else _copy(source, staging / "in")
        config = _check_folder(folder, source)
        spec = json.loads((folder / "spec.json").read_text()) if (folder / "spec.json").is_file() else {}
        base_ref = base_model or spec.get("base_model") or _base_ref(config)
        base_dir = _base_dir(base_ref, config, settings)
        check_fits(folder, base_dir)
        digest = _sha256(folder / WEIGHTS)
        same = next((a for a in store.adapters() if _weights_digest(a) == digest), None)
        if same is not None:
            return same
        _complete(folder, base_dir, base_ref, spec, template)
        label = name or spec.get("name") or source.stem
        target = settings.adapters_dir / f"import-{slug(label)}-{digest[:10]}"
        move_into_place(folder, target)
    return store.add_adapter(name=label, job_id=None, path=target, base_model=base_ref, dataset_hash=spec.get("dataset_hash", ""),
                             method=_method(config, spec), spec={**spec.get("spec", {}), "rank": config.get("r")},
                             summary={"imported_from": str(source), "weights_sha256": digest}, status="complete", parent_id=None)


def _copy(source: Path, target: Path) -> Path:
    if not source.is_dir():
        raise AdapterImportError(f"'{source}' is neither an adapter folder nor a .zip file. Give the folder that holds "
                                 "adapter_config.json, or a zip of it.")
    _refuse_pickles([p.name for p in source.rglob("*") if p.is_file()], source)
    shutil.copytree(source, target, symlinks=False)
    return target


def _unpack(archive: Path, target: Path, max_bytes: int) -> Path:
    """Extract a zip after checking every entry: no pickles, no paths leaving the folder, not too large."""
    if not zipfile.is_zipfile(archive):
        raise AdapterImportError(f"'{archive.name}' is not a zip file. Give an adapter folder or a .zip of one.")
    with zipfile.ZipFile(archive) as zipped:
        entries = [e for e in zipped.infolist() if not e.is_dir()]
        _refuse_pickles([Path(e.filename).name for e in entries], archive)
        unsafe = [e.filename for e in entries if Path(e.filename).is_absolute() or ".." in Path(e.filename).parts]
        if unsafe:
            raise AdapterImportError(f"'{archive.name}' holds paths outside its own folder ({', '.join(unsafe[:3])}), so it "
                                     "was not unpacked. Zip the adapter folder itself.")
        if sum(e.file_size for e in entries) > max_bytes:
            raise AdapterImportError(f"'{archive.name}' unpacks to more than {max_bytes // 2**20} MB (STUDIO_MAX_UPLOAD_MB). "
                                     "An adapter is far smaller: zip only the adapter folder.")
        zipped.extractall(target)
    configs = sorted(target.rglob("adapter_config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise AdapterImportError(f"'{archive.name}' holds no adapter_config.json, so it is not a peft adapter. "
                                 "Zip the folder that adapter.save_pretrained() wrote.")
    return configs[0].parent


def _refuse_pickles(names: list[str], source: Path) -> None:
    pickled = sorted({n for n in names if Path(n).suffix in PICKLE_SUFFIXES})
    if pickled:
        raise AdapterImportError(f"'{source.name}' holds pickle weights ({', '.join(pickled)}), which can run code when "
                                 "loaded, so it was not imported. Save the adapter with safe_serialization=True "
                                 "(adapter_model.safetensors) and import that.")


def _check_folder(folder: Path, source: Path) -> dict:
    if not (folder / "adapter_config.json").is_file():
        raise AdapterImportError(f"'{source}' has no adapter_config.json, so it is not a peft adapter. Give the folder "
                                 "that adapter.save_pretrained() wrote.")
    if not (folder / WEIGHTS).is_file():
        raise AdapterImportError(f"'{source}' has no {WEIGHTS}. The studio reads safetensors weights only.")
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise AdapterImportError(f"The adapter_config.json of '{source}' is not valid JSON.") from None
    if config.get("peft_type") != "LORA":
        raise AdapterImportError(f"'{source}' is a {config.get('peft_type') or 'unknown'} adapter; the studio works with "
                                 "LoRA adapters (LoRA, QLoRA, DoRA, rsLoRA) only.")
    _shapes(folder / WEIGHTS, source)
    return config


def _base_ref(config: dict) -> str:
    """The base named in adapter_config.json; the bundled model under any of its names."""
    named = str(config.get("base_model_name_or_path") or "")
    return BUNDLED if Path(named.rstrip("/")).name == BUNDLED_NAME else named


def _base_dir(base_ref: str, config: dict, settings: Settings) -> Path:
    if not base_ref:
        raise AdapterImportError("The adapter does not say which base model it was trained on (no base_model_name_or_path "
                                 "in adapter_config.json). Name it: the Base model field, or --base on the command line.")
    try:
        return resolve_model(base_ref, settings.models_dir)
    except ModelError as error:
        raise AdapterImportError(f"The adapter was trained on '{base_ref}', which is not available here: {error} "
                                 "Name a local copy of that base (the Base model field, or --base).") from None


def safetensors_shapes(weights: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header, after checking the file holds every byte the header promises.

    Raises ValueError saying what is wrong: a truncated file still has a readable header.
    """
    size = weights.stat().st_size
    with open(weights, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        if length <= 0 or length + 8 > size:
            raise ValueError("its header is incomplete")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ValueError("its header is not valid JSON") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
    if 8 + length + end > size:
        raise ValueError(f"it holds {size:,} bytes of the {8 + length + end:,} its header describes")
    return {key: value["shape"] for key, value in tensors.items()}


def _shapes(weights: Path, source: Path | None = None) -> dict[str, list[int]]:
    try:
        return safetensors_shapes(weights)
    except (OSError, ValueError) as error:
        raise AdapterImportError(f"The weights in '{source or weights}' cannot be read ({error}); the file may be truncated. "
                                 "Copy or download it again.") from None


def check_fits(adapter_dir: Path, base_dir: Path) -> None:
    """Refuse an adapter whose LoRA layers do not exist in the base or have other shapes than its layers."""
    base_shapes = {}
    for weights in sorted(base_dir.glob("*.safetensors")):
        base_shapes.update(_shapes(weights))
    for key, shape in _shapes(adapter_dir / WEIGHTS).items():
        found = LORA_KEY.match(key)
        if not found:
            continue
        module = found["module"]
        base = base_shapes.get(f"{module}.weight") or base_shapes.get(f"{module}.base_layer.weight")
        if base is None:
            raise AdapterImportError(f"The adapter changes layer '{module}', which the base model {base_dir.name} does not have: "
                                     "it was trained on another base. Name the base it was trained on.")
        fits = shape[1] == base[1] if found["part"] == "lora_A" else shape[0] == base[0]
        if len(base) != 2 or not fits:
            raise AdapterImportError(f"The adapter's layer '{module}' has shape {shape}, which does not fit the base model "
                                     f"{base_dir.name}'s {base}: it was trained on another base (another size of model?). "
                                     "Name the base it was trained on.")


def _complete(folder: Path, base_dir: Path, base_ref: str, spec: dict, template: str) -> None:
    """Give an adapter from elsewhere what the studio reads beside it: its base's tokenizer and a spec.json."""
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        load_tokenizer(base_dir).save_pretrained(str(folder))
    chosen = template or spec.get("template") or ("chat" if getattr(load_tokenizer(base_dir), "chat_template", None) else "alpaca")
    (folder / "spec.json").write_text(json.dumps({**spec, "base_model": base_ref, "template": chosen}, indent=1))


def _method(config: dict, spec: dict) -> str:
    if spec.get("spec", {}).get("method"):
        return spec["spec"]["method"]
    return "dora" if config.get("use_dora") else "rslora" if config.get("use_rslora") else "lora"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_digest(adapter: AdapterRecord) -> str | None:
    if adapter.summary.get("weights_sha256"):
        return adapter.summary["weights_sha256"]
    weights = adapter.path / WEIGHTS
    return _sha256(weights) if weights.is_file() else None
