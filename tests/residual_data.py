"""The datasets and nlme fits of ``tests/data/reference/nlme_residual.json``."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tests.conftest import REFERENCE, reference_file


def nlme_models() -> dict[str, dict[str, Any]]:
    """nlme's fits by case name (``ovary_ar1_reml``, ...)."""
    return reference_file("nlme_residual.json")["models"]


def residual_data(case: str) -> pd.DataFrame:
    """The data of a case, coded as the R script codes them."""
    d = REFERENCE / "data"
    if case.startswith("ovary"):
        return pd.read_csv(d / "ovary.csv", dtype={"Mare": str})
    if case.startswith("bodyweight"):
        return pd.read_csv(d / "bodyweight.csv", dtype={"Rat": str, "Diet": str})
    if case.startswith("oats"):
        return pd.read_csv(d / "oats_plots.csv")
    frame = pd.read_csv(d / "orthodont.csv")
    frame["visit"] = ((frame["age"] - 8) // 2 + 1).astype(int)
    frame["Sex"] = pd.Categorical(frame["Sex"], ["Male", "Female"])  # nlme's reference: Male
    return frame


def fit_args(case: dict[str, Any]) -> dict[str, Any]:
    """``residual=`` and ``sigma=`` of a case (jsonlite writes R's NULL as ``{}``)."""
    return {"residual": case.get("residual") or None,
            "sigma": case.get("sigma_formula") or None}
