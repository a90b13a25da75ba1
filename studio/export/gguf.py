"""GGUF exports for llama.cpp and Ollama, checked with llama.cpp itself before they are offered.

The conversion is llama.cpp's own converter (convert_hf_to_gguf.py with its gguf-py, which
scripts/setup.sh takes from the llama-cpp-python source distribution it builds), the 4-bit
quantization llama.cpp's own (`llama_model_quantize` through llama-cpp-python, run by studio.export.llama_runner): the studio writes
no part of the format itself. What the studio adds is the prompt format the adapter was trained
with, as the GGUF's chat template (Jinja) and an Ollama Modelfile (Go template), and the check:
llama.cpp, loading the file, must answer the check prompts token for token as the merged model
does (f16); for the quantized kinds the agreement is reported.
"""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from studio.adapters.cards import render_card, table_rows
from studio.data.prompts import get_template
from studio.errors import ExportError
from studio.export import llama_runner
from studio.export.merge import VERIFY_NEW_TOKENS, Progress, refuse_existing, zip_folder
from studio.staging import scratch_folder

KINDS = ("f16", "q8_0", "q4_k_m")  # q4_k_m: llama.cpp's usual 4-bit choice; tensors it cannot pack fall back to q5/q8
CONVERTER_DIR = Path(sys.prefix) / "llama.cpp"  # scripts/setup.sh puts llama.cpp's converters here
SYSTEM, PROMPT, RESPONSE = "\x00SYSTEM\x00", "\x00PROMPT\x00", "\x00RESPONSE\x00"  # placeholders no user text holds


def chat_template(template_name: str, tokenizer) -> str:
    """The Jinja chat template that renders conversations exactly as the studio trained on them.

    The 'chat' format is the base model's own template; Alpaca is written from its template file.
    """
    template = get_template(template_name)
    if template.kind == "chat":
        return tokenizer.chat_template
    before, after = template.without_input.split("{instruction}")
    literal = lambda text: json.dumps(text, ensure_ascii=False)  # a JSON string is a valid Jinja string literal
    return ("{%- for message in messages -%}"
            "{%- if message['role'] == 'system' -%}{{ message['content'] + '\\n\\n' }}"
            f"{{%- elif message['role'] == 'user' -%}}{{{{ {literal(before)} + message['content'] + {literal(after)} }}}}"
            "{%- elif message['role'] == 'assistant' -%}{{ message['content'] + eos_token }}"
            "{%- endif -%}{%- endfor -%}")


def render_chat_template(source: str, messages: list[dict], tokenizer) -> str:
    """A conversation rendered by a Jinja chat template, as transformers and llama.cpp render it."""
    return tokenizer.apply_chat_template(messages, chat_template=source, add_generation_prompt=True, tokenize=False)


def modelfile(gguf_name: str, template_name: str, tokenizer) -> str:
    """An Ollama Modelfile: FROM the GGUF, a TEMPLATE that renders prompts as the studio does, its stop tokens.

    The template is found by rendering the studio's own prompt with placeholders, so it cannot drift from it.
    """
    from studio.data.prompts import build_prompt

    turn = [{"role": "user", "content": PROMPT}]
    with_system = build_prompt(turn, template_name, tokenizer, system_prompt=SYSTEM)
    without = build_prompt(turn, template_name, tokenizer)
    go = lambda text: text.replace(SYSTEM, "{{ .System }}").replace(PROMPT, "{{ .Prompt }}")
    end = _turn_end(template_name, tokenizer)
    stops = dict.fromkeys(s for s in (tokenizer.eos_token, end.strip()) if s)
    return (f"FROM ./{gguf_name}\n"
            f'TEMPLATE """{{{{ if .System }}}}{go(with_system)}{{{{ else }}}}{go(without)}{{{{ end }}}}{{{{ .Response }}}}{end}"""\n'
            + "".join(f'PARAMETER stop "{stop}"\n' for stop in stops))


def _turn_end(template_name: str, tokenizer) -> str:
    """What follows an answer in training: the end-of-sequence token (Alpaca), or the chat template's end of turn."""
    if get_template(template_name).kind != "chat":
        return tokenizer.eos_token
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}, {"role": "assistant", "content": RESPONSE}],
                                             tokenize=False)
    return rendered.split(RESPONSE, 1)[1]


def _check_converter() -> None:
    if not (CONVERTER_DIR / "convert_hf_to_gguf.py").is_file():
        raise ExportError(f"llama.cpp's converter is not installed in '{CONVERTER_DIR}'. Run scripts/setup.sh (it builds "
                          "llama-cpp-python and keeps its converter), then export again.")


def _check_weights(model_dir: Path) -> None:
    """Refuse a model folder whose weights cannot be read whole, before a converter half-writes anything."""
    from studio.adapters.imports import safetensors_shapes

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise ExportError(f"'{model_dir}' holds no .safetensors weights to convert. Merge the adapter again.")
    for weights in files:
        try:
            safetensors_shapes(weights)
        except (OSError, ValueError) as error:
            raise ExportError(f"The merged weights '{weights}' cannot be read ({error}); the file may be truncated. "
                              "Merge the adapter again (Merge tab), then export.") from None


def _converter_input(model_dir: Path, folder: Path, jinja: str) -> Path:
    """The merged model as the converter should read it: its files, with the studio's chat template."""
    folder.mkdir()
    for path in model_dir.iterdir():
        if path.name not in ("tokenizer_config.json", "chat_template.jinja", "chat_template.json"):
            (folder / path.name).symlink_to(path.resolve())
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))
    (folder / "chat_template.jinja").write_text(jinja)
    return folder


