"""Fits run concurrently in threads give exactly the serial results.

Four datasets share one model structure, so every thread evaluates the same compiled
objective (and the same post-hoc graphs).  The reference is the serial fit of each
dataset in this process; a thread that shares a linked function's storage with
another gets another dataset's numbers or an internal exception.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.estimate import descent_loop, kernel_loop, psi_call
from hierlm.objective import numpy_link, profiled

FORMULA = "Reaction ~ Days + (Days | Subject)"


def _datasets() -> list[pd.DataFrame]:
    base = hierlm.load_sleepstudy()
    out = []
    for seed in range(4):
        d = base.copy()
        d["Reaction"] = d["Reaction"] + np.random.default_rng(seed).normal(0.0, 30.0, len(d))
        out.append(d)
    return out


def _work(data: pd.DataFrame) -> dict:
    res = hierlm.fit(FORMULA, data)
    new = data.iloc[::7].copy()
    return {"objective": res.objective, "theta": res.theta, "beta": res.fixef.to_numpy(),
            "table": res.coef_table(), "summary": res.summary(),
            "predict": res.predict(new).to_numpy(), "converged": res.converged}


def _compare(got: dict, want: dict, tol: float = 1e-10) -> None:
    """``tol`` for the estimates: 1e-10 where both fits ran on one link; where one
    ran on the VM and the other on Numba, the two links round differently and the
    optimizer stops within its own tolerance of the flat optimum."""
    assert got["objective"] == pytest.approx(want["objective"], abs=1e-10)
    np.testing.assert_allclose(got["theta"], want["theta"], rtol=0, atol=tol)
    np.testing.assert_allclose(got["beta"], want["beta"], rtol=tol, atol=tol)
    np.testing.assert_allclose(got["predict"], want["predict"], rtol=tol, atol=tol)
    pd.testing.assert_frame_equal(got["table"], want["table"], rtol=max(tol, 1e-9))
    assert "Days" in got["summary"] and got["converged"] == want["converged"]


def _run_threads(datasets: list[pd.DataFrame], threads: int, rounds: int) -> list[dict]:
    jobs = [datasets[i % len(datasets)] for i in range(threads * rounds)]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(_work, jobs))


def _one_link(link: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fit of the test on one link: the VM graph, or the dense NumPy evaluation
    that small models start on under backend='auto' (hierlm.objective.numpy_link)."""
    monkeypatch.setattr(profiled, "_CACHE", {})
    monkeypatch.setattr(numpy_link, "_TIERS", {})
    monkeypatch.setattr(profiled, "VM_BUDGET_S", float("inf"))
    monkeypatch.setattr(numpy_link, "BUDGET_S", float("inf"))
    # nor the compiled evaluation loaded in the background once a process is warm
    monkeypatch.setattr(numpy_link, "PROCESS_BUDGET_S", float("inf"))
    monkeypatch.setattr(psi_call, "_LOADED", {})
    monkeypatch.setattr(descent_loop, "_LOOPS", {})
    monkeypatch.setattr(kernel_loop, "_LOOP", [None])
    if link == "vm":
        monkeypatch.setattr(numpy_link, "MAX_SIZE", 0)  # no model is small enough


@pytest.mark.parametrize("link", ["vm", "numpy"])
@pytest.mark.parametrize("threads", [4, 8])
def test_concurrent_fits_equal_serial_fits(threads: int, link: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _one_link(link, monkeypatch)
    datasets = _datasets()
    serial = [_work(d) for d in datasets]
    got = _run_threads(datasets, threads, rounds=2)  # an exception in a thread re-raises
    for i, g in enumerate(got):
        _compare(g, serial[i % len(datasets)])


@pytest.mark.parametrize("link", ["vm", "numpy"])
def test_concurrent_first_fits_and_the_move_to_numba(link: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads that find no linked function yet link it at once, and the tiered
    objective moves from the VM (or NumPy) to Numba while the other threads evaluate it."""
    datasets = _datasets()
    serial = [_work(d) for d in datasets]
    monkeypatch.setattr(profiled, "_CACHE", {})
    monkeypatch.setattr(profiled, "_GRAPHS", {})
    monkeypatch.setattr(numpy_link, "_TIERS", {})
    # budgets far below the 8 fits' evaluation time (a NumPy evaluation of these designs
    # takes about 50 us, 20 a fit: 0.05 s was not always reached), so the move happens
    # during the first fits, while the other threads evaluate
    monkeypatch.setattr(profiled, "VM_BUDGET_S", 0.002)
    monkeypatch.setattr(numpy_link, "BUDGET_S", 0.002)
    # the fits evaluate through the tiered objective, not a compiled evaluation loaded
    # earlier in the process
    monkeypatch.setattr(descent_loop, "_LOOPS", {})
    monkeypatch.setattr(kernel_loop, "_LOOP", [None])
    monkeypatch.setattr(psi_call, "_LOADED", {})
    if link == "vm":
        monkeypatch.setattr(numpy_link, "MAX_SIZE", 0)
    got = _run_threads(datasets, 4, rounds=2)
    for i, g in enumerate(got):
        _compare(g, serial[i % len(datasets)], tol=1e-6)
    design = hierlm.build_design(FORMULA, datasets[0])
    s = profiled.structure_of(design, profiled.compute_gram(design))
    tiered = profiled._CACHE[(s, "auto")] if link == "vm" else numpy_link._TIERS[s]
    assert tiered.link == "numba"
