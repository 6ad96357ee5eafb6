#!/usr/bin/env bash
# One-command set-up: finds Python >= 3.12, creates .venv, installs hierlm with its
# test tools, then runs a demo fit on the sleepstudy data shipped in the package.
# Usage: bash scripts/setup.sh [--no-demo]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(bash scripts/find_python.sh)
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  rm -rf .venv
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
if [ "${1:-}" != "--no-demo" ]; then
  .venv/bin/python -m hierlm.demo
fi
