"""The hand-written kernel of the profiled criterion (:mod:`hierlm.objective.blocked_kernel`).

Outside checks: the PyTensor graph (VM link) and the dense NumPy evaluation, which share
only the Gram blocks (criterion, gradient, ``L1`` and ``L_R`` to 1e-10); the dense GLS
criterion of ``tests.dense`` (``n x n`` V); central finite differences for the gradient;
lme4's criteria at its own estimates for the reference fits.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import hierlm  # noqa: E402
from hierlm.objective import compile_objective  # noqa: E402
from hierlm.objective.blocked_kernel import profiled_eval, profiled_kernel  # noqa: E402
from hierlm.objective.gram import compute_gram  # noqa: E402
from hierlm.objective.numpy_link import profiled_numpy  # noqa: E402
from hierlm.objective.profiled import compiled_for, gram_values  # noqa: E402
from tests.conftest import dataset, reference  # noqa: E402
from tests.dense import profiled_criterion  # noqa: E402
from tests.objective.test_profiled import FORMULAS, random_data, random_theta  # noqa: E402

MORE = [*FORMULAS, "y ~ 0 + (1 | g)", "y ~ x * k + (x | h)", "y ~ x + (1 + x + z | g)",
        "y ~ x + (1 | g) + (1 | h) + (1 | k)"]


def _args(design: hierlm.design.terms.ModelDesign, theta: np.ndarray,
          reml: bool) -> list[np.ndarray]:
    g = compute_gram(design)
    return [np.asarray(theta, float), np.asarray(float(reml)), np.asarray(float(g.n)),
            np.asarray(float(g.p)), *gram_values(g)]


def _close(a: object, b: object) -> None:
    b = np.asarray(b)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * float(np.abs(b).max()))


@pytest.mark.parametrize("formula", MORE)
def test_kernel_matches_the_graph_and_numpy(formula: str) -> None:
    design = hierlm.build_design(formula, random_data(len(formula) + 7))
    obj = compile_objective(design)
    vm = compiled_for(obj.structure, "vm")
    rng = np.random.default_rng(len(formula))
    for _ in range(3):
        theta = random_theta(design, rng)
        for reml in (True, False):
            args = _args(design, theta, reml)
            ours = profiled_kernel(*args)
            for a, b, c in zip(ours, vm(*args), profiled_numpy(*args), strict=True):
                _close(a, b)
                _close(a, c)
            # the criterion of the working problem (no weights here) against a dense GLS
            assert ours[0] == pytest.approx(profiled_criterion(design, theta, reml), rel=1e-9)


@pytest.mark.parametrize("formula", MORE[:6])
def test_kernel_gradient_matches_finite_differences(formula: str) -> None:
    design = hierlm.build_design(formula, random_data(3 + len(formula)))
    theta = random_theta(design, np.random.default_rng(5))
    for reml in (True, False):
        _, grad, _, _ = profiled_kernel(*_args(design, theta, reml))
        h = 1e-6
        fd = np.array([(profiled_kernel(*_args(design, theta + h * e, reml))[0]
                        - profiled_kernel(*_args(design, theta - h * e, reml))[0]) / (2 * h)
                       for e in np.eye(len(theta))])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("key", ["sleepstudy_slopes_reml", "sleepstudy_zerocorr_ml",
                                 "penicillin_crossed_reml", "pastes_nested_ml",
                                 "dyestuff2_singular_reml"])
def test_kernel_at_lme4s_estimates_gives_lme4s_criterion(key: str) -> None:
    case = reference()[key]
    design = hierlm.build_design(case["formula"], dataset(case["data"]))
    reml = case["method"].upper() == "REML"
    f = profiled_kernel(*_args(design, np.atleast_1d(np.asarray(case["theta"], float)), reml))[0]
    crit = case.get("deviance_or_reml", case.get("reml_criterion"))
    assert f == pytest.approx(crit, rel=1e-7)


def test_a_factor_that_fails_gives_inf_and_nan() -> None:
    design = hierlm.build_design(FORMULAS[1], random_data(1))
    theta = np.array([np.nan, 0.0, 1.0])
    f, grad, _, L_R = profiled_kernel(*_args(design, theta, True))
    assert f == np.inf and np.isnan(grad).all() and np.isnan(L_R).all()
    assert profiled_numpy(*_args(design, theta, True))[0] == np.inf  # as the NumPy link


def test_eval_reports_status_as_the_compiled_call() -> None:
    """``(status, f, grad, theta, L1, L_R)`` as :mod:`hierlm.estimate.psi_call`'s
    function: 0 finite, 1 not, 2 theta not finite (the criterion not evaluated)."""
    design = hierlm.build_design(FORMULAS[1], random_data(2))
    args = _args(design, np.array([1.0, 0.2, 0.5]), True)
    layout, log_scale = np.zeros((1, 6), dtype=np.int64), np.zeros(2)
    out = profiled_eval(args[0], layout, log_scale, *args[1:])
    assert out[0] == 0 and out[1] == profiled_kernel(*args)[0]
    np.testing.assert_array_equal(out[3], args[0])
    assert profiled_eval(np.array([np.inf, 0.0, 1.0]), layout, log_scale, *args[1:])[0] == 2
    assert profiled_eval(np.array([np.nan, 0.0, 1.0]), layout, log_scale, *args[1:])[0] == 2
