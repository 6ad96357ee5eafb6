"""The compiled evaluation loaded on a background thread once a process is warm
(:func:`hierlm.estimate.psi_call.load_in_background`,
:func:`hierlm.objective.numpy_link.process_warm`).

Reference: the same fits evaluated by the dense NumPy function alone (nothing loaded),
a different implementation of the same criterion.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.estimate import background, descent_loop, kernel_loop, psi_call
from hierlm.objective import numpy_link

FORMULAS = ["Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (1 | Subject)",
            "Reaction ~ Days + (Days || Subject)"]


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """No structure loaded, none loading, small models on NumPy until told otherwise."""
    for first in (True, False):  # compiled into tables of its own, then fresh ones
        monkeypatch.setattr(psi_call, "_LOADED", {})
        monkeypatch.setattr(psi_call, "_FUNCTIONS", {})  # loaded again, from Numba's cache
        monkeypatch.setattr(background, "_STARTED", set())
        monkeypatch.setattr(descent_loop, "_LOOPS", {})
        if first:
            _compiled_once()
    monkeypatch.setattr(numpy_link, "_TIERS", {})
    # the structures' own loads (tests/estimate/test_kernel_loop.py: the kernel's loop)
    monkeypatch.setattr(kernel_loop, "_LOOP", [None])
    monkeypatch.setattr(numpy_link, "BUDGET_S", float("inf"))
    monkeypatch.setattr(numpy_link, "PROCESS_BUDGET_S", float("inf"))
    monkeypatch.setenv("HIERLM_BACKGROUND_LOADS", "1")


def _compiled_once() -> None:
    """The structures' functions and loops compiled into Numba's cache (synchronously,
    as the move of a structure to Numba does; a fresh install has none)."""
    data = hierlm.load_sleepstudy()
    for f in FORMULAS:
        m = hierlm.Model(f, data)
        call = psi_call.PsiCall(m.objective, psi_call.DesignCovariance.of(m.design))
        fn = psi_call._function(m.objective, call.layout, call.log_scale)
        assert descent_loop.build(m.objective, fn) is not None


def _fit(formula: str, data: pd.DataFrame, method: str) -> hierlm.FitResult:
    return hierlm.fit(formula, data, method=method)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_fits_after_the_background_load_equal_the_numpy_fits(
        fresh: None, method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = hierlm.load_sleepstudy()
    cold = [_fit(f, data, method) for f in FORMULAS]
    assert psi_call._LOADED == {} and background._STARTED == set()  # not warm: nothing loads
    monkeypatch.setattr(numpy_link, "PROCESS_BUDGET_S", 0.0)
    for f in FORMULAS:  # each new structure starts its load and fits on NumPy meanwhile
        _fit(f, data, method)
    background.wait()
    # (1 | Subject) and (Days || Subject) share a structure (p1 = 1, the rest diagonal)
    assert len(psi_call._LOADED) == 2 and all(v is not None for v in psi_call._LOADED.values())
    calls = []
    for key, fn in list(descent_loop._LOOPS.items()):
        def counted(*args: object, _fn: object = fn) -> object:
            out = _fn(*args)  # type: ignore[operator]
            calls.append(out[2])  # evaluations of the run
            return out
        descent_loop._LOOPS[key] = counted
    warm = [_fit(f, data, method) for f in FORMULAS]
    # the fits' descents ran as the compiled loop, evaluating the loaded functions
    assert len(calls) >= 3 * 2 and sum(calls) > 3 * 5
    for a, b in zip(cold, warm, strict=True):
        assert abs(a.objective - b.objective) <= 1e-10 * abs(a.objective)
        np.testing.assert_allclose(b.theta, a.theta, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(b.fixef.to_numpy(), a.fixef.to_numpy(), rtol=1e-8)
        assert abs(a.sigma - b.sigma) <= 1e-8 * a.sigma


def test_one_load_per_structure(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    data = hierlm.load_sleepstudy()
    monkeypatch.setattr(numpy_link, "PROCESS_BUDGET_S", 0.0)
    m = hierlm.Model(FORMULAS[0], data)
    cov = psi_call.DesignCovariance.of(m.design)
    call = psi_call.PsiCall(m.objective, cov)
    for _ in range(3):
        psi_call.load_in_background(m.objective, call.layout, call.log_scale)
    assert background._STARTED == {("psi_call", m.objective.structure, 1)}
    background.wait()
    assert list(psi_call._LOADED) == [m.objective.structure] and background._RUNNING == {}


def test_the_environment_switches_it_off(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numpy_link, "PROCESS_BUDGET_S", 0.0)
    monkeypatch.setattr(numpy_link, "_PROCESS_SPENT", [1.0])
    assert numpy_link.process_warm()
    monkeypatch.setenv("HIERLM_BACKGROUND_LOADS", "0")
    assert not numpy_link.process_warm()
    _fit(FORMULAS[0], hierlm.load_sleepstudy(), "reml")
    assert background._STARTED == set() and psi_call._LOADED == {}
