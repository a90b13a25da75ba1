"""llama.cpp runs in a child process with the weight buffers this CPU can run (studio.export.llama_runner)."""

import signal
import sys

import llama_cpp
import pytest

from studio.errors import ExportError
from studio.export import llama_runner
from studio.models.catalog import BUNDLED_GGUF, _bundled_gguf_dir

AMX_BUILD = llama_runner.extra_buffers_crash(llama_cpp.llama_print_system_info().decode())


@pytest.fixture(scope="module")
def bundled_gguf():
    return _bundled_gguf_dir() / BUNDLED_GGUF


def test_llama_cpp_answers_with_the_bundled_gguf_on_this_cpu(bundled_gguf, tokenizer):
    # On an AMX CPU, llama.cpp's AMX weight buffer crashed here in the first decode, and the test run with it.
    prompt = llama_runner.tokenize(bundled_gguf, ["The capital of France is"])
    answers, template = llama_runner.answers(bundled_gguf, prompt, {tokenizer.eos_token_id}, 6)
    assert "Paris" in tokenizer.decode(answers[0]) and "im_start" in template


@pytest.mark.skipif(not AMX_BUILD, reason="this llama.cpp build has no AMX buffer: nothing here crashes")
def test_on_an_amx_cpu_the_extra_buffers_crash_and_the_crash_is_an_export_error_in_words(bundled_gguf, tokenizer):
    prompt = llama_runner.tokenize(bundled_gguf, ["The capital of France is"])
    with pytest.raises(ExportError, match=r"llama.cpp crashed \(a segmentation fault\) while answering the check prompts "
                                          r"with 'SmolLM2-135M-Instruct.Q4_1.gguf'\. Nothing was saved"):
        llama_runner.answers(bundled_gguf, prompt, {tokenizer.eos_token_id}, 6, extra_buffers=True)


def test_any_crash_of_the_child_is_told_in_words_and_this_process_goes_on():
    crash = [sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signal.SIGABRT)})"]
    with pytest.raises(ExportError, match=r"llama.cpp crashed \(it aborted\) while quantizing"):
        llama_runner._run_child(crash, {}, "quantizing")


def test_a_file_llama_cpp_cannot_load_is_refused_with_its_reason(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ExportError, match=r"llama.cpp failed while reading the tokenizer of 'broken.gguf': .*broken.gguf"):
        llama_runner.tokenize(broken, ["Hi"])
