"""Property tests on random small designs (hypothesis).

Random nesting, crossing, slopes and missing cells (factor-level combinations that
never occur).  The compiled objective must equal the dense GLS criterion and its
gradient the central finite differences; REML fits must not depend on row order or
on the labels of the levels.  Few model structures are used (each compiles once).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hierlm
from hierlm.objective import compile_objective, theta_lower
from tests.dense import profiled_criterion

# Two compiled structures: a scalar first term with scalar others, and a 2-coefficient
# first term with scalar others.
FORMULAS = [
    "y ~ x + (1 | g) + (1 | h)",
    "y ~ x + (1 | g/k)",
    "y ~ x + (1 | g) + (1 | h) + (1 | g:h)",
    "y ~ x + (1 + x | g) + (1 | h)",
    "y ~ x + (1 + x | g) + (0 + x | h)",
    "y ~ 1 + (1 + x | g)",
]
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
OBJECTIVE_SETTINGS = settings(SETTINGS, max_examples=25)


@st.composite
def designs(draw: st.DrawFn) -> tuple[str, pd.DataFrame]:
    """A formula and a random data set for it, some level combinations absent."""
    formula = draw(st.sampled_from(FORMULAS))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n_g = draw(st.integers(4, 7))
    n_h = draw(st.integers(2, 4))
    n = draw(st.integers(30, 60))
    g = rng.integers(0, n_g, size=n)
    h = rng.integers(0, n_h, size=n)
    missing = draw(st.integers(0, 2))  # drop every row of a few (g, h) cells
    for cell in rng.choice(n_g * n_h, size=missing, replace=False):
        keep = ~((g == cell // n_h) & (h == cell % n_h))
        g, h = g[keep], h[keep]
    m = len(g)
    g[:n_g], h[:n_h] = np.arange(n_g), np.arange(n_h)  # every level used at least once
    x = rng.normal(size=m)
    y = (rng.normal(size=n_g)[g] + rng.normal(size=n_h)[h] + x
         + rng.normal(size=n_g)[g] * x * 0.5 + rng.normal(size=m))
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h],
                         "k": [f"k{i}" for i in rng.integers(0, 3, size=m)]})
    return formula, data


def random_theta(design: hierlm.design.terms.ModelDesign, rng: np.random.Generator
                 ) -> np.ndarray:
    lower = theta_lower(design)
    th = rng.normal(size=lower.shape)
    return np.where(lower == 0, np.abs(th) + 0.2, th)


def build(formula: str, data: pd.DataFrame) -> hierlm.design.terms.ModelDesign | None:
    try:
        return hierlm.build_design(formula, data)
    except hierlm.DataError:  # a random draw too small for the model
        return None


@OBJECTIVE_SETTINGS
@given(designs(), st.integers(0, 1000), st.booleans())
def test_objective_and_gradient_match_dense(case: tuple[str, pd.DataFrame], seed: int,
                                            reml: bool) -> None:
    design = build(*case)
    if design is None:
        return
    obj = compile_objective(design)
    theta = random_theta(design, np.random.default_rng(seed))
    value, grad = obj.value_and_grad(theta, reml)
    assert value == pytest.approx(profiled_criterion(design, theta, reml), rel=1e-8)
    h = 1e-6
    fd = np.array([(obj(theta + h * e, reml) - obj(theta - h * e, reml)) / (2 * h)
                   for e in np.eye(len(theta))])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def summary(res: hierlm.FitResult) -> tuple[float, np.ndarray, float, np.ndarray]:
    vc = res.varcorr
    sds = vc.loc[vc["term2"].isna(), "sd_or_corr"].to_numpy()
    return res.objective, res.fixef.to_numpy(), res.sigma, sds


def fit(formula: str, data: pd.DataFrame) -> hierlm.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hierlm.SingularFitWarning)
        warnings.simplefilter("error", hierlm.ConvergenceWarning)
        return hierlm.fit(formula, data)


@SETTINGS
@given(designs(), st.integers(0, 1000))
def test_reml_invariant_to_row_order_and_labels(case: tuple[str, pd.DataFrame], seed: int
                                                ) -> None:
    formula, data = case
    if build(formula, data) is None:
        return
    base = fit(formula, data)
    rng = np.random.default_rng(seed)
    shuffled = data.iloc[rng.permutation(len(data))].reset_index(drop=True)
    relabel = data.copy()
    for col in ("g", "h", "k"):
        old = sorted(relabel[col].unique())
        new = rng.permutation(len(old))
        relabel[col] = relabel[col].map({o: f"L{v:02d}" for o, v in zip(old, new, strict=True)})
    for other in (fit(formula, shuffled), fit(formula, relabel)):
        obj, fe, sigma, sds = summary(other)
        b_obj, b_fe, b_sigma, b_sds = summary(base)
        assert obj == pytest.approx(b_obj, rel=1e-8, abs=1e-8)
        np.testing.assert_allclose(fe, b_fe, rtol=1e-4, atol=1e-4 * b_sigma)
        assert sigma == pytest.approx(b_sigma, rel=1e-4)
        np.testing.assert_allclose(sds, b_sds, rtol=1e-3, atol=1e-3 * b_sigma)
