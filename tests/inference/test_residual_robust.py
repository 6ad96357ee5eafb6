"""Cluster-robust SEs (CR2, CR0) of fits with residual structures against clubSandwich.

``tests/data/reference/nlme_residual_robust.json`` (make_residual_robust.R):
clubSandwich 0.5.8's ``vcovCR(lme_fit, type = ...)`` and ``coef_test(..., test =
"Satterthwaite")`` on nlme fits with corAR1, corAR1 + varIdent, corCAR1 and corCompSymm;
the working covariance is the fitted marginal one, random effects plus the residual
structure.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import hierlm
from hierlm.inference.robust import robust_parts
from tests.conftest import reference_file
from tests.residual_data import residual_data

CASES = {c["name"]: c for c in reference_file("nlme_residual_robust.json")["cases"]}


@pytest.mark.parametrize("kind", ["CR2", "CR0"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_vcov_and_df_match_clubsandwich(name: str, kind: str) -> None:
    case = CASES[name]
    res = hierlm.fit(case["hierlm_formula"], residual_data(name), method=case["method"],
                     residual=case["residual"], sigma=case["sigma_formula"])
    assert res.objective == pytest.approx(case["criterion"], rel=1e-6)
    assert list(res.fixef.index) == case["coef_names"]
    V, df, cluster = robust_parts(res, kind)
    ref = np.array(case[kind]["vcov"])
    np.testing.assert_allclose(V, ref, rtol=2e-3, atol=1e-3 * np.abs(ref).max())
    np.testing.assert_allclose(np.sqrt(np.diag(V)), case[kind]["se"], rtol=2e-3)
    np.testing.assert_allclose(df, case[kind]["df"], rtol=2e-3)
    table = res.coef_table(vcov=kind)
    np.testing.assert_allclose(table["se"], case[kind]["se"], rtol=2e-3)
    np.testing.assert_allclose(table["df"], case[kind]["df"], rtol=2e-3)
    assert cluster == re.search(r"\|\s*(\w+)\)", case["hierlm_formula"]).group(1)  # type: ignore[union-attr]


def test_prior_weights_still_refused() -> None:
    d = residual_data("orthodont")
    d["w"] = 1.0 + (d["age"] > 10)
    res = hierlm.fit("distance ~ age + (1 | Subject)", d, weights="w",
                     residual="ar1(visit | Subject)")
    with pytest.raises(hierlm.MethodError, match="prior weights"):
        res.coef_table(vcov="CR2")
