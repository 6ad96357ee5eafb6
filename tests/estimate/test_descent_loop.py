"""The fit's L-BFGS-B runs as one compiled loop (:mod:`hierlm.estimate.descent_loop`).

References: SciPy's L-BFGS-B driving the same compiled evaluations
(:mod:`hierlm.estimate.lbfgsb`, bitwise SciPy's ``minimize``), point by point, and
lme4's criteria of the reference fits.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")

import hierlm  # noqa: E402
from hierlm.estimate import descent_loop, kernel_loop, psi_call  # noqa: E402
from hierlm.objective import numpy_link  # noqa: E402
from tests.conftest import dataset, reference  # noqa: E402

CASES = ["sleepstudy_slopes_reml", "sleepstudy_slopes_ml", "sleepstudy_zerocorr_reml",
         "sleepstudy_intercept_ml", "penicillin_crossed_reml", "pastes_nested_ml",
         "dyestuff_reml", "dyestuff2_singular_reml", "dyestuff2_singular_ml"]


@pytest.fixture(scope="module")
def loaded() -> None:
    """The compiled evaluation and loop of the cases' structures (compiled where Numba's
    cache has none, as when a structure moves to Numba), in fresh tables; the SciPy
    runs evaluate by the same compiled function."""
    mp = pytest.MonkeyPatch()
    mp.setattr(descent_loop, "_LOOPS", {})
    mp.setattr(kernel_loop, "_LOOP", [None])  # the structures' loops, not the kernel's
    mp.setenv("HIERLM_BACKGROUND_LOADS", "1")  # a warm process (conftest turns it off)
    mp.setattr(numpy_link, "_PROCESS_SPENT", [1.0])
    for key in CASES:
        m = hierlm.Model(reference()[key]["formula"], dataset(reference()[key]["data"]))
        call = psi_call.PsiCall(m.objective, psi_call.DesignCovariance.of(m.design))
        fn = psi_call._function(m.objective, call.layout, call.log_scale)
        descent_loop.build(m.objective, fn)
        mp.setitem(psi_call._LOADED, m.objective.structure, fn)  # SciPy's runs use it too
    yield
    mp.undo()


def _fit(key: str) -> hierlm.FitResult:
    case = reference()[key]
    return hierlm.fit(case["formula"], dataset(case["data"]), method=case["method"].lower())


@pytest.mark.parametrize("key", CASES)
def test_compiled_runs_follow_scipys(loaded: None, key: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    structure = hierlm.Model(reference()[key]["formula"],
                             dataset(reference()[key]["data"])).objective.structure
    assert descent_loop._LOOPS.get(structure) is not None
    ours = _fit(key)
    monkeypatch.setattr(descent_loop, "_LOOPS", {})  # SciPy's driver, same evaluations
    theirs = _fit(key)
    assert ours.optimizer["message"] == theirs.optimizer["message"]
    assert ours.optimizer["phases"] == theirs.optimizer["phases"]
    a, b = np.array(ours.optimizer["trace"]), np.array(theirs.optimizer["trace"])
    assert a.shape == b.shape
    # the first descent point by point; the later phases start from the lowest point
    # so far, and where two of its last points have the same criterion to the last
    # digits (sleepstudy_slopes_reml: 1743.6282719584904 twice, theta 1e-8 apart)
    # rounding decides which one, and those phases' points follow it (7.7e-7 there)
    n_descent = dict(ours.optimizer["phases"])["descent"]
    np.testing.assert_allclose(a[:n_descent], b[:n_descent], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    assert abs(ours.objective - theirs.objective) <= 1e-10 * abs(theirs.objective)
    # (the answer is the lowest point evaluated: one of those two, 7.7e-7 apart)
    np.testing.assert_allclose(ours.theta, theirs.theta, rtol=1e-6, atol=1e-9)
    lme4 = reference()[key]
    crit = lme4.get("deviance_or_reml", lme4.get("reml_criterion"))
    assert ours.objective <= crit + 1e-6 * abs(crit)
