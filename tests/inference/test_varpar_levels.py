"""The level-by-level one-term quantities against the dense ``q x q`` path and an n x n check.

:func:`hierlm.inference.varpar_levels.one_term_varpar` must equal
:func:`hierlm.inference.varpar_dense.dense_varpar` with ``levels=False`` (dense and
blockwise ``A - Y'Y``, Harville's formulas on ``q x q`` matrices) to 1e-10 relative,
REML and ML, at and away from the estimate, with weights, without fixed effects, with
a 3 x 3 template and on the boundary.  Outside that code: the deviance, vcov(beta), the
Hessian and the Jacobian against an ``n x n`` computation and its central finite
differences (tests/inference/test_deviance.py's helpers).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.inference import deviance, varpar_dense
from hierlm.inference.varpar_dense import dense_varpar
from hierlm.inference.varpar_levels import one_term_varpar
from tests.inference.test_deviance import dense_dev, dense_vcov, fd_hessian


def frame(levels=15, per=8, seed=5):
    rng = np.random.default_rng(seed)
    n = levels * per
    g = np.repeat(np.arange(levels), per)
    rng.shuffle(g)
    x, z = rng.standard_normal(n), rng.standard_normal(n)
    y = (1 + 0.5 * x + rng.standard_normal(levels)[g] + 0.4 * rng.standard_normal(levels)[g] * x
         + 0.3 * rng.standard_normal(levels)[g] * z + rng.standard_normal(n))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str),
                         "f": np.where(np.arange(n) % 3 == 0, "a", "b"),
                         "w": rng.uniform(0.5, 2.0, n)})


CASES = [("y ~ x + (1 | g)", {}),
         ("y ~ x + (x | g)", {}),
         ("y ~ x * f + (1 + x + z | g)", {}),
         ("y ~ x + (x | g)", {"weights": "w"}),
         ("y ~ 0 + (1 | g)", {}),
         ("y ~ 0 + x + (0 + x | g)", {})]


def fitted(formula, data, kw=None, method="reml"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.Model(formula, data, **(kw or {})).fit(method)


def assert_close(a, b, tol=1e-10, scale=0.0):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    scale = max(float(np.abs(b).max(initial=0.0)), scale, 1e-300)
    assert float(np.abs(a - b).max(initial=0.0)) <= tol * scale


def compare(obj, theta, sigma, reml):
    got = one_term_varpar(obj.design, obj.gram, theta, sigma, reml)
    ref = dense_varpar(obj.design, obj.gram, theta, sigma, reml, levels=False)
    assert got[0] == pytest.approx(ref[0], rel=1e-10)
    # ~0 at the optimum: the gradient is compared on the Hessian's scale
    assert_close(got[1], ref[1], scale=float(np.abs(ref[2]).max()))
    for a, b in zip(got[2:], ref[2:], strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(("formula", "kw"), CASES)
def test_levels_match_dense(formula, kw, reml, shift):
    res = fitted(formula, frame(), kw)
    theta, sigma = res.theta, res.sigma
    if shift:
        theta, sigma = 1.3 * theta + 0.05, 0.9 * sigma
    compare(res.model.objective, theta, sigma, reml)


def test_boundary_and_blockwise_dense():
    """A zero template entry, and a first term large enough for the blockwise dense path."""
    res = fitted("y ~ x + (x | g)", frame(levels=150, per=4, seed=2))
    assert res.model.design.terms[0].q > varpar_dense.BLOCKED_MIN_Q1
    obj = res.model.objective
    for reml in (True, False):
        compare(obj, res.theta, res.sigma, reml)
        theta = res.theta.copy()
        theta[1] = theta[2] = 0.0
        compare(obj, theta, res.sigma, reml)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("formula", ["y ~ x + (x | g)", "y ~ x + z + (1 + x + z | g)"])
def test_levels_match_finite_differences(formula, reml):
    res = fitted(formula, frame(levels=8, per=6, seed=9), method="reml" if reml else "ml")
    design, obj = res.model.design, res.model.objective
    psi = np.append(1.2 * res.theta + 0.03, 1.1 * res.sigma)
    d, g, H, C, J = one_term_varpar(obj.design, obj.gram, psi[:-1], psi[-1], reml)
    assert d == pytest.approx(dense_dev(design, psi, reml), rel=1e-10)
    np.testing.assert_allclose(C, dense_vcov(design, psi), rtol=1e-9)
    h = 1e-4 * np.maximum(np.abs(psi), 0.1)
    eye = np.eye(len(psi))
    fd_g = np.array([(dense_dev(design, psi + eye[j] * h[j], reml)
                      - dense_dev(design, psi - eye[j] * h[j], reml)) / (2 * h[j])
                     for j in range(len(psi))])
    np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-6 * np.abs(fd_g).max())
    fd_H = fd_hessian(lambda x: dense_dev(design, x, reml), psi, h)
    np.testing.assert_allclose(H, fd_H, rtol=1e-5, atol=1e-5 * np.abs(fd_H).max())
    for j in range(len(psi)):
        dC = (dense_vcov(design, psi + eye[j] * h[j])
              - dense_vcov(design, psi - eye[j] * h[j])) / (2 * h[j])
        np.testing.assert_allclose(J[j], dC, rtol=1e-6, atol=1e-7 * np.abs(dC).max())


def test_one_term_models_skip_the_q_by_q_path(monkeypatch):
    res = fitted("y ~ x + (x | g)", frame())
    obj = res.model.objective
    ref = dense_varpar(obj.design, obj.gram, res.theta, res.sigma, True, levels=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the dense q x q path was used")

    monkeypatch.setattr(varpar_dense, "dense_gram", refuse)
    got = dense_varpar(obj.design, obj.gram, res.theta, res.sigma, True)
    assert_close(got[2], ref[2])
    two = fitted("y ~ x + (1 | g) + (0 + z | g)", frame())
    with pytest.raises(AssertionError, match="dense q x q"):
        dense_varpar(two.model.objective.design, two.model.objective.gram, two.theta,
                     two.sigma, True)


def test_one_term_above_dense_max_q_skips_the_graph(monkeypatch):
    """One term goes level by level whatever q; the graph gives the same numbers."""
    res = fitted("y ~ x + (x | g)", frame())
    obj = res.model.objective
    ref = deviance.graph_varpar_info(obj, res.theta, res.sigma, True)
    monkeypatch.setattr(deviance, "DENSE_MAX_Q", 0)

    def refuse(*args, **kwargs):
        raise AssertionError("the second-order graph was called")

    monkeypatch.setattr(deviance, "graph_varpar_info", refuse)
    got = deviance.varpar_info(obj, res.theta, res.sigma, True)
    assert_close(got.hessian, ref.hessian, tol=1e-9)
    assert_close(got.jacobian, ref.jacobian, tol=1e-9)
