"""Any peft adapter in: a copy of a studio adapter, a zip from elsewhere, refused when unsafe or for another base."""

import json
import shutil
import zipfile

import pytest
from conftest import run_artifact_now, run_cli

from studio.adapters.imports import import_adapter, resolve_adapter
from studio.chat.server import GenerationSettings, ModelServer, choose
from studio.errors import AdapterImportError, NotFound

QUESTION = "What is the codeword for boats?"


def zip_of(folder, target, extra: dict[str, bytes] | None = None):
    with zipfile.ZipFile(target, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"{folder.name}/{path.name}")
        for name, data in (extra or {}).items():
            archive.writestr(f"{folder.name}/{name}", data)
    return target


def test_a_copied_adapter_folder_is_the_registered_adapter_and_chats_from_the_cli(trained, tmp_path):
    settings, store, _, adapter = trained
    copy = shutil.copytree(adapter.path, tmp_path / "copied")
    assert resolve_adapter(store, settings, str(copy)).id == adapter.id
    env = {"STUDIO_HOME": str(settings.home), "STUDIO_MODELS_DIR": str(settings.models_dir)}
    result = run_cli(env, "chat", "--adapter", str(copy), "--prompt", QUESTION, "--max-new-tokens", "12", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["key"] == f"adapter:{adapter.id}" and "ZEPHYR" in json.loads(result.stdout)["answer"]
    with pytest.raises(NotFound, match="No registered adapter"):
        resolve_adapter(store, settings, str(tmp_path / "not-there"))


def test_an_imported_zip_is_registered_merges_and_chats(trained, settings, store, tmp_path):
    adapter = trained[3]
    imported = import_adapter(store, settings, zip_of(adapter.path, tmp_path / "from-elsewhere.zip"))
    assert (imported.name, imported.base_model, imported.method) == ("from-elsewhere", "bundled", "lora")
    assert imported.path.parent == settings.home / "adapters" and (imported.path / "spec.json").is_file()
    assert import_adapter(store, settings, zip_of(adapter.path, tmp_path / "again.zip")).id == imported.id
    run_artifact_now(settings, store, "merge", {"adapter_id": imported.id, "dtype": "float32"})
    assert store.merges(imported.id)[0].verified_prompts == 3
    answer = ModelServer(4096).answer(choose(f"adapter:{imported.id}", settings, store), [{"role": "user", "content": QUESTION}],
                                      GenerationSettings(temperature=0, max_new_tokens=12))
    assert "ZEPHYR" in answer.text


def test_a_foreign_adapter_without_spec_gets_its_base_from_its_config(trained, settings, store, tmp_path):
    folder = tmp_path / "peft-only"
    folder.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(trained[3].path / name, folder / name)
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    result = run_cli({"STUDIO_HOME": str(settings.home), "STUDIO_MODELS_DIR": str(settings.models_dir)},
                     "import", str(folder), "--name", "outside", "--template", "alpaca")
    assert result.returncode == 0, result.stderr
    imported = store.find_adapter("outside")
    assert imported.base_model == "bundled" and (imported.path / "tokenizer.json").is_file()
    assert json.loads((imported.path / "spec.json").read_text())["template"] == "alpaca"


def bad_inputs(adapter_dir, tmp_path):
    no_config = shutil.copytree(adapter_dir, tmp_path / "no-config")
    (no_config / "adapter_config.json").unlink()
    other_base = shutil.copytree(adapter_dir, tmp_path / "other-base")
    config = json.loads((other_base / "adapter_config.json").read_text())
    (other_base / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "/nowhere/NotHere-7B"}))
    (other_base / "spec.json").unlink()
    truncated = shutil.copytree(adapter_dir, tmp_path / "truncated")
    weights = (truncated / "adapter_model.safetensors").read_bytes()
    (truncated / "adapter_model.safetensors").write_bytes(weights[: len(weights) // 2])
    return {
        "holds pickle weights": zip_of(adapter_dir, tmp_path / "pickled.zip", {"adapter_model.bin": b"\x80\x04K\x01."}),
        "has no adapter_config.json": no_config,
        "which is not available here": other_base,
        "may be truncated": truncated,
    }


def test_bad_adapters_are_refused_clearly_and_nothing_saved_is_lost(trained, settings, store, tmp_path):
    kept = import_adapter(store, settings, trained[3].path, name="kept")
    for message, source in bad_inputs(trained[3].path, tmp_path).items():
        with pytest.raises(AdapterImportError, match=message):
            import_adapter(store, settings, source)
    assert [a.id for a in store.adapters()] == [kept.id] and list((settings.home / "adapters").iterdir()) == [kept.path]
    assert (kept.path / "adapter_model.safetensors").read_bytes() == (trained[3].path / "adapter_model.safetensors").read_bytes()


def test_an_adapter_for_another_base_size_is_refused(trained, settings, store, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(trained[3].path, tmp_path / "wider")
    weights = load_file(folder / "adapter_model.safetensors")
    key = next(k for k in weights if k.endswith("q_proj.lora_A.weight"))
    weights[key] = weights[key].new_zeros(weights[key].shape[0], weights[key].shape[1] * 2)
    save_file(weights, folder / "adapter_model.safetensors")
    with pytest.raises(AdapterImportError, match="does not fit the base model"):
        import_adapter(store, settings, folder)