def convert(model_dir: Path, output: Path, kind: str) -> None:
    """Write a GGUF of a Hugging Face model folder with llama.cpp's converter, quantized to `kind`."""
    if kind not in KINDS:
        raise ExportError(f"The GGUF kind must be one of {', '.join(KINDS)}, not '{kind}'.")
    outtype = "f16" if kind == "q4_k_m" else kind
    target = output.with_name(output.name + ".f16") if kind == "q4_k_m" else output
    result = subprocess.run([sys.executable, str(CONVERTER_DIR / "convert_hf_to_gguf.py"), str(model_dir),
                             "--outfile", str(target), "--outtype", outtype], capture_output=True, text=True)
    if result.returncode:
        raise ExportError(f"llama.cpp's converter could not convert '{model_dir.name}' to {kind}: "
                          f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no message'}")
    if kind == "q4_k_m":
        llama_runner.quantize(target, output, kind)
        target.unlink()


def export_gguf(merged_dir: Path, name: str, template_name: str, kinds: list[str], prompts: list[str], output: Path,
                card_fields: dict, progress: Progress = lambda done, total: None) -> dict:
    """Convert a merged model to GGUF kinds, check each with llama.cpp, and zip them with Modelfiles and a card.

    `prompts` are rendered check prompts. The f16 file must answer them token for token as the merged
    model does, its tokenizer must split them as the model's does, and its chat template must render
    them as the studio does; otherwise ExportError says what differed and nothing is written. The
    quantized kinds' agreement is reported, not required. Returns the report (also in the zip as
    gguf-report.json).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from studio.models.catalog import new_tokenizer
    from studio.models.generate import greedy_ids

    _check_converter()
    _check_weights(merged_dir)
    kinds = sorted(set(kinds), key=KINDS.index) if set(kinds) <= set(KINDS) and kinds else None
    if not kinds:
        raise ExportError(f"Choose the GGUF kinds to export among {', '.join(KINDS)}.")
    refuse_existing(output)
    steps = len(kinds) + 2
    with scratch_folder(output.parent) as staging:
        tokenizer = new_tokenizer(merged_dir)
        model = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
        expected = [greedy_ids(model, tokenizer, p, VERIFY_NEW_TOKENS) for p in prompts]
        eos = model.generation_config.eos_token_id
        stop_ids = set(eos if isinstance(eos, list) else [eos])
        del model
        jinja = chat_template(template_name, tokenizer)
        source = _converter_input(merged_dir, staging / ".source", jinja)
        progress(1, steps)
        report = {"template": template_name, "prompts": len(prompts), "kinds": []}
        for done, kind in enumerate(kinds, start=2):
            report["kinds"].append(_one_kind(source, staging / f"{name}-{kind}.gguf", kind, prompts, expected, stop_ids, tokenizer, jinja))
            (staging / f"{name}-{kind}.Modelfile").write_text(modelfile(f"{name}-{kind}.gguf", template_name, tokenizer))
            progress(done, steps)
        shutil.rmtree(source)
        (staging / "gguf-report.json").write_text(json.dumps(report, indent=1))
        (staging / "README.md").write_text(_card(name, template_name, report, card_fields))
        zip_folder(staging, output, f"{name}-gguf")
    progress(steps, steps)
    return report


def _one_kind(source: Path, path: Path, kind: str, prompts: list[str], expected: list[list[int]], stop_ids: set[int],
              tokenizer, jinja: str) -> dict:
    started = time.monotonic()
    convert(source, path, kind)
    seconds = time.monotonic() - started
    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    if llama_runner.tokenize(path, prompts) != ids:
        raise ExportError(f"llama.cpp's tokenizer, read from the {kind} GGUF, splits the check prompts differently from the "
                          "model's own tokenizer, so answers would differ. Nothing was saved; please report it with the job log.")
    answers, carried = llama_runner.answers(path, ids, stop_ids, VERIFY_NEW_TOKENS)
    if carried != jinja:
        raise ExportError(f"The {kind} GGUF does not carry the prompt template the adapter was trained with. Nothing was saved; "
                          "please report it with the job log.")
    differ = [i for i, (a, b) in enumerate(zip(answers, expected)) if a != b]
    if kind == "f16" and differ:
        first = differ[0]
        raise ExportError(f"The f16 GGUF, run by llama.cpp, answers {len(differ)} of {len(prompts)} check prompts differently from "
                          f"the merged model, so it was not offered. Prompt {first + 1}: the merged model answers "
                          f"{tokenizer.decode(expected[first])!r}, the GGUF {tokenizer.decode(answers[first])!r}.")
    return {"kind": kind, "file": path.name, "mb": round(path.stat().st_size / 2**20, 1), "convert_seconds": round(seconds, 1),
            "agree": len(prompts) - len(differ), "differ": [{"prompt": i + 1, "merged": tokenizer.decode(expected[i]),
                                                             "gguf": tokenizer.decode(answers[i])} for i in differ]}


def _card(name: str, template_name: str, report: dict, fields: dict) -> str:
    rows = table_rows([(f"`{k['file']}`", k["kind"], k["mb"], f"{k['agree']} of {report['prompts']}") for k in report["kinds"]])
    first = report["kinds"][0]["file"]
    return render_card(
        "gguf_card", name=name, template=template_name, rows=rows, gguf=first, modelfile=first.replace(".gguf", ".Modelfile"),
        prompts=report["prompts"], **fields)
