"""Shared fixtures: lme4 reference results and their datasets."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

import pandas as pd

# A NUTS fit that samples the NumPy density starts a background process compiling the
# structure for later processes (hierlm.estimate.nuts_first); tests start none.
os.environ.setdefault("HIERLM_NUTS_WARM_UP", "0")
# Nor does a process warm with small fits load their compiled evaluation on a background
# thread (hierlm.estimate.psi_call): which fits it reaches would depend on timing.  The
# tests of that path set the variable themselves.
os.environ.setdefault("HIERLM_BACKGROUND_LOADS", "0")

# The lme4 references and their datasets live in the repository (tests/data/reference);
# HIERLM_REFERENCE points the tests at another copy.
REFERENCE = Path(os.environ.get(
    "HIERLM_REFERENCE", Path(__file__).resolve().parent / "data" / "reference"))

GROUPING = {
    "sleepstudy": ["Subject"], "penicillin": ["plate", "sample"],
    "pastes": ["batch", "cask", "sample"], "dyestuff": ["Batch"], "dyestuff2": ["Batch"],
    "insteval": ["s", "d", "dept", "service", "studage", "lectage"],
    "alfalfa": ["Variety", "Date", "Block"], "chickweight": ["Chick", "Diet"],
    "orthodont": ["Subject", "Sex"], "hsb82": ["school", "sector"],
}


@cache
def reference() -> dict:
    if not (REFERENCE / "lme4_reference.json").exists():  # a broken checkout: fail, never skip
        raise FileNotFoundError(f"lme4 reference not found at {REFERENCE}")
    return json.loads((REFERENCE / "lme4_reference.json").read_text())


@cache
def inference_reference() -> dict:
    """lmerTest / pbkrtest / lme4 inference results (``lme4_inference.json``)."""
    return reference_file("lme4_inference.json")


@cache
def _dataset(name: str) -> pd.DataFrame:
    path = REFERENCE / "data" / f"{name}.csv"
    frame = pd.read_csv(path, dtype={c: str for c in GROUPING[name]})
    # grouping labels are labels: "None" (a date in alfalfa) is not a missing value
    labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    for c in GROUPING[name]:
        if c in frame.columns:
            frame[c] = labels[c]
    return frame


def dataset(name: str) -> pd.DataFrame:
    """A fresh copy of a reference dataset (grouping columns as strings)."""
    return _dataset(name).copy()


@cache
def reference_file(name: str) -> dict:
    """Another reference JSON of ``tests/data/reference`` (e.g. ``lme4_inference.json``)."""
    path = REFERENCE / name
    if not path.exists():  # a broken checkout: fail, never skip
        raise FileNotFoundError(f"reference {name} not found at {REFERENCE}")
    return json.loads(path.read_text())
