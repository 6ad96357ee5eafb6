"""A nearly exact fit's theta polished on the residual-based criterion
(:mod:`hierlm.estimate.stable_polish`).

Reference: the optimum of a dense Householder QR criterion
(:func:`tests.dense.profiled_criterion_qr`), found here by SciPy's bounded scalar
minimizer, independent of hierlm's optimizer and of its Gram blocks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.optimize

import hierlm
from hierlm.estimate import descent_loop, kernel_loop, psi_call, stable_polish
from hierlm.objective import numpy_link
from tests.conftest import dataset, reference
from tests.dense import profiled_criterion_qr
from tests.test_hard_designs import near_perfect_data


def _qr_optimum(design: hierlm.design.terms.ModelDesign, guess: float) -> float:
    res = scipy.optimize.minimize_scalar(
        lambda t: profiled_criterion_qr(design, np.array([t]), True),
        bounds=(0.5 * guess, 2.0 * guess), method="bounded",
        options={"xatol": guess * 1e-10})
    return float(res.fun)


def _kernel_path(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("numba")
    fn = kernel_loop.build()
    assert fn is not None
    monkeypatch.setenv("HIERLM_BACKGROUND_LOADS", "1")
    monkeypatch.setattr(numpy_link, "_PROCESS_SPENT", [1.0])
    monkeypatch.setattr(kernel_loop, "_LOOP", [fn])
    monkeypatch.setattr(descent_loop, "_LOOPS", {})
    monkeypatch.setattr(psi_call, "_LOADED", {})


@pytest.mark.parametrize("noise", [1e-5, 1e-6])
@pytest.mark.parametrize("path", ["numpy", "kernel loop"])
def test_nearly_exact_fits_reach_the_stable_optimum(noise: float, path: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever evaluation drove the search (the criteria of the two scatter by about
    ``gram_noise`` around the true one), the fit ends at the QR criterion's optimum."""
    if path == "kernel loop":
        _kernel_path(monkeypatch)
    model = hierlm.Model("y ~ x + (1 | g)", near_perfect_data(noise))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hierlm.ConvergenceWarning)
        res = model.fit("reml")
    L_R = model.objective.evaluate(np.asarray(res.theta), True)[3]
    assert stable_polish.gram_noise(model.objective, L_R, True) > stable_polish.NOISE_TOL
    best = _qr_optimum(model.design, float(res.theta[0]))
    at = profiled_criterion_qr(model.design, np.asarray(res.theta), True)
    assert at <= best + 1e-9 * abs(best)
    assert "stable-polish" in res.optimizer["method"]
    assert res.objective == pytest.approx(at, rel=1e-10)  # the reported criterion


@pytest.mark.parametrize("key", ["sleepstudy_slopes_reml", "penicillin_crossed_ml",
                                 "dyestuff2_singular_reml"])
def test_ordinary_fits_are_not_polished(key: str) -> None:
    case = reference()[key]
    m = hierlm.Model(case["formula"], dataset(case["data"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = m.fit(case["method"].lower())
    reml = case["method"].upper() == "REML"
    L_R = m.objective.evaluate(np.asarray(res.theta, float), reml)[3]
    assert stable_polish.gram_noise(m.objective, L_R, reml) < 1e-10
    assert "stable-polish" not in res.optimizer["method"]


def test_nothing_lower_leaves_the_fit_as_it_is() -> None:
    m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    res = m.fit()
    from hierlm.estimate.optimize import optimize_theta
    from hierlm.estimate.stable_pls import stable_estimates

    opt = optimize_theta(m.objective, True)

    def at(th: np.ndarray) -> tuple:
        return stable_estimates(m.objective, th, *m.objective.evaluate(th, True)[2:], True)

    # told that the criterion there is already far below anything near: nothing lower
    assert stable_polish.polish(m.objective, opt, True, res.objective - 1.0, at) is None
