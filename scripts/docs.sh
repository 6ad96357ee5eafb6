#!/usr/bin/env bash
# Builds the documentation site into site/ with warnings as errors. The case-study
# notebooks (case_studies/*.ipynb, executed, with outputs) are rendered into it through
# the link docs/case_studies -> ../case_studies (MkDocs reads pages from docs/ only and
# follows links). The script writes only that link, site/ (MkDocs's output, emptied by
# each build) and build/mkdocs-jupyter (the notebook cache, see mkdocs.yml); it deletes
# no file it did not make and stops if git tracks a file in those places.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! .venv/bin/python -c "import mkdocs, material, mkdocstrings, mkdocs_jupyter" 2>/dev/null; then
  bash scripts/setup.sh --no-demo
  .venv/bin/python -m pip install -q -e ".[docs]"
fi
if command -v git >/dev/null && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  tracked=$(git ls-files -- site build/mkdocs-jupyter docs/case_studies)
  if [ -n "$tracked" ]; then
    echo "docs.sh: git tracks files that a build would overwrite or delete:" $tracked >&2
    exit 1
  fi
fi
link=docs/case_studies
if [ -d "$link" ] && [ ! -L "$link" ]; then
  # an older docs.sh copied the notebooks here: remove those copies (files identical to
  # their case_studies/ originals), keep anything else and stop
  for f in "$link"/* "$link"/.[!.]*; do
    [ -e "$f" ] || continue
    src=case_studies/$(basename "$f")
    if [ -f "$f" ] && [ -f "$src" ] && cmp -s "$f" "$src"; then rm -- "$f"; fi
  done
  if ! rmdir "$link" 2>/dev/null; then
    echo "docs.sh: $link holds files that are not copies of case_studies/ (move them," \
         "then rerun):" "$link"/* >&2
    exit 1
  fi
elif [ -e "$link" ] && [ ! -L "$link" ]; then
  echo "docs.sh: $link is a file; move it, then rerun" >&2
  exit 1
fi
[ -L "$link" ] || ln -s ../case_studies "$link"
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict "$@"
