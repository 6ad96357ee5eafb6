#!/usr/bin/env bash
# Packaging and plain-install check.
#   1. `python -m build`: an sdist and a wheel; the wheel must hold no tests,
#      benchmarks or caches.
#   2. Each of them installed with no extras into its own clean venv (no matplotlib),
#      then scripts/smoke.py: a REML fit against lme4's numbers and a NUTS fit with
#      the progress bar on, run from outside the source tree.
# Usage: bash .ci/plain_install.sh   (needs .venv from scripts/setup.sh, for `build`)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PY=$(bash "$repo/scripts/find_python.sh")
work=$(mktemp -d "${TMPDIR:-/tmp}/hierlm-plain.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== build sdist and wheel"
"$repo/.venv/bin/python" -m build --outdir "$work/dist" "$repo" >"$work/build.log" 2>&1 \
  || { cat "$work/build.log"; exit 1; }
sdist=$(ls "$work"/dist/hierlm-*.tar.gz)
wheel=$(ls "$work"/dist/hierlm-*.whl)
echo "built $(basename "$sdist") $(basename "$wheel")"
contents=$("$PY" -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel")
if grep -E '^(tests|benchmarks|scripts|docs)/|__pycache__|\.pyc$|\.nbi$|\.nbc$' <<<"$contents"; then
  echo "the wheel holds files it should not (above)" >&2
  exit 1
fi
grep -qx 'hierlm/datasets/sleepstudy.csv' <<<"$contents" \
  || { echo "the wheel lacks hierlm/datasets/sleepstudy.csv" >&2; exit 1; }

for dist in "$wheel" "$sdist"; do
  name=$(basename "$dist")
  echo "== clean venv, pip install $name (no extras)"
  rm -rf "$work/venv"
  "$PY" -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q "$dist" 2>&1 | grep -v "^WARNING: Location" || true
  "$work/venv/bin/python" -c "import hierlm" \
    || { echo "pip install $name failed" >&2; exit 1; }
  (cd "$work" && "$work/venv/bin/python" "$repo/scripts/smoke.py" --require-no-matplotlib)
done
echo "plain install checks passed"
