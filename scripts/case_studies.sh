#!/usr/bin/env bash
# Re-executes the case studies from their paired scripts and writes the notebooks with
# their outputs (case_studies/*.ipynb). Usage: bash scripts/case_studies.sh [NAME.py ...]
set -euo pipefail
cd "$(dirname "$0")/../case_studies"
files=("$@")
[ ${#files[@]} -gt 0 ] || files=(*.py)
for f in "${files[@]}"; do
  ../.venv/bin/python -m jupytext --to ipynb --execute "$f"
done
