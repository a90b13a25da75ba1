#!/usr/bin/env bash
# Set up (first run only) and start Adapter Studio on the bundled model at http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python app.py "$@"
