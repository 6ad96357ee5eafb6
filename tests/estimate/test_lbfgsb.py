"""The lean L-BFGS-B loop against scipy.optimize.minimize: same points, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

import hierlm
from hierlm.estimate import lbfgsb
from hierlm.estimate.lbfgsb import minimize_lbfgsb
from hierlm.objective import compile_objective

OPTIONS = {"maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6, "maxls": 50}


def _recorder(fn):
    seen: list[np.ndarray] = []

    def fun(x):
        seen.append(x.copy())
        return fn(x)

    return fun, seen


def _rosenbrock(x):
    return float(scipy.optimize.rosen(x)), scipy.optimize.rosen_der(x)


def _sleepstudy():
    d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    # one link for the whole test: "auto" moves a structure from NumPy to Numba after a
    # second of evaluations in the process (sooner on a loaded machine), and the two
    # links agree to rounding, not bit for bit
    obj = compile_objective(d, backend="vm")
    return lambda phi: obj.value_and_grad(phi, True)


def _nonfinite(x):
    # a criterion that is infinite on part of the space, as the optimizer's wrapper
    # answers outside the positive definite region
    if x[0] < -0.5:
        return 1e300, np.zeros_like(x)
    return float(np.sum((x - 2.0) ** 4) + x[0]), 4.0 * (x - 2.0) ** 3 + np.eye(x.size)[0]


@pytest.mark.parametrize("make, x0, opts", [
    (lambda: _rosenbrock, np.array([-1.2, 1.0, 0.5, 2.0]), OPTIONS),
    (lambda: _rosenbrock, np.array([-1.2, 1.0]), {**OPTIONS, "maxiter": 5}),
    (_sleepstudy, np.array([1.0, 0.0, 1.0]), OPTIONS),
    (lambda: _nonfinite, np.array([0.0, 0.0]), {**OPTIONS, "maxls": 3}),
])
def test_same_points_and_message_as_scipy(make, x0, opts) -> None:
    fun_a, seen_a = _recorder(make())
    res = scipy.optimize.minimize(fun_a, x0, jac=True, method="L-BFGS-B", options=opts)
    fun_b, seen_b = _recorder(make())
    message = minimize_lbfgsb(fun_b, x0, **opts)
    assert message == str(res.message)
    assert len(seen_a) == len(seen_b) > 2
    for a, b in zip(seen_a, seen_b, strict=True):
        assert np.array_equal(a, b)


def test_fallback_is_scipy(monkeypatch) -> None:
    monkeypatch.setattr(lbfgsb, "FAST", False)
    fun, seen = _recorder(_rosenbrock)
    msg = minimize_lbfgsb(fun, np.array([-1.2, 1.0]), **OPTIONS)
    assert msg.startswith("CONVERGENCE") and np.allclose(seen[-1], 1.0, atol=1e-4)


def test_lean_loop_is_used_on_this_scipy() -> None:
    # the bitwise comparison above is only meaningful where the lean loop runs
    major, minor = (int(v) for v in scipy.__version__.split(".")[:2])
    assert lbfgsb.FAST == ((1, 15) <= (major, minor) < (2, 0))


@pytest.mark.parametrize("bounds, x0", [
    ([(0.0, None), (None, 0.8), (-0.5, 0.5), (None, None)], np.array([-1.2, 1.0, 0.5, 2.0])),
    ([(0.5, 2.0), (0.0, None)], np.array([3.0, -1.0])),  # a start outside: clipped
])
def test_bounded_runs_are_scipys(bounds, x0) -> None:
    fun_a, seen_a = _recorder(_rosenbrock)
    res = scipy.optimize.minimize(fun_a, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                  options=OPTIONS)
    fun_b, seen_b = _recorder(_rosenbrock)
    run = lbfgsb.run_lbfgsb(fun_b, x0, bounds=bounds, **OPTIONS)
    assert run.message == str(res.message)
    assert np.array_equal(run.x, res.x) and run.fun == res.fun
    assert len(seen_a) == len(seen_b) > 2
    for a, b in zip(seen_a, seen_b, strict=True):
        assert np.array_equal(a, b)
