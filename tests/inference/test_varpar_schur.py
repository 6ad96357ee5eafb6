"""The blockwise two-or-more-term quantities against the dense ``q x q`` path and an n x n check.

:func:`hierlm.inference.varpar_schur.schur_varpar` must equal
:func:`hierlm.inference.varpar_dense.dense_varpar` with ``levels=False`` (one dense
Cholesky factor of ``Omega``, Harville's formulas on ``q x q`` matrices) to 1e-10
relative, REML and ML, at and away from the estimate, for crossed and nested
intercepts, vector-valued first and later terms, three terms, weights, no fixed
effects and a zero variance.  Outside that code: the deviance, vcov(beta), the Hessian
and the Jacobian against an ``n x n`` computation and its central finite differences
(tests/inference/test_deviance.py's helpers).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.inference import deviance, varpar_dense
from hierlm.inference.varpar_dense import dense_varpar
from hierlm.inference.varpar_schur import schur_varpar
from tests.inference.test_deviance import dense_dev, dense_vcov, fd_hessian


def frame(n=400, lg=30, lh=8, seed=2):
    rng = np.random.default_rng(seed)
    g, h, c = rng.integers(0, lg, n), rng.integers(0, lh, n), rng.integers(0, 5, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    y = (1 + x + rng.normal(size=lg)[g] + rng.normal(size=lh)[h]
         + 0.5 * rng.normal(size=lh)[h] * x + 0.6 * rng.normal(size=(lg, 5))[g, c]
         + 0.4 * rng.normal(size=lg)[g] * x + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str), "h": h.astype(str),
                         "c": c.astype(str), "w": rng.uniform(0.5, 2.0, n)})


CASES = [("y ~ x + (1 | g) + (1 | h)", {}),
         ("y ~ x + (1 | g) + (1 | g:c)", {}),
         ("y ~ x + (x | g) + (1 | h)", {}),
         ("y ~ x + z + (1 | g) + (1 + x | h)", {}),
         ("y ~ x + (x | g) + (1 + z | h) + (1 | c)", {}),
         ("y ~ x + (1 | g) + (1 | h)", {"weights": "w"}),
         ("y ~ 0 + (1 | g) + (1 | h)", {})]


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
    got = schur_varpar(obj.design, obj.gram, theta, sigma, reml)
    ref = dense_varpar(obj.design, obj.gram, theta, sigma, reml, levels=False)
    assert got[0] == pytest.approx(ref[0], rel=1e-10)
    # ~0 at the optimum: the gradient is compared on the Hessian's scale
    assert_close(got[1], ref[1], scale=float(np.abs(ref[2]).max()))
    for a, b in zip(got[2:], ref[2:], strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("shift", [False, True])
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(("formula", "kw"), CASES)
def test_schur_matches_dense(formula, kw, reml, shift):
    res = fitted(formula, frame(), kw)
    assert len(res.model.design.terms) > 1
    theta, sigma = res.theta, res.sigma
    if shift:
        theta, sigma = 1.3 * theta + 0.05, 0.9 * sigma
    compare(res.model.objective, theta, sigma, reml)


def test_zero_variances():
    res = fitted("y ~ x + (x | g) + (1 + z | h)", frame())
    obj = res.model.objective
    for reml in (True, False):
        theta = res.theta.copy()
        theta[1] = theta[2] = 0.0   # the first term's slope
        compare(obj, theta, res.sigma, reml)
        theta = res.theta.copy()
        theta[-1] = 0.0             # the second term's last template entry
        compare(obj, theta, res.sigma, reml)


@pytest.mark.parametrize("reml", [True, False])
def test_schur_matches_finite_differences(reml):
    res = fitted("y ~ x + (x | g) + (1 | h)", frame(n=120, lg=12, lh=5, seed=4),
                 method="reml" if reml else "ml")
    design, obj = res.model.design, res.model.objective
    psi = np.append(1.2 * res.theta + 0.03, 1.1 * res.sigma)
    d, g, H, C, J = schur_varpar(obj.design, obj.gram, psi[:-1], psi[-1], reml)
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


def test_large_two_term_models_skip_the_q_by_q_path(monkeypatch):
    # q = 460 > SCHUR_MIN_Q: varpar_info goes blockwise, never through dense_gram
    res = fitted("y ~ x + (1 | g) + (1 | g:c)", frame(n=1500, lg=90, seed=6))
    obj = res.model.objective
    assert obj.design.q > varpar_dense.SCHUR_MIN_Q
    ref = dense_varpar(obj.design, obj.gram, res.theta, res.sigma, True, levels=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the dense q x q path was used")

    monkeypatch.setattr(varpar_dense, "dense_gram", refuse)
    monkeypatch.setattr(deviance, "graph_varpar_info", refuse)
    got = deviance.varpar_info(obj, res.theta, res.sigma, True)
    assert_close(got.hessian, ref[2])
    assert_close(got.jacobian, ref[4])
    # above DENSE_MAX_Q too (the rest's q_r is small): blockwise, not the graph
    monkeypatch.setattr(deviance, "DENSE_MAX_Q", 10)
    got = deviance.varpar_info(obj, res.theta, res.sigma, True)
    assert_close(got.hessian, ref[2])


def test_the_shared_factor_is_read_only():
    # the last factor is kept for the same Gram blocks and theta: REML, ML and
    # Kenward-Roger in turn must each see it unchanged
    from hierlm.inference import kenward_roger
    from hierlm.inference.schur_factor import schur_factor

    res = fitted("y ~ x + (x | g) + (1 | h)", frame())
    obj = res.model.objective
    first = schur_varpar(obj.design, obj.gram, res.theta, res.sigma, True)
    assert schur_factor(obj.gram, res.theta, 2) is schur_factor(obj.gram, res.theta, 2)
    ml = schur_varpar(obj.design, obj.gram, res.theta, res.sigma, False)
    ref_ml = dense_varpar(obj.design, obj.gram, res.theta, res.sigma, False, levels=False)
    assert_close(ml[2], ref_ml[2])
    again = schur_varpar(obj.design, obj.gram, res.theta, res.sigma, True)
    for a, b in zip(first[1:], again[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    kenward_roger._kr_info(res)
    again = schur_varpar(obj.design, obj.gram, res.theta, res.sigma, True)
    for a, b in zip(first[1:], again[1:], strict=True):
        np.testing.assert_array_equal(a, b)
