#!/usr/bin/env bash
# Prints the path of a Python >= 3.12 interpreter, or fails with a message.
set -u
check() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
for cand in "${HIERLM_PYTHON:-}" python3.12 python3.13 python3; do
  [ -n "$cand" ] || continue
  p=$(command -v "$cand" 2>/dev/null) || continue
  if check "$p"; then echo "$p"; exit 0; fi
done
# pyenv installs (not necessarily on PATH)
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for p in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -V); do
  if check "$p"; then echo "$p"; exit 0; fi
done
echo "hierlm needs Python >= 3.12; none found (set HIERLM_PYTHON to one)" >&2
exit 1
