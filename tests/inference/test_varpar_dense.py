"""The closed-form Hessian and Jacobian against the second-order autodiff graph.

:func:`hierlm.inference.varpar_dense.dense_varpar` (dense LAPACK, Harville's formulas)
and :func:`hierlm.inference.deviance.graph_varpar_info` (PyTensor's reverse-over-reverse
autodiff of the blocked Cholesky) share only the Gram blocks; they must agree to
rounding, at the estimate and away from it, REML and ML, with weights and on the
boundary.  test_deviance.py checks both against finite differences of an ``n x n``
computation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
import hierlm.inference.deviance as deviance
from hierlm.inference import varpar_dense
from hierlm.inference.deviance import graph_varpar_info, varpar_info
from hierlm.inference.distributions import chi2_sf, f_sf, t_two_sided
from hierlm.inference.terms import _term_variables
from hierlm.inference.varpar_dense import dense_varpar


def frame():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(15), 8)
    h = np.tile(np.arange(8), 15)
    x, z = rng.standard_normal(120), rng.standard_normal(120)
    y = (1 + 0.5 * x + rng.standard_normal(15)[g] + 0.4 * rng.standard_normal(15)[g] * x
         + 0.7 * rng.standard_normal(8)[h] + 0.3 * rng.standard_normal(8)[h] * z
         + rng.standard_normal(120))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str), "h": h.astype(str),
                         "f": np.where(h % 2 == 0, "a", "b"),
                         "w": rng.uniform(0.5, 2.0, 120)})


CASES = [("y ~ x + (x | g)", {}),
         ("y ~ x * f + (1 | g) + (1 | h)", {}),
         ("y ~ x + (1 | g) + (1 + z | h)", {}),
         ("y ~ x + (x | g) + (1 | h)", {"weights": "w"}),
         ("y ~ 0 + (1 | g)", {})]


def close(a, b, tol=1e-9):
    a, b = np.asarray(a, float), np.asarray(b, float)
    scale = max(float(np.abs(b).max(initial=0.0)), 1e-300)
    return float(np.abs(a - b).max(initial=0.0)) <= tol * scale


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(("formula", "kw"), CASES)
def test_dense_matches_graph(formula, kw, reml, shift):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.Model(formula, frame(), **kw).fit("reml" if reml else "ml")
    obj = res.model.objective
    theta, sigma = res.theta, res.sigma
    if shift:  # away from the estimate the gradient is not ~0
        theta, sigma = 1.3 * theta + 0.05, 0.9 * sigma
    ref = graph_varpar_info(obj, theta, sigma, reml)
    d, g, H, C, J = dense_varpar(obj.design, obj.gram, theta, sigma, reml)
    assert d == pytest.approx(ref.deviance, rel=1e-12)
    assert close(H, ref.hessian) and close(C, ref.vcov_beta) and close(J, ref.jacobian)
    if shift:
        assert close(g, ref.gradient)
    else:  # ~0 at the optimum: compare with the Hessian's scale
        assert np.abs(g - ref.gradient).max() <= 1e-9 * np.abs(ref.hessian).max()


def test_boundary_point():
    """A template entry at zero: ``D_i = 0`` there, the second derivative is not."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("y ~ x + (x | g) + (1 | h)", frame())
    obj = res.model.objective
    theta = res.theta.copy()
    theta[0] = theta[-1] = 0.0
    for reml in (True, False):
        ref = graph_varpar_info(obj, theta, res.sigma, reml)
        d, g, H, C, J = dense_varpar(obj.design, obj.gram, theta, res.sigma, reml)
        assert close(g, ref.gradient) and close(H, ref.hessian)
        assert close(J, ref.jacobian) and close(C, ref.vcov_beta)


def test_tables_need_no_graph(monkeypatch):
    """summary(), coef_table() and anova() of a small model never reach the graph."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("y ~ x * f + (1 | g) + (1 | h)", frame())

    def refuse(*args, **kwargs):
        raise AssertionError("the second-order graph was called")

    monkeypatch.setattr(deviance, "_compiled", refuse)
    assert "(Intercept)" in res.summary()
    assert np.isfinite(res.coef_table()["df"]).all()
    assert np.isfinite(res.coef_table("kenward-roger")["df"]).all()
    assert np.isfinite(res.anova()["den_df"]).all()


def test_large_models_keep_the_graph(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("y ~ x + (x | g) + (1 | h)", frame())
    obj = res.model.objective
    dense = varpar_info(obj, res.theta, res.sigma, True)
    monkeypatch.setattr(deviance, "DENSE_MAX_Q", 0)
    monkeypatch.setattr(deviance, "dense_varpar", None)  # the graph path must not use it
    graph = varpar_info(obj, res.theta, res.sigma, True)
    assert close(graph.hessian, dense.hessian) and close(graph.jacobian, dense.jacobian)


def test_distributions_match_scipy_stats():
    stats = pytest.importorskip("scipy.stats")
    t = np.array([-3.0, -0.2, 0.0, 1.5, 8.0])
    for df in (1.0, 4.3, 17.0, 250.0, np.inf):
        np.testing.assert_allclose(t_two_sided(t, df), 2 * stats.t.sf(np.abs(t), df),
                                   rtol=1e-13, atol=1e-300)
    for f, a, b in [(0.5, 1, 3.2), (3.0, 2, 20), (12.0, 5, 100.5)]:
        assert f_sf(f, a, b) == pytest.approx(stats.f.sf(f, a, b), rel=1e-13)
    for x, k in [(0.1, 1), (3.84, 1), (20.0, 7)]:
        assert chi2_sf(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-13)


@pytest.mark.parametrize("fixed", ["x", "1 + x + z", "0 + x + z", "x + x", "1"])
def test_plain_terms_match_formulae(fixed):
    fm = pytest.importorskip("formulae")
    desc = fm.model_description(fixed)
    intercept = any(type(t).__name__ == "Intercept" for t in desc.terms)
    terms = [tuple(c.name for c in t.components) for t in desc.terms
             if type(t).__name__ != "Intercept"]
    assert _term_variables(fixed) == (intercept, terms)


@pytest.mark.parametrize(("formula", "kw"), CASES)
def test_blocked_first_term_matches_graph(formula, kw, monkeypatch):
    """The blockwise ``A - Y'Y`` (used for large first terms) on every case."""
    monkeypatch.setattr(varpar_dense, "BLOCKED_MIN_Q1", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.Model(formula, frame(), **kw).fit("reml")
    obj = res.model.objective
    theta, sigma = 1.3 * res.theta + 0.05, 0.9 * res.sigma
    for reml in (True, False):
        ref = graph_varpar_info(obj, theta, sigma, reml)
        d, g, H, C, J = dense_varpar(obj.design, obj.gram, theta, sigma, reml)
        assert d == pytest.approx(ref.deviance, rel=1e-12)
        assert close(g, ref.gradient) and close(H, ref.hessian)
        assert close(C, ref.vcov_beta) and close(J, ref.jacobian)
