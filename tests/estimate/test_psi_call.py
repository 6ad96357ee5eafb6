"""The one compiled evaluation in psi (:mod:`hierlm.estimate.psi_call`).

References: the separate calls it replaces (each term's kernel through
:meth:`DesignCovariance.theta_jacobian`, the objective's own evaluation, ``J' g`` by
NumPy), central finite differences of the criterion in psi, and the optimizers run
with the compiled call switched off.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.covariance import compiled
from hierlm.covariance.design import DesignCovariance
from hierlm.estimate import psi_call
from hierlm.estimate.optimize import optimize_theta
from hierlm.estimate.optimize_structured import optimize_psi
from hierlm.estimate.psi_call import OK, THETA_NOT_FINITE, PsiCall
from hierlm.objective import compile_objective


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    lag = np.abs(np.subtract.outer(np.arange(4), np.arange(4)))
    b = rng.multivariate_normal(np.zeros(4), 0.5 ** lag, size=24)
    site = rng.normal(size=6)
    rows = [(f"s{g:02d}", f"c{g % 6}", f"t{t}", 0.2 * t + b[g, t] + site[g % 6] + rng.normal())
            for g in range(24) for t in range(4) for _ in range(2)]
    return pd.DataFrame(rows, columns=["subject", "site", "time", "y"])


def _numba(formula: str, data: pd.DataFrame) -> tuple:
    d = hierlm.build_design(formula, data)
    cov = DesignCovariance.of(d)
    for kind in compiled.KINDS:
        assert compiled.load(kind) is not None
    return compile_objective(d, backend="numba"), cov


FORMULAS = ["y ~ time + diag(0 + time | subject)",
            "y ~ time + ar1(0 + time | subject, het=True)",
            "y ~ time + cs(0 + time | subject)",
            "y ~ time + toep(0 + time | subject, hom=True)",
            "y ~ time + toep(0 + time | subject) + (1 | site)",
            "y ~ time + (0 + time | subject)"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_one_call_equals_the_separate_calls(formula: str, data: pd.DataFrame) -> None:
    obj, cov = _numba(formula, data)
    rng = np.random.default_rng(3)
    for reml in (True, False):
        call = PsiCall(obj, cov).ready(reml)
        assert call is not None
        for _ in range(3):
            psi = cov.psi_start() + rng.normal(scale=0.4, size=cov.n_psi)
            status, f, gpsi, theta, L1, L_R = call(psi)
            theta0, J = cov.theta_jacobian(psi)
            f0, g0, L10, L_R0 = obj.evaluate(theta0, reml)
            assert status == OK
            np.testing.assert_array_equal(theta, theta0)
            assert f - obj.gram.sum_log_w == f0
            np.testing.assert_array_equal(L1, L10)
            np.testing.assert_array_equal(L_R, L_R0)
            np.testing.assert_allclose(gpsi, J.T @ g0, rtol=1e-12,
                                       atol=1e-12 * np.abs(g0).max())


@pytest.mark.parametrize("formula", FORMULAS[1:5])
def test_gradient_matches_finite_differences(formula: str, data: pd.DataFrame) -> None:
    obj, cov = _numba(formula, data)
    call = PsiCall(obj, cov).ready(True)
    psi = cov.psi_start() + 0.3
    gpsi = call(psi)[2]
    h = 1e-5
    fd = np.array([(call(psi + h * e)[1] - call(psi - h * e)[1]) / (2 * h)
                   for e in np.eye(cov.n_psi)])
    np.testing.assert_allclose(gpsi, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


def test_non_finite_and_read_only_psi(data: pd.DataFrame) -> None:
    obj, cov = _numba(FORMULAS[1], data)
    call = PsiCall(obj, cov).ready(True)
    psi = cov.psi_start()
    psi[0] = np.nan
    assert call(psi)[0] == THETA_NOT_FINITE
    frozen = cov.psi_start()
    frozen.setflags(write=False)
    out = call(frozen)  # another specialization: not run, the separate calls instead
    assert out is None or out[0] == OK


def test_not_used_off_the_numba_link_or_for_heavy_models(
        data: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    d = hierlm.build_design(FORMULAS[2], data)
    cov = DesignCovariance.of(d)
    assert PsiCall(compile_objective(d, backend="vm"), cov).ready(True) is None
    obj = compile_objective(d, backend="numba")
    assert PsiCall(obj, cov).ready(True) is not None
    monkeypatch.setattr(psi_call, "NUMBA_WORK", 0.0)
    assert PsiCall(obj, cov).ready(True) is None


@pytest.mark.parametrize("formula", [FORMULAS[1], FORMULAS[4]])
def test_optimize_psi_as_with_separate_calls(formula: str, data: pd.DataFrame,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    obj, cov = _numba(formula, data)
    fused = optimize_psi(obj, reml=True)
    monkeypatch.setattr(psi_call.PsiCall, "ready", lambda self, reml: None)
    separate = optimize_psi(obj, reml=True)
    assert fused.converged and separate.converged
    assert abs(fused.objective - separate.objective) <= 1e-10 * abs(separate.objective)
    np.testing.assert_allclose(fused.psi, separate.psi, atol=1e-5)
    np.testing.assert_allclose(fused.theta, separate.theta, atol=1e-5)


@pytest.mark.parametrize("weighted", [False, True])
def test_optimize_theta_bit_for_bit(data: pd.DataFrame, weighted: bool,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # prior weights: lme4's criterion is the working problem's minus sum(log w)
    w = 1.0 + (np.arange(len(data)) % 3) if weighted else None
    d = hierlm.build_design(FORMULAS[5], data, weights=w)
    obj = compile_objective(d, backend="numba")
    assert (obj.gram.sum_log_w != 0.0) == weighted
    fused = optimize_theta(obj, reml=False)
    monkeypatch.setattr(psi_call.PsiCall, "ready", lambda self, reml: None)
    separate = optimize_theta(obj, reml=False)
    np.testing.assert_array_equal(fused.theta, separate.theta)
    assert fused.objective == separate.objective
    assert fused.trace == separate.trace
    assert fused.factor is not None and separate.factor is not None
    np.testing.assert_array_equal(fused.factor[1], separate.factor[1])


def test_one_function_per_graph_not_per_model(data: pd.DataFrame) -> None:
    # another structure, another sample size: the same graph, the same compiled function
    small = data[data["subject"] < "s12"]
    calls = []
    for formula, frame in ((FORMULAS[1], data), (FORMULAS[3], small), (FORMULAS[0], small)):
        obj, cov = _numba(formula, frame)
        assert PsiCall(obj, cov).ready(True) is not None
        calls.append(psi_call._FUNCTIONS[obj.graph.digest])
    assert calls[0] is calls[1] is calls[2]
