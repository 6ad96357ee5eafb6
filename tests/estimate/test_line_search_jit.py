"""The compiled Moré-Thuente line search (:mod:`hierlm.estimate.line_search_jit`)
against SciPy's own Python port, ``scipy.optimize._dcsrch.DCSRCH``, step by step."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("numba")
from scipy.optimize._dcsrch import DCSRCH  # noqa: E402

from hierlm.estimate import line_search_jit as ls  # noqa: E402

FUNCTIONS = {
    "quadratic": (lambda a: (a - 3.0) ** 2, lambda a: 2.0 * (a - 3.0)),
    "quartic": (lambda a: (a - 0.2) ** 4 - a, lambda a: 4.0 * (a - 0.2) ** 3 - 1.0),
    "steep": (lambda a: np.exp(4.0 * a) - 8.0 * a, lambda a: 4.0 * np.exp(4.0 * a) - 8.0),
    "wiggly": (lambda a: -np.sin(3.0 * a) + 0.1 * a * a,
               lambda a: -3.0 * np.cos(3.0 * a) + 0.2 * a),
}


def _ours(phi, dphi, stp, ftol, gtol, xtol, stpmax, maxiter=50):  # type: ignore[no-untyped-def]
    state = np.zeros(ls.STATE_SIZE)
    f0, g0 = float(phi(0.0)), float(dphi(0.0))
    ls.dcsrch_start(stp, f0, g0, ftol, 0.0, stpmax, state)
    steps = []
    for _ in range(maxiter):
        steps.append(stp)
        stp, task = ls.dcsrch_iterate(stp, float(phi(stp)), float(dphi(stp)), gtol, xtol, 0.0,
                                      stpmax, state)
        if task != ls.FG:
            return steps, stp, task
    return steps, stp, None


def _theirs(phi, dphi, stp, ftol, gtol, xtol, stpmax, maxiter=50):  # type: ignore[no-untyped-def]
    steps: list[float] = []

    def seen(a: float) -> float:
        steps.append(a)
        return float(phi(a))

    search = DCSRCH(seen, lambda a: float(dphi(a)), ftol, gtol, xtol, 0.0, stpmax)
    stp_out, _, _, task = search(stp, phi0=float(phi(0.0)), derphi0=float(dphi(0.0)),
                                 maxiter=maxiter)
    return steps, stp_out, task


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@pytest.mark.parametrize("stp", [1e-3, 0.1, 1.0, 7.0])
@pytest.mark.parametrize("tols", [(1e-3, 0.9, 0.1), (1e-4, 0.1, 1e-6)])
def test_steps_equal_scipys(name: str, stp: float, tols: tuple[float, float, float]) -> None:
    phi, dphi = FUNCTIONS[name]
    ftol, gtol, xtol = tols
    ours, end, task = _ours(phi, dphi, stp, ftol, gtol, xtol, 1e10)
    theirs, end_s, task_s = _theirs(phi, dphi, stp, ftol, gtol, xtol, 1e10)
    assert ours == theirs  # every trial step, bit for bit
    if task == ls.CONVERGENCE:
        assert task_s[:4] == b"CONV" and end == end_s
    else:
        assert task_s[:4] != b"CONV"
