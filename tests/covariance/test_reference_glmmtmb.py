"""Every structure against glmmTMB / brute-force references made in R
(``tests/data/reference/make_structured.R``, fields in ``structured.md``).

Tolerances from the issue: the criterion no worse than 1e-6 relative; fixed effects
1e-4; SEs (lme4's convention), sigma, SDs, correlations and the structure's own
parameters 2e-3.  Cases marked not identifiable check the criterion, the fixed effects
and the warning only (their SDs are one point of a ridge).
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import IdentifiabilityWarning
from tests.conftest import REFERENCE, reference_file

CASES = reference_file("glmmtmb_structured.json")["cases"]
LABELS = ("time", "agef", "subject", "Subject", "grp", "Sex")


@cache
def _data(path: str) -> pd.DataFrame:
    frame = pd.read_csv(REFERENCE / path)
    for col in LABELS:
        if col in frame:
            frame[col] = frame[col].astype(str)
    return frame


def _fit(case):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = hierlm.fit(case["formula"], _data(case["data"]).copy(),
                         method="REML" if case["reml"] else "ML")
    return res, [w.category for w in caught]


def _params(res, case) -> dict[str, float]:
    """hierlm's covariance_parameters under the reference's names (sd, rho, rho1, ...)."""
    out = {}
    for name, value in res.covariance_parameters.items():
        short = name.split(": ", 1)[1]
        if short.startswith("rho_lag"):
            short = "rho" + short[len("rho_lag"):]
        out[short] = float(value)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_matches_reference(case):
    res, categories = _fit(case)
    ref = case["criterion"]
    assert res.objective <= ref + 1e-6 * abs(ref), case["name"]
    assert res.objective >= ref - 1e-6 * abs(ref), (
        f"{case['name']}: hierlm's criterion {res.objective} is below the reference {ref}")
    fixef = pd.Series(case["fixef"])
    np.testing.assert_allclose(res.fixef[fixef.index], fixef,
                               atol=1e-4 * max(1.0, float(fixef.abs().max())))
    if case.get("identifiable") is False:
        assert IdentifiabilityWarning in categories
        return
    assert IdentifiabilityWarning not in categories
    assert res.converged
    se = pd.Series(case["fixef_se"])
    np.testing.assert_allclose(res.fixef_se[se.index], se, rtol=2e-3)
    assert res.sigma == pytest.approx(case["sigma"], rel=2e-3)
    vc = res.varcorr
    group = vc[vc["group"] != "Residual"]
    sds = group[group["term2"].isna()]["sd_or_corr"].to_numpy()
    np.testing.assert_allclose(sds, case["sd"], rtol=2e-3)
    corr = np.array(case["corr"], dtype=float)
    p = corr.shape[0]
    pairs = group[group["term2"].notna()]["sd_or_corr"].to_numpy()
    expected = [corr[j, k] for j in range(p) for k in range(j + 1, p)]
    np.testing.assert_allclose(pairs, expected, atol=2e-3)
    mine = _params(res, case)
    for name, value in case["params"].items():
        assert mine[name] == pytest.approx(value, abs=2e-3 * max(1.0, abs(value))), name
    assert res.n_covariance_parameters == case["cov_npar"]
