"""The quasi-Newton strategy of the one theta optimizer (:mod:`hierlm.estimate.quasi_newton`).

References: closed-form minima of quadratics (inside the box and on its bound), the
ordinary fit of the same response, and the shared optimizer's own entry point.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from hierlm.estimate import quasi_newton_loop, theta_optimizer
from hierlm.estimate.quasi_newton import QuasiNewton, accepts, bfgs
from hierlm.estimate.quasi_newton_loop import CompiledLoop
from hierlm.estimate.theta_optimizer import ParameterSpace, SearchOptions, minimize_theta
from hierlm.inference import refit as refitmod
from hierlm.inference.anova import info_of
from hierlm.inference.refit import Refitter

#: d(x) = (x - c)' A (x - c), minimum c inside x_1 >= 0, or on it for c_1 < 0
A = np.array([[2.0, 0.6], [0.6, 1.0]])


def _quad(c: np.ndarray):
    def f(x: np.ndarray) -> tuple[float, np.ndarray]:
        r = x - c
        return float(r @ A @ r), 2 * A @ r
    return f


SPACE = ParameterSpace.box([(0.0, None), (None, None)])
FALLBACK = SearchOptions(check_tol=1e-6, runs=2, maxls=20)


def test_quasi_newton_reaches_the_interior_minimum() -> None:
    c = np.array([1.5, -0.5])
    qn = QuasiNewton(np.linalg.inv(2 * A) * 1.3, 1e-14, 1e-6, FALLBACK)
    r = minimize_theta(_quad(c), SPACE, np.array([1.0, 0.0]), SearchOptions(strategy=qn))
    assert r.converged and r.method == "quasi-Newton"
    np.testing.assert_allclose(r.theta, c, atol=1e-7)


def test_on_a_bound_the_l_bfgs_b_stage_takes_over() -> None:
    # the minimum over x_1 >= 0 of the quadratic centred at (-1, 2): x_1 = 0 and, from
    # d d / d x_2 = 1.2 (x_1 + 1) + 2 (x_2 - 2) = 0, x_2 = 2 - 0.6 = 1.4
    c = np.array([-1.0, 2.0])
    for hess_inv in (np.linalg.inv(2 * A), None):
        qn = QuasiNewton(hess_inv, 1e-14, 1e-6, FALLBACK)
        r = minimize_theta(_quad(c), SPACE, np.array([1.0, 0.0]),
                           SearchOptions(strategy=qn))
        assert r.converged and r.method.endswith("L-BFGS-B")
        np.testing.assert_allclose(r.theta, [0.0, 1.4], atol=1e-6)
        assert accepts(SPACE, r.theta, r.gradient, 1e-6)


def test_python_bfgs_stops_at_a_bound() -> None:
    c = np.array([-1.0, 2.0])
    f = _quad(c)
    ok, x, *_ = bfgs(lambda x: (*f(x), np.zeros((0, 0))), np.array([1.0, 0.0]),
                     np.linalg.inv(2 * A), SPACE.lower, 1e-14, lambda th, g: True)
    assert not ok and x[0] > 0  # stalled inside: the caller's L-BFGS-B goes on


@pytest.fixture(scope="module")
def res():
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


def _hessian(res):
    H = info_of(res).hessian
    return H[:-1, :-1] - np.outer(H[:-1, -1], H[-1, :-1]) / H[-1, -1]


def test_refits_go_through_the_shared_optimizer(res, monkeypatch) -> None:
    calls = []
    real = theta_optimizer.minimize_theta

    def counted(*a, **k):
        calls.append(k.get("options", a[3] if len(a) > 3 else None))
        return real(*a, **k)

    monkeypatch.setattr(refitmod, "minimize_theta", counted)
    r = Refitter(res.model.objective, reml=True, hess=_hessian(res))
    y = res.model.design.y * 1.01
    out = r.refit_block(y[None, :], res.theta)
    full = res.model.with_response(y).fit("reml")
    assert out.ok[0] and calls and isinstance(calls[0].strategy, QuasiNewton)
    assert out.objective[0] == pytest.approx(full.objective, rel=1e-9)


def test_the_compiled_loop_loads_once_per_process(res) -> None:
    r = Refitter(res.model.objective, reml=True, hess=_hessian(res))
    r.refit_block(res.model.design.y[None, :], res.theta)
    assert r.loop.ready and r.loop.graph is not None
    assert r.loop.graph.digest in quasi_newton_loop._LOADED
    # a later bootstrap's loop runs at once, loading nothing
    assert CompiledLoop(r.loop.graph).ready
