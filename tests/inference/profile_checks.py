"""Checks shared by the profile tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def assert_traces_cross_zero(tab: pd.DataFrame, ci: pd.DataFrame, names: list[str]) -> None:
    """Each parameter's zeta trace (``res.profile()``) rises through 0, and inside its
    profile interval ``ci`` stays within the 95% cutoff."""
    assert sorted(tab["parameter"].unique()) == sorted(names)
    for name, grp in tab.groupby("parameter"):
        z = grp.sort_values("value")["zeta"].to_numpy()
        assert np.all(np.diff(z) > 0), name  # monotone through 0
        lo, hi = ci.loc[name]
        inside = grp[(grp["value"] > lo) & (grp["value"] < hi)]["zeta"].abs()
        assert (inside < 1.96 + 1e-6).all(), name
