"""The lme4 reference data in ``tests/data/reference`` are complete and current.

The suite reads them from the repository only.  Where the project's shared
reference folder exists beside the checkout (``../shared/reference``), the copy here
must be identical to it, file for file; without it, the copy must still hold every
file the tests and the R scripts use, each readable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tests.conftest import GROUPING

TESTS = Path(__file__).resolve().parent
COPY = TESTS / "data" / "reference"
SHARED = TESTS.parent.parent / "shared" / "reference"
JSON = ("lme4_reference.json", "lme4_inference.json", "lme4_weights_offset.json")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_copy_is_complete_and_readable() -> None:
    for name in JSON:
        assert json.loads((COPY / name).read_text()), name
    for script in ("make_reference.R", "make_inference.R", "README.md"):
        assert (COPY / script).stat().st_size > 0, script
    for name, groups in GROUPING.items():
        df = pd.read_csv(COPY / "data" / f"{name}.csv", dtype={g: str for g in groups})
        assert len(df) > 0 and set(groups) <= set(df.columns), name
    models = json.loads((COPY / "lme4_reference.json").read_text())
    assert {"sleepstudy_slopes_reml", "insteval_crossed_reml"} <= set(models)


def test_copy_matches_the_shared_folder_where_it_exists() -> None:
    if not SHARED.is_dir():  # a clone on its own: the copy here is the reference
        assert COPY.is_dir()
        return
    shared, copy = _files(SHARED), _files(COPY)
    missing = sorted(set(shared) - set(copy))
    changed = sorted(k for k in set(shared) & set(copy) if shared[k] != copy[k])
    assert not missing and not changed, (
        f"tests/data/reference is out of date with {SHARED}: missing {missing}, "
        f"changed {changed}; copy the shared folder over it")


def test_no_test_reads_outside_the_repository() -> None:
    offenders = [p.relative_to(TESTS).as_posix() for p in TESTS.rglob("*.py")
                 if p.name != Path(__file__).name
                 and ('"shared"' in (text := p.read_text()) or "../shared" in text
                      or "parents[2]" in text)]
    assert not offenders, offenders
