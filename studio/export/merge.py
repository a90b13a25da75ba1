"""Adapters out of the studio: merged into their base, mixed into a new adapter, zipped for download.

Every folder is written beside its target (studio.staging) and renamed into place only
when complete (and, for a merge, verified), so a crash never leaves a half-written model.
"""

import json
import zipfile
from pathlib import Path
from typing import Callable

from studio.adapters.cards import render_card, table_rows
from studio.adapters.in_use import in_use
from studio.adapters.registry import adapter_template
from studio.data.held_out import adapter_dataset, examples, validation_records
from studio.data.instructions import load_records
from studio.errors import ExportError, StudioError
from studio.models.catalog import load_base_model, load_with_adapter, new_tokenizer, public_name
from studio.models.generate import greedy_ids
from studio.staging import staged_file, staged_folder
from studio.store import AdapterRecord, MergeRecord, Store

DTYPES = ("float32", "bfloat16", "float16")  # torch dtype names: full precision, as merging needs
VERIFY_NEW_TOKENS = 24
CHECK_PROMPTS = 3
GENERAL_QUESTIONS = ["What is the capital of France?", "Write one sentence about the sea.", "Name three colours."]
Progress = Callable[[int, int], None]  # (steps done, steps in all)


def refuse_existing(target: Path) -> None:
    """An export never overwrites: a folder or file already at `target` is refused before any work."""
    if target.exists():
        raise ExportError(f"'{target}' already exists. Choose a new folder or file name, or remove the old one first.")


def check_prompts(store: Store, adapter: AdapterRecord) -> list[str]:
    """Prompts to check a merge on: the adapter's validation (or first training) prompts, else general questions."""
    tokenizer = new_tokenizer(adapter.path)
    try:
        dataset = adapter_dataset(store, adapter)
    except StudioError:
        records, template = [{"instruction": q, "input": "", "output": ""} for q in GENERAL_QUESTIONS], adapter_template(adapter)
    else:
        records, template = (validation_records(dataset) or load_records(dataset.path)), dataset.template
    return [e.prompt for e in examples(records[:CHECK_PROMPTS], template, tokenizer)]


