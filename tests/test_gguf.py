"""GGUF, Ollama and LoRA-serving exports of a real adapter, checked with llama.cpp (llama-cpp-python)."""

import json
import shutil
import zipfile

import pytest
from conftest import run_artifact_now
from transformers import AutoModelForCausalLM

from studio.data.prompts import build_prompt
from studio.errors import ExportError
from studio.export.gguf import chat_template, export_gguf, render_chat_template
from studio.export.llama_runner import answers as gguf_answers
from studio.export.merge import check_prompts
from studio.models.generate import greedy_ids

CONVERSATIONS = [
    ("", [{"role": "user", "content": "What is the codeword for boats?"}]),
    ("Answer briefly.", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                         {"role": "user", "content": "What is the codeword for clouds?"}]),
]


@pytest.mark.parametrize("template", ["alpaca", "chat"])
def test_the_gguf_chat_template_renders_conversations_as_the_studio_does(tokenizer, template):
    jinja = chat_template(template, tokenizer)
    for system, turns in CONVERSATIONS:
        messages = ([{"role": "system", "content": system}] if system else []) + turns
        assert render_chat_template(jinja, messages, tokenizer) == build_prompt(turns, template, tokenizer, system_prompt=system)


@pytest.fixture(scope="module")
def gguf_export(trained, merged, tmp_path_factory):
    settings, store, _, adapter = trained
    job = run_artifact_now(settings, store, "gguf", {"adapter_id": adapter.id, "kinds": ["f16", "q8_0"]}, name="gguf")
    exported = next(e for e in store.exports(adapter.id) if e.job_id == job.id)
    unpacked = tmp_path_factory.mktemp("gguf")
    with zipfile.ZipFile(exported.path) as archive:
        archive.extractall(unpacked)
    return exported, unpacked / "codewords-lora-gguf"


def test_gguf_f16_answers_as_the_merged_model_token_for_token_and_q8_0_agreement_is_reported(trained, merged, gguf_export, tokenizer):
    exported, folder = gguf_export
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "codewords-lora-f16.Modelfile", "codewords-lora-f16.gguf", "codewords-lora-q8_0.Modelfile",
        "codewords-lora-q8_0.gguf", "gguf-report.json"]
    report = json.loads((folder / "gguf-report.json").read_text())
    assert report == exported.report and report["prompts"] == 3
    f16, q8 = report["kinds"]
    assert (f16["kind"], f16["agree"], f16["differ"]) == ("f16", 3, [])
    assert q8["kind"] == "q8_0" and 0 <= q8["agree"] <= 3 and q8["mb"] < f16["mb"]
    # Checked again here, independently of the export's own check, on every check prompt.
    prompts = check_prompts(trained[1], trained[3])
    model = AutoModelForCausalLM.from_pretrained(merged.path).eval()
    expected = [greedy_ids(model, tokenizer, p, 24) for p in prompts]
    answers, carried = gguf_answers(folder / "codewords-lora-f16.gguf", [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts],
                                    {tokenizer.eos_token_id}, 24)
    assert answers == expected and "ZEPHYR" in tokenizer.decode(answers[0])
    assert carried == chat_template("alpaca", tokenizer)
    card = (folder / "README.md").read_text()
    assert "ollama create codewords-lora -f codewords-lora-f16.Modelfile" in card and "llama-server -m codewords-lora-f16.gguf" in card


def test_the_modelfile_names_the_gguf_the_trained_template_and_its_stop_token(gguf_export):
    modelfile = (gguf_export[1] / "codewords-lora-f16.Modelfile").read_text()
    assert modelfile.startswith("FROM ./codewords-lora-f16.gguf\n")
    assert ("TEMPLATE \"\"\"{{ if .System }}{{ .System }}\n\nBelow is an instruction that describes a task. Write a response that "
            "appropriately completes the request.\n\n### Instruction:\n{{ .Prompt }}\n\n### Response:\n{{ else }}Below is an instruction") in modelfile
    assert "### Response:\n{{ end }}{{ .Response }}<|im_end|>\"\"\"\n" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile


def test_a_truncated_merged_model_is_refused_and_nothing_is_written(trained, merged, tmp_path):
    damaged = shutil.copytree(merged.path, tmp_path / "damaged")
    weights = damaged / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.truncate(weights.stat().st_size // 3)
    output = tmp_path / "exports" / "damaged.zip"
    with pytest.raises(ExportError, match="may be truncated"):
        export_gguf(damaged, "damaged", "alpaca", ["f16"], ["Hi"], output, {})
    assert not any((tmp_path / "exports").glob("*"))
    assert (merged.path / "model.safetensors").stat().st_size > weights.stat().st_size


def test_lora_serving_export_holds_vllms_layout_and_a_gguf_lora_llama_cpp_runs(trained, tmp_path):
    settings, store, _, adapter = trained
    job = run_artifact_now(settings, store, "lora", {"adapter_id": adapter.id}, name="lora")
    exported = next(e for e in store.exports(adapter.id) if e.job_id == job.id)
    with zipfile.ZipFile(exported.path) as archive:
        archive.extractall(tmp_path)
    folder = tmp_path / "codewords-lora-lora"
    config = json.loads((folder / "codewords-lora" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and config["r"] == 16
    assert (folder / "codewords-lora" / "adapter_model.safetensors").is_file() and (folder / "codewords-lora-lora-f16.gguf").is_file()
    card = (folder / "README.md").read_text()
    assert ("vllm serve HuggingFaceTB/SmolLM2-135M-Instruct --enable-lora --lora-modules codewords-lora=./codewords-lora "
            "--max-lora-rank 16") in card
    assert exported.report["prompts"] == 3 and 0 <= exported.report["gguf_lora_agree"] <= 3
