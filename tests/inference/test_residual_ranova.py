"""ranova on fits with residual structures against nlme's anova(reduced, full).

``tests/data/reference/nlme_residual_ranova.json`` (make_residual_ranova.R): the reduced
model keeps the residual structure: an ``lme`` with the smaller random term, or a
``gls`` when no random term is left (REML and ML).
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from tests.conftest import reference_file
from tests.residual_data import residual_data

CASES = {c["name"]: c for c in reference_file("nlme_residual_ranova.json")["cases"]}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ranova_matches_nlme_anova(name: str) -> None:
    case = CASES[name]
    res = hierlm.fit(case["hierlm_formula"], residual_data(name), method=case["method"],
                     residual=case["residual"], sigma=case["sigma_formula"])
    assert res.loglik == pytest.approx(case["loglik"], rel=1e-6)
    out = res.ranova()
    assert out.loc["<none>", "npar"] == case["npar"]
    for row in case["rows"]:
        got = out.loc[row["label"]]
        assert got["loglik"] == pytest.approx(row["loglik"], rel=1e-6)
        assert got["npar"] == row["npar"]
        assert got["df"] == row["df"]
        assert got["lrt"] == pytest.approx(row["lrt"], rel=1e-4, abs=1e-5)
        assert got["p"] == pytest.approx(row["p"], rel=1e-3)
    assert len(out) == 1 + len(case["rows"])


def test_reduced_fit_keeps_the_residual_structure() -> None:
    """The reduced row equals a fit of the reduced formula with the same structure."""
    d = residual_data("orthodont")
    kw = {"residual": "ar1(visit | Subject)", "sigma": "~ Sex"}
    res = hierlm.fit("distance ~ age + (age | Subject)", d, **kw)
    by_hand = hierlm.fit("distance ~ age + (1 | Subject)", d, **kw)
    out = res.ranova()
    assert out.loc["age in (age | Subject)", "loglik"] == pytest.approx(by_hand.loglik,
                                                                         rel=1e-9)
    assert np.isfinite(out["lrt"].iloc[1])
