#!/usr/bin/env bash
# Sets up (if needed) and runs the test suite. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m slow` for the long statistical checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --no-demo
if [ "$#" -eq 0 ]; then set -- -m "not slow"; fi
.venv/bin/python -m pytest -q "$@"
