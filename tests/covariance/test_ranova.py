"""``ranova`` on structured terms: a structured term is removed whole, never reduced by
a column.

Each row is checked against the reduced model refitted by hand (``anova(reduced, full)``
done manually), and the row that removes a model's only term against glmmTMB's
criterion (``tests/data/reference/glmmtmb_structured.json``) minus the linear model's,
computed here from its normal equations (R's ``logLik.lm``: ``-2 l = N (log 2 pi + 1 +
log(RSS / N))`` with ``N = n``, plus ``log det X'X`` and ``N = n - p`` under REML).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from tests.conftest import REFERENCE, reference_file

CASES = {c["name"]: c for c in reference_file("glmmtmb_structured.json")["cases"]}


def _data() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data/structured_sim5.csv").astype({"time": str})


def _fit(formula: str, method: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.fit(formula, _data(), method=method)


def _lm_deviance(frame: pd.DataFrame, reml: bool) -> float:
    X = np.column_stack([np.ones(len(frame)), frame["x"], frame["grp"] == "B"]).astype(float)
    y = frame["y"].to_numpy(float)
    resid = y - X @ np.linalg.solve(X.T @ X, X.T @ y)
    n, p = X.shape
    N = n - p if reml else n
    out = N * (np.log(2 * np.pi) + 1 + np.log(resid @ resid / N))
    return float(out + (np.linalg.slogdet(X.T @ X)[1] if reml else 0.0))


@pytest.mark.parametrize("structure,formula", [
    ("ar1", "ar1(0 + time | subject)"), ("cs", "cs(0 + time | subject)"),
    ("toep", "toep(0 + time | subject)"), ("hetar1", "ar1(0 + time | subject, het=True)")])
@pytest.mark.parametrize("reml", [True, False])
def test_removing_the_only_term_matches_glmmtmb(structure, formula, reml):
    case = CASES[f"sim5_{structure}_{'reml' if reml else 'ml'}"]
    res = _fit(f"y ~ x + grp + {formula}", "REML" if reml else "ML")
    table = res.ranova()
    assert table.index.tolist() == ["<none>", formula]
    row = table.loc[formula]
    lrt = _lm_deviance(_data(), reml) - case["criterion"]
    assert row["lrt"] == pytest.approx(lrt, abs=1e-6 * case["criterion"])
    assert row["df"] == res.n_covariance_parameters
    assert f"{structure} on subject" in table.attrs["note"]


def test_rows_equal_refits_by_hand():
    """Two terms: the structured one goes whole, the unstructured one is reduced as in
    lmerTest, and each row is anova(reduced, full) of fits made by hand."""
    full = _fit("y ~ x + grp + cs(0 + time | subject) + (1 + x | subject:rep)", "REML")
    table = full.ranova()
    assert table.index.tolist() == ["<none>", "cs(0 + time | subject)",
                                    "x in (1 + x | subject:rep)"]
    assert "cs on subject" in table.attrs["note"]
    by_hand = {"cs(0 + time | subject)": "y ~ x + grp + (1 + x | subject:rep)",
               "x in (1 + x | subject:rep)": "y ~ x + grp + cs(0 + time | subject)"
                                             " + (1 | subject:rep)"}
    for label, formula in by_hand.items():
        reduced = _fit(formula, "REML")
        row = table.loc[label]
        assert row["loglik"] == pytest.approx(reduced.loglik, abs=1e-6 * abs(reduced.loglik))
        assert row["lrt"] == pytest.approx(2 * (full.loglik - reduced.loglik), abs=2e-5 * abs(
            reduced.loglik))
        k_full = len(full.fixef) + full.n_covariance_parameters + 1
        k_red = len(reduced.fixef) + reduced.n_covariance_parameters + 1
        assert row["df"] == k_full - k_red
