"""Merging, mixing and zipping real adapters: what comes out loads, and answers as the adapter does."""

import json
import subprocess
import sys
import zipfile

import pytest
from conftest import ROOT, greedy_answer, run_artifact_now, run_cli
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from studio.errors import ExportError, NotFound
from studio.export.merge import export_adapter, export_merged, merge_adapter
from studio.store import Store

QUESTION = "What is the codeword for boats?"

# Loads a merged folder in a fresh interpreter where importing peft fails, as on a machine without it.
LOAD_WITHOUT_PEFT = """
import sys
sys.modules["peft"] = None
from transformers import AutoModelForCausalLM, AutoTokenizer
sys.path.insert(0, "tests")
from conftest import greedy_answer
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
print(greedy_answer(model, AutoTokenizer.from_pretrained(sys.argv[1]), sys.argv[2]))
"""


def adapter_answer(bundled_dir, adapter_dir, tokenizer, question=QUESTION):
    return greedy_answer(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(bundled_dir), str(adapter_dir)), tokenizer, question)


def test_merged_model_answers_like_the_adapter_and_loads_without_peft(trained, merged, bundled_dir, tokenizer):
    adapter = trained[3]
    files = sorted(p.name for p in merged.path.iterdir())
    assert files == ["README.md", "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
                     "studio.json", "tokenizer.json", "tokenizer_config.json"]
    assert merged.verified_prompts == 3 and merged.dtype == "float32"
    card = (merged.path / "README.md").read_text()
    assert "AutoModelForCausalLM.from_pretrained" in card and "codewords-lora" in card and "peft" not in card.split("## Use it")[1]
    result = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_PEFT, str(merged.path), QUESTION], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = adapter_answer(bundled_dir, adapter.path, tokenizer)
    assert result.stdout.strip() == expected.strip() and "ZEPHYR" in expected


def test_a_qlora_adapter_merges_into_the_unquantized_base_in_bfloat16(trained, trained_qlora):
    settings, store, _, _ = trained
    job = run_artifact_now(settings, store, "merge", {"adapter_id": trained_qlora.id, "dtype": "bfloat16"})
    merge = store.merges(trained_qlora.id)[0]
    assert merge.job_id == job.id and (job.step, job.total_steps) == (5, 5)
    config = json.loads((merge.path / "config.json").read_text())
    assert "quantization_config" not in config
    with safe_open(str(merge.path / "model.safetensors"), "pt") as weights:
        assert {str(weights.get_tensor(k).dtype) for k in weights.keys()} == {"torch.bfloat16"}
    assert not (merge.path.parent / f".staging-{merge.path.name}").exists()


def test_a_merge_never_overwrites_an_existing_folder(trained, bundled_dir, tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ExportError, match="already exists"):
        merge_adapter(trained[3], bundled_dir, tmp_path / "taken", "float32", [])


def test_a_weighted_mix_is_registered_with_its_lineage_and_loads(trained, trained_qlora, bundled_dir, tokenizer):
    settings, store, _, lora = trained
    job = run_artifact_now(settings, store, "mix", {"adapter_ids": [lora.id, trained_qlora.id], "weights": [0.7, 0.3]}, name="blend")
    mix = store.adapter(job.adapter_id)
    assert (mix.name, mix.method, mix.parent_id, mix.status) == ("blend", "mix", lora.id, "complete")
    assert mix.summary["mixed_from"] == [{"adapter_id": lora.id, "name": lora.name, "weight": 0.7},
                                         {"adapter_id": trained_qlora.id, "name": trained_qlora.name, "weight": 0.3}]
    assert mix.dataset_hash == lora.dataset_hash and mix.spec["rank"] == 32
    assert json.loads((mix.path / "adapter_config.json").read_text())["r"] == 32
    assert "| 0.7 |" in (mix.path / "README.md").read_text()
    assert "ZEPHYR" in adapter_answer(bundled_dir, mix.path, tokenizer)


def test_a_downloaded_adapter_zip_unpacks_to_a_loadable_adapter(trained, bundled_dir, tokenizer, tmp_path):
    settings, store, _, adapter = trained
    path = export_adapter(store, adapter.id, tmp_path / "adapter.zip")
    with zipfile.ZipFile(path) as archive:
        weights = archive.getinfo(f"{adapter.path.name}/adapter_model.safetensors")
        assert weights.compress_type == zipfile.ZIP_STORED
        archive.extractall(tmp_path / "unpacked")
    unpacked = tmp_path / "unpacked" / adapter.path.name
    assert "PeftModel.from_pretrained" in (unpacked / "README.md").read_text()
    assert adapter_answer(bundled_dir, unpacked, tokenizer) == adapter_answer(bundled_dir, adapter.path, tokenizer)


def test_a_downloaded_merged_zip_unpacks_to_a_loadable_model(trained, merged, tokenizer, tmp_path):
    path = export_merged(trained[1], merged.id, tmp_path / "merged.zip")
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "unpacked")
    path.unlink()  # half a gigabyte, no longer needed
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "unpacked" / merged.path.name)
    assert "ZEPHYR" in greedy_answer(model, tokenizer, QUESTION)


def test_only_registered_artifacts_can_be_found_or_exported(trained, store, tmp_path):
    settings, trained_store, _, adapter = trained
    for ref in (str(adapter.id), adapter.name, str(adapter.path)):
        assert trained_store.find_adapter(ref).id == adapter.id
    with pytest.raises(NotFound, match="No registered adapter has the id, name or folder"):
        store.find_adapter(str(adapter.path))  # a real adapter folder, but not registered in this studio
    with pytest.raises(NotFound, match="There is no adapter 7"):
        export_adapter(store, 7, tmp_path / "x.zip")
    with pytest.raises(NotFound, match="There is no merged model 7"):
        export_merged(store, 7, tmp_path / "x.zip")


def test_cli_merge_and_export(trained, tmp_path):
    settings, store, _, adapter = trained
    env = {"STUDIO_HOME": str(settings.home), "STUDIO_MODELS_DIR": str(settings.models_dir)}
    result = run_cli(env, "merge", "--adapter", str(adapter.path), "--output", str(tmp_path / "merged"),
                     "--dtype", "bfloat16")
    assert result.returncode == 0, result.stderr
    assert "Merged model saved in" in result.stdout and (tmp_path / "merged" / "model.safetensors").exists()
    assert tmp_path / "merged" in [m.path for m in Store(settings.db_path).merges(adapter.id)]
    result = run_cli(env, "export", "--adapter", str(adapter.id), "--output", str(tmp_path / "merged.zip"), "--merged")
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "merged.zip") as archive:
        assert "merged/model.safetensors" in archive.namelist()


def test_cli_refuses_bad_arguments_with_exit_2(trained, tmp_path):
    settings = trained[0]
    env = {"STUDIO_HOME": str(settings.home), "STUDIO_MODELS_DIR": str(settings.models_dir)}
    result = run_cli(env, "merge", "--adapter", "1", "--output", str(tmp_path / "m"), "--dtype", "int8")
    assert result.returncode == 2 and "invalid choice: 'int8'" in result.stderr
    result = run_cli(env, "export", "--adapter", "1", "--output", str(tmp_path / "adapter.tar"))
    assert result.returncode == 2 and "the output must be a .zip file name" in result.stderr
    result = run_cli(env, "export", "--adapter", "no-such-adapter", "--output", str(tmp_path / "a.zip"))
    assert result.returncode == 2 and "No registered adapter" in result.stderr
    result = run_cli(env, "merge", "--adapter", "1", "--output", str(tmp_path))
    assert result.returncode == 2 and "already exists" in result.stderr
