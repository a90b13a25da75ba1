"""The adapter alone, for servers that load LoRA adapters on a shared base: vLLM and llama.cpp.

vLLM takes a peft folder as it is (`--enable-lora --lora-modules name=path`); llama.cpp takes a GGUF
LoRA written by its own converter (convert_lora_to_gguf.py). Before the zip is offered, llama.cpp
runs the GGUF LoRA on a GGUF of the base and its answers to the check prompts are compared with
the merged model's; the agreement is reported (the adapter is applied in f16 at run time, so a rare
token may differ from the float32 merge).
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from studio.adapters.cards import render_card
from studio.errors import ExportError
from studio.export import llama_runner
from studio.export.gguf import CONVERTER_DIR, chat_template, convert
from studio.export.merge import VERIFY_NEW_TOKENS, refuse_existing, zip_folder
from studio.models.catalog import load_with_adapter, new_tokenizer, public_name
from studio.staging import scratch_folder

VLLM_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank takes
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json")


def check_servable(adapter_dir: Path) -> dict:
    """Refuse adapters vLLM and llama.cpp cannot serve unmerged; returns the adapter's peft config."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("use_dora"):
        raise ExportError("vLLM and llama.cpp do not serve DoRA adapters on their own. Export it merged instead "
                          "(GGUF, or the merged model zip).")
    if config.get("modules_to_save"):
        raise ExportError(f"The adapter also retrains whole layers ({', '.join(config['modules_to_save'])}), which LoRA "
                          "servers do not load. Export it merged instead.")
    return config


def export_lora(adapter_dir: Path, base_dir: Path, base_ref: str, name: str, template_name: str, prompts: list[str],
                expected: list[list[int]], output: Path, progress=lambda done, total: None) -> dict:
    """Zip the adapter in vLLM's layout and as a GGUF LoRA for llama.cpp, with a card holding the serve commands.

    `expected` are the merged model's greedy answers (token ids) to the rendered `prompts`. Returns the
    report: the GGUF LoRA's agreement with them through llama.cpp. Raises ExportError for an adapter
    the servers cannot load or a converter that fails; nothing is written then.
    """
    config = check_servable(adapter_dir)
    refuse_existing(output)
    with scratch_folder(output.parent) as staging:
        tokenizer = new_tokenizer(adapter_dir)
        hub_id = public_name(base_ref)
        vllm = staging / name
        vllm.mkdir()
        for file in ADAPTER_FILES:
            if (adapter_dir / file).is_file():
                shutil.copy(adapter_dir / file, vllm / file)
        (vllm / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": hub_id}, indent=1))
        (vllm / "chat_template.jinja").write_text(chat_template(template_name, tokenizer))
        progress(1, 3)
        lora_gguf = staging / f"{name}-lora-f16.gguf"
        _convert_lora(adapter_dir, base_dir, lora_gguf)
        progress(2, 3)
        agree = _lora_agreement(base_dir, lora_gguf, staging / ".base", prompts, expected, tokenizer)
        report = {"prompts": len(prompts), "gguf_lora_agree": agree, "rank": config.get("r")}
        (staging / "lora-report.json").write_text(json.dumps(report, indent=1))
        rank = next((r for r in VLLM_RANKS if r >= int(config.get("r", 8))), VLLM_RANKS[-1])
        (staging / "README.md").write_text(render_card(
            "lora_serving_card", name=name, base_model=hub_id, template=template_name, rank=rank, gguf=lora_gguf.name, agree=agree,
            prompts=len(prompts)))
        zip_folder(staging, output, f"{name}-lora")
    progress(3, 3)
    return report


def adapter_answers(adapter_dir: Path, base_dir: Path, prompts: list[str]) -> list[list[int]]:
    """The adapter's greedy answers on its base in float32: what a verified merge answers too."""
    from studio.device import pick_device
    from studio.models.generate import greedy_ids

    model = load_with_adapter(base_dir, adapter_dir, quantize_4bit=False, device=pick_device())
    tokenizer = new_tokenizer(adapter_dir)
    return [greedy_ids(model, tokenizer, p, VERIFY_NEW_TOKENS) for p in prompts]


def _convert_lora(adapter_dir: Path, base_dir: Path, output: Path) -> None:
    result = subprocess.run([sys.executable, str(CONVERTER_DIR / "convert_lora_to_gguf.py"), "--base", str(base_dir),
                             "--outtype", "f16", "--outfile", str(output), str(adapter_dir)], capture_output=True, text=True)
    if result.returncode:
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no message"
        raise ExportError(f"llama.cpp's LoRA converter could not convert the adapter: {last}")


def _lora_agreement(base_dir: Path, lora_gguf: Path, work: Path, prompts: list[str], expected: list[list[int]], tokenizer) -> int:
    """How many check prompts llama.cpp, running the GGUF LoRA on an f16 GGUF of the base, answers as the merged model."""
    work.mkdir()
    base_gguf = work / "base-f16.gguf"
    convert(base_dir, base_gguf, "f16")
    answers, _ = llama_runner.answers(base_gguf, llama_runner.tokenize(base_gguf, prompts), {tokenizer.eos_token_id},
                                      VERIFY_NEW_TOKENS, lora_path=lora_gguf)
    shutil.rmtree(work)
    return sum(answer == wanted for answer, wanted in zip(answers, expected))