def merge_adapter(adapter: AdapterRecord, base_dir: Path, output: Path, dtype: str, prompts: list[str],
                  progress: Progress = lambda done, total: None) -> int:
    """Merge an adapter into its unquantized base and save a plain Hugging Face model folder in `dtype`.

    The base is loaded in float32 without quantization, also for a QLoRA adapter, as peft
    requires for merging. Two checks come before the folder is renamed into place: the merged
    model's greedy answers to `prompts` equal the unmerged adapter's token for token (in
    float32, where rounding cannot flip a token), and the saved weights read back equal the
    merged weights in `dtype` bit for bit. Returns the number of prompts checked. Raises
    ExportError for an unknown dtype, an existing output or a failed check; ModelError when
    the base cannot be loaded.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from studio.device import pick_device

    if dtype not in DTYPES:
        raise ExportError(f"The merged model's precision must be one of {', '.join(DTYPES)}, not '{dtype}'.")
    refuse_existing(output)
    device, steps = pick_device(), 5
    with staged_folder(output) as staging:
        tokenizer = new_tokenizer(adapter.path)
        model = load_with_adapter(base_dir, adapter.path, quantize_4bit=False, device=device)
        expected = [greedy_ids(model, tokenizer, p, VERIFY_NEW_TOKENS) for p in prompts]
        progress(1, steps)
        merged = model.merge_and_unload()
        differ = sum(greedy_ids(merged, tokenizer, p, VERIFY_NEW_TOKENS) != ids for p, ids in zip(prompts, expected))
        if differ:
            raise ExportError(f"The merged model answers {differ} of {len(prompts)} check prompts differently from the adapter, "
                              "so it was not saved: merging would change how the model behaves. The job log has the details; please report it.")
        progress(2, steps)
        merged = merged.to(getattr(torch, dtype))
        merged.save_pretrained(str(staging), safe_serialization=True)
        tokenizer.save_pretrained(str(staging))
        progress(3, steps)
        saved = AutoModelForCausalLM.from_pretrained(str(staging), dtype=getattr(torch, dtype)).to(device.name).state_dict()
        weights = merged.state_dict()
        if any(not torch.equal(tensor, weights[name]) for name, tensor in saved.items() if name in weights):
            raise ExportError(f"The merged model read back from '{staging}' differs from what was saved; the disk may be "
                              "full or failing. Free some space and merge again.")
        progress(4, steps)
        (staging / "README.md").write_text(_merged_card(adapter, dtype, len(prompts)))
        (staging / "studio.json").write_text(json.dumps(
            {"merged_from_adapter": adapter.id, "adapter_name": adapter.name, "base_model": adapter.base_model,
             "dtype": dtype, "dataset_hash": adapter.dataset_hash, "verified_prompts": len(prompts),
             "template": adapter_template(adapter)}, indent=1))
    progress(5, steps)
    return len(prompts)


def _merged_card(adapter: AdapterRecord, dtype: str, verified: int) -> str:
    return render_card(
        "merged_model_card", name=adapter.name, base_model=public_name(adapter.base_model), dtype=dtype, method=adapter.method.upper(),
        dataset_hash=adapter.dataset_hash[:16] or "n/a", verified=verified, template=adapter_template(adapter),
    )


def mix_adapters(adapters: list[AdapterRecord], weights: list[float], base_dir: Path, output: Path, name: str) -> int:
    """Combine adapters of one base into a new adapter folder: the weighted sum of their changes.

    peft's 'cat' combination is exact and accepts different ranks; the result's rank is the
    sum of theirs, which it returns. Raises ExportError for fewer than two adapters,
    different bases or a missing or zero weight.
    """
    from peft import PeftModel

    from studio.device import pick_device

    check_mix(adapters, weights)
    refuse_existing(output)
    with staged_folder(output) as staging:
        base = load_base_model(base_dir, quantize_4bit=False, device=pick_device())
        parts = [f"part{i}" for i in range(len(adapters))]
        model = PeftModel.from_pretrained(base, str(adapters[0].path), adapter_name=parts[0])
        for part, adapter in zip(parts[1:], adapters[1:]):
            model.load_adapter(str(adapter.path), adapter_name=part)
        model.add_weighted_adapter(parts, weights, adapter_name="default", combination_type="cat")
        model.set_adapter("default")
        for part in parts:
            model.delete_adapter(part)
        model.save_pretrained(str(staging), safe_serialization=True)
        new_tokenizer(adapters[0].path).save_pretrained(str(staging))
        lineage = [{"adapter_id": a.id, "name": a.name, "weight": w} for a, w in zip(adapters, weights)]
        (staging / "spec.json").write_text(json.dumps({"base_model": adapters[0].base_model, "template": adapter_template(adapters[0]),
                                                       "dataset_hash": mixed_dataset_hash(adapters), "mixed_from": lineage}, indent=1))
        (staging / "README.md").write_text(render_card(
            "mixed_adapter_card", name=name, base_model=public_name(adapters[0].base_model), template=adapter_template(adapters[0]),
            lineage_rows=table_rows([(a.id, a.name, f"{w:g}") for a, w in zip(adapters, weights)])))
    return model.peft_config["default"].r


def check_mix(adapters: list[AdapterRecord], weights: list[float]) -> None:
    """Refuse a mix that cannot be made, before any model is loaded."""
    if len(adapters) < 2:
        raise ExportError("Pick at least two adapters to mix.")
    if len(weights) != len(adapters) or any(w == 0 for w in weights):
        raise ExportError(f"Give one weight other than 0 for each of the {len(adapters)} adapters, e.g. 0.5 each.")
    bases = sorted({a.base_model for a in adapters})
    if len(bases) > 1:
        raise ExportError(f"Only adapters of the same base model can be mixed; these were trained on {', '.join(bases)}.")


def mixed_dataset_hash(adapters: list[AdapterRecord]) -> str:
    """The shared dataset of the mixed adapters, or empty when they were trained on different data."""
    hashes = {a.dataset_hash for a in adapters}
    return hashes.pop() if len(hashes) == 1 else ""


def zip_folder(folder: Path, output: Path, root: str, card_note: str = "") -> Path:
    """Zip a folder to a file on disk, one file at a time, never in memory; `card_note`, when given, is
    added to the top of its card (README.md) in the zip, the folder's own card left as it is.

    Weights are stored as they are (they do not compress); the rest is deflated.
    """
    with staged_file(output) as partial, zipfile.ZipFile(partial, "w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = f"{root}/{path.relative_to(folder)}"
            if card_note and path == folder / "README.md":
                archive.writestr(name, _with_note(path.read_text(), card_note), compress_type=zipfile.ZIP_DEFLATED)
                continue
            method = zipfile.ZIP_STORED if path.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
            archive.write(path, name, compress_type=method)
    return output


def _with_note(card: str, note: str) -> str:
    """The card with `note` in bold under its title (after the front matter)."""
    lines = card.splitlines(keepends=True)
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), -1)
    return "".join(lines[:title + 1]) + f"\n**{note}**\n" + "".join(lines[title + 1:])


def export_adapter(store: Store, adapter_id: int, output: Path) -> Path:
    """Zip a registered adapter, found by its id in the store: no user-given path is ever read.
    The card of the adapter in use says so, since when and who chose it."""
    adapter = store.adapter(adapter_id)
    _check_present(adapter.path, f"adapter '{adapter.name}'")
    current = in_use(store)
    note = current.describe() if current and current.adapter.id == adapter.id else ""
    return zip_folder(adapter.path, output, adapter.path.name, card_note=note)


def export_merged(store: Store, merge_id: int, output: Path) -> Path:
    """Zip a registered merged model, found by its id in the store."""
    merge: MergeRecord = store.merge(merge_id)
    _check_present(merge.path, f"merged model {merge_id}")
    return zip_folder(merge.path, output, merge.path.name)


def _check_present(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise ExportError(f"The files of {what} are missing from '{folder}'. They were moved or deleted outside the studio.")
