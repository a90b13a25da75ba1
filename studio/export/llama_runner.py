"""Every use of llama.cpp, each in a process of its own, with the weight buffers this CPU can run.

Why a process: llama.cpp is a C library, and a fault inside it ends whatever process called it: the
export job, the worker, a test run. Run in a child, a fault becomes an ExportError that says what
llama.cpp was doing, and the caller goes on.

Why a buffer choice: llama.cpp's CPU backend may put weights in "extra" buffer types, the layouts it
repacks for AVX2, AVX-512 or NEON and, in a build made for a CPU with AMX, an AMX buffer. The AMX
buffer crashes in the first decode with a segmentation fault (llama.cpp issue #20824, open; seen on
a Sapphire Rapids Xeon with every GGUF, the bundled Q4_1 one included; dspy PR #10079 removed its AMX
build for the same crash). A build carries it only when made on an AMX CPU (scripts/setup.sh builds
for the CPU it runs on), and its system info then says `AMX_INT8 = 1`. So where it does, extra buffer
types are turned off for every model this process loads (`use_extra_bufts = False`, which
llama-cpp-python's `Llama` does not take as an argument, so its default parameters are amended) and
the weights stay in plain CPU buffers; elsewhere nothing changes. The cost, measured on that Xeon by
`benchmarks/llama_buffers.py` against a build without AMX: none beyond noise (0.94-1.05x, README).
"""

import json
import signal
import subprocess
import sys
from pathlib import Path

from studio.errors import ExportError

def answers(path: Path, prompts: list[list[int]], stop_ids: set[int], max_new_tokens: int,
            lora_path: Path | None = None, extra_buffers: bool | None = None) -> tuple[list[list[int]], str]:
    """llama.cpp's greedy answers (token ids) to tokenized prompts, and the chat template the GGUF carries.

    With `lora_path`, a GGUF LoRA adapter is applied to the model. `extra_buffers` None is the choice
    for this CPU; True or False forces it (benchmarks/llama_buffers.py measures both). Raises
    ExportError when llama.cpp cannot load the file or crashes.
    """
    request = {"op": "answers", "path": str(path), "prompts": prompts, "stop_ids": sorted(stop_ids),
               "max_new_tokens": max_new_tokens, "lora_path": str(lora_path) if lora_path else None,
               "extra_buffers": extra_buffers}
    result = _run(request, f"answering the check prompts with '{path.name}'")
    return result["answers"], result["chat_template"]


def tokenize(path: Path, texts: list[str]) -> list[list[int]]:
    """How llama.cpp's tokenizer, read from the GGUF, splits texts (special tokens as tokens)."""
    return _run({"op": "tokenize", "path": str(path), "texts": texts}, f"reading the tokenizer of '{path.name}'")["tokens"]


def quantize(source: Path, output: Path, kind: str) -> None:
    """Write `output`, the f16 GGUF `source` quantized by llama.cpp to `kind` (only "q4_k_m" is asked for)."""
    _run({"op": "quantize", "path": str(source), "output": str(output), "kind": kind}, f"quantizing the model to {kind}")


def extra_buffers_crash(system_info: str) -> bool:
    """Whether this llama.cpp build would put weights in its AMX buffer, which crashes (see the module's docstring)."""
    return "AMX_INT8 = 1" in system_info


def _run(request: dict, doing: str) -> dict:
    return _run_child([sys.executable, "-m", "studio.export.llama_runner"], request, doing)


def _run_child(command: list[str], request: dict, doing: str) -> dict:
    """Run a llama.cpp request in a child process; its messages go on to this process's log (stderr)."""
    child = subprocess.run(command, input=json.dumps(request), capture_output=True, text=True)
    sys.stderr.write(child.stderr)
    if child.returncode < 0:
        name = signal.Signals(-child.returncode).name
        raise ExportError(f"llama.cpp crashed ({_SIGNALS.get(name, name)}) while {doing}. Nothing was saved; the studio "
                          "and its worker go on. The job log has llama.cpp's last messages: please report it with them.")
    lines = child.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else {"error": f"it ended with exit code {child.returncode} and no answer"}
    if "error" in result:
        raise ExportError(f"llama.cpp failed while {doing}: {result['error']}")
    return result


_SIGNALS = {"SIGSEGV": "a segmentation fault", "SIGABRT": "it aborted", "SIGBUS": "a bus error", "SIGILL": "an illegal instruction",
            "SIGFPE": "an arithmetic fault", "SIGKILL": "it was killed, often because memory ran out"}


def _serve(request: dict) -> dict:
    """The child's side: one request, answered as a dict (printed as JSON on the last line of stdout)."""
    import llama_cpp

    extra_buffers = request.get("extra_buffers")
    if extra_buffers is None:
        extra_buffers = not extra_buffers_crash(llama_cpp.llama_print_system_info().decode())
    if not extra_buffers:
        _turn_off_extra_buffers()
    if request["op"] == "quantize":
        return _quantize(request["path"], request["output"], request["kind"])
    if request["op"] == "tokenize":
        llm = llama_cpp.Llama(model_path=request["path"], n_ctx=64, vocab_only=True, verbose=False)
        return {"tokens": [llm.tokenize(text.encode(), add_bos=False, special=True) for text in request["texts"]]}
    llm = llama_cpp.Llama(model_path=request["path"], lora_path=request["lora_path"], n_ctx=1024, seed=0, verbose=False)
    stop_ids, limit = set(request["stop_ids"]), request["max_new_tokens"]
    return {"answers": [_greedy(llm, tokens, stop_ids, limit) for tokens in request["prompts"]],
            "chat_template": llm.metadata.get("tokenizer.chat_template", "")}


def _turn_off_extra_buffers() -> None:
    """Every model this process loads keeps its weights in plain CPU buffers (llama.cpp's `--no-repack`)."""
    import llama_cpp.llama

    default_params = llama_cpp.llama.llama_cpp.llama_model_default_params

    def params_without_extra_buffers():
        params = default_params()
        params.use_extra_bufts = False
        return params

    llama_cpp.llama.llama_cpp.llama_model_default_params = params_without_extra_buffers


def _quantize(source: str, output: str, kind: str) -> dict:
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[kind]
    if llama_cpp.llama_model_quantize(source.encode(), output.encode(), ctypes.byref(params)) != 0:
        return {"error": "llama_model_quantize returned an error; its messages are above in the job log"}
    return {}


def _greedy(llm, tokens: list[int], stop_ids: set[int], limit: int) -> list[int]:
    answer = []
    for token in llm.generate(tokens, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        answer.append(token)
        if token in stop_ids or len(answer) >= limit:
            break
    return answer


def main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        result = _serve(request)
    except (ValueError, RuntimeError, OSError) as error:  # llama-cpp-python's words for a file it cannot load
        result = {"error": str(error) or type(error).__name__}
    print(json.dumps(result), flush=True)
    sys.exit(1 if "error" in result else 0)


if __name__ == "__main__":
    main()
