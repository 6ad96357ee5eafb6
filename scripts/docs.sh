#!/usr/bin/env bash
# Builds the documentation site into site/ with warnings as errors. The case-study
# notebooks (case_studies/*.ipynb, executed, with outputs) are rendered into it.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import mkdocs, material, mkdocstrings, mkdocs_jupyter" 2>/dev/null; then
  bash scripts/setup.sh --no-demo
  .venv/bin/python -m pip install -q -e ".[docs]"
fi
rm -rf docs/case_studies
if compgen -G "case_studies/*.ipynb" >/dev/null; then
  mkdir -p docs/case_studies
  cp case_studies/*.ipynb docs/case_studies/
fi
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict "$@"
