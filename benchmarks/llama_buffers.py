"""What the studio's llama.cpp buffer choice costs: greedy decoding speed of GGUFs of the bundled model
with extra buffer types off (the studio's choice where the build carries AMX) and on, in one run.

    .venv/bin/python -m benchmarks.llama_buffers [--new-tokens 64] [--repeats 3] [--other-build SITE]

The f16, q8_0 and q4_k_m GGUFs are written by the studio's own converter path (studio.export.gguf.convert).
Each variant answers the same 4 prompts through studio.export.llama_runner, in its own process as the
studio does; decode tokens/s is (tokens generated) / (time of the full answers - time of one-token
answers), so loading and prompt processing cancel out. "crashes" is printed where llama.cpp
crashed, as its AMX buffer does. On an AMX CPU the "on" variant of this build crashes, so the
repacked layouts are measured with `--other-build`: a site folder holding a llama-cpp-python built
without AMX (docs/performance.md gives the command), run on the same CPU in the same run.
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from studio.errors import ExportError
from studio.export import llama_runner
from studio.export.gguf import convert
from studio.models.catalog import bundled_model_dir, load_tokenizer, prepare_bundled_model
from studio.settings import load_settings

PROMPTS = ["The capital of France is", "Write a short poem about the sea.", "List three uses of copper.",
           "Explain what a neural network is."]


def decode_seconds(path: Path, prompts: list[list[int]], new_tokens: int, extra_buffers: bool | None) -> tuple[float, int]:
    """Seconds spent generating past the first token, and how many tokens that was."""
    started = time.perf_counter()
    llama_runner.answers(path, prompts, set(), 1, extra_buffers=extra_buffers)
    first = time.perf_counter() - started
    started = time.perf_counter()
    answers, _ = llama_runner.answers(path, prompts, set(), new_tokens, extra_buffers=extra_buffers)
    return time.perf_counter() - started - first, sum(len(a) - 1 for a in answers)


def tokens_per_second(path: Path, prompts: list[list[int]], new_tokens: int, repeats: int, extra_buffers: bool | None,
                      site: str | None = None) -> float | None:
    """Median decode tokens/s, or None when llama.cpp crashed; `site` puts another llama-cpp-python build first."""
    saved = dict(os.environ)
    if site:
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (site, saved.get("PYTHONPATH")) if p)
    try:
        rates = []
        for _ in range(repeats):
            seconds, tokens = decode_seconds(path, prompts, new_tokens, extra_buffers)
            rates.append(tokens / seconds)
        return statistics.median(rates)
    except ExportError as error:
        if "crashed" not in str(error):
            raise
        return None
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per answer")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant; the median counts")
    parser.add_argument("--other-build", help="site folder of a llama-cpp-python built without AMX, measured with extra buffers on")
    args = parser.parse_args()
    models_dir = load_settings().models_dir
    prepare_bundled_model(models_dir)
    base_dir = bundled_model_dir(models_dir)
    tokenizer = load_tokenizer(base_dir)
    import llama_cpp

    print(f"llama.cpp build: {llama_cpp.llama_print_system_info().decode().strip()}")
    print(f"studio's choice here: extra buffers {'off' if llama_runner.extra_buffers_crash(llama_cpp.llama_print_system_info().decode()) else 'on'}")
    variants = [("off", False, None), ("on", True, None)] + ([("on, other build", True, args.other_build)] if args.other_build else [])
    print("| GGUF | " + " | ".join(f"extra buffers {name} (tok/s)" for name, _, _ in variants) + " | off / fastest on |")
    print("|---" * (len(variants) + 2) + "|")
    with tempfile.TemporaryDirectory() as folder:
        for kind in ("f16", "q8_0", "q4_k_m"):
            path = Path(folder) / f"bundled-{kind}.gguf"
            convert(base_dir, path, kind)
            prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
            rates = [tokens_per_second(path, prompts, args.new_tokens, args.repeats, extra, site) for _, extra, site in variants]
            fastest_on = max((r for r in rates[1:] if r), default=None)
            ratio = f"{rates[0] / fastest_on:.2f}" if rates[0] and fastest_on else "-"
            print(f"| {kind} | " + " | ".join(f"{r:.1f}" if r else "crashes" for r in rates) + f" | {ratio} |")


if __name__ == "__main__":
    main()
