"""The descent loop around the hand-written kernel (:mod:`hierlm.estimate.kernel_loop`).

References: the same fits by SciPy's L-BFGS-B over the dense NumPy evaluation (a
different implementation of the criterion and of the optimizer's loop), and lme4's
criteria of the reference fits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("numba")

import hierlm  # noqa: E402
from hierlm.estimate import background, descent_loop, kernel_loop, psi_call  # noqa: E402
from hierlm.objective import numpy_link  # noqa: E402
from tests.conftest import reference  # noqa: E402
from tests.estimate.test_descent_loop import CASES, _fit  # noqa: E402
from tests.estimate.test_fit_warm_up import run_cold  # noqa: E402


@pytest.fixture(scope="module")
def compiled() -> object:
    """The loop, compiled where Numba's cache has none (once per install)."""
    fn = kernel_loop.build()
    assert fn is not None
    return fn


def _numpy_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """SciPy's driver over the NumPy evaluation: nothing compiled, nothing loading."""
    monkeypatch.setattr(kernel_loop, "_LOOP", [None])
    monkeypatch.setattr(descent_loop, "_LOOPS", {})
    monkeypatch.setattr(psi_call, "_LOADED", {})
    monkeypatch.setenv("HIERLM_BACKGROUND_LOADS", "0")


def _warm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIERLM_BACKGROUND_LOADS", "1")  # (conftest turns it off)
    monkeypatch.setattr(numpy_link, "_PROCESS_SPENT", [1.0])


@pytest.mark.parametrize("key", CASES)
def test_kernel_loop_fits_equal_scipys_over_numpy(compiled: object, key: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as mp:
        _numpy_path(mp)
        theirs = _fit(key)
    calls = []

    def counted(*args: object) -> object:
        out = compiled(*args)  # type: ignore[operator]
        calls.append(int(out[2]))
        return out

    _warm(monkeypatch)
    monkeypatch.setattr(kernel_loop, "_LOOP", [counted])
    monkeypatch.setattr(descent_loop, "_LOOPS", {})
    monkeypatch.setattr(psi_call, "_LOADED", {})
    monkeypatch.setattr(background, "_STARTED", set())
    ours = _fit(key)
    # every descent's evaluations by the kernel's loop (a singular fit's checks at the
    # boundary evaluate a few points from Python besides)
    assert sum(calls) == ours.n_evals or (ours.is_singular and 0 < sum(calls) < ours.n_evals)
    assert background._STARTED == set()  # and no structure's load started
    assert ours.optimizer["message"] == theirs.optimizer["message"]
    assert ours.optimizer["phases"] == theirs.optimizer["phases"]
    a, b = np.array(ours.optimizer["trace"]), np.array(theirs.optimizer["trace"])
    # the same points to rounding: the evaluations differ in the last bits (the kernel
    # and LAPACK sum in other orders), which the line search carries along the path
    # (at most 1e-13 relative on these cases when written)
    n = min(len(a), len(b), dict(ours.optimizer["phases"])["descent"])
    np.testing.assert_allclose(a[:n], b[:n], rtol=1e-11, atol=1e-13)
    assert abs(ours.objective - theirs.objective) <= 1e-12 * abs(theirs.objective)
    np.testing.assert_allclose(ours.theta, theirs.theta, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(ours.fixef.to_numpy(), theirs.fixef.to_numpy(), rtol=1e-9)
    lme4 = reference()[key]
    crit = lme4.get("deviance_or_reml", lme4.get("reml_criterion"))
    assert ours.objective <= crit + 1e-6 * abs(crit)


def test_a_warm_process_loads_the_kernel_loop_not_the_structures(
        compiled: object, monkeypatch: pytest.MonkeyPatch) -> None:
    _warm(monkeypatch)
    monkeypatch.setattr(kernel_loop, "_LOOP", [])
    monkeypatch.setattr(descent_loop, "_LOOPS", {})
    monkeypatch.setattr(psi_call, "_LOADED", {})
    monkeypatch.setattr(background, "_STARTED", set())
    data = hierlm.load_sleepstudy()
    first = hierlm.fit("Reaction ~ Days + (Days | Subject)", data)  # starts the load
    background.wait()
    assert background._STARTED == {("kernel_loop", 1)} and psi_call._LOADED == {}
    assert kernel_loop.loop() is not None
    again = hierlm.fit("Reaction ~ Days + (Days | Subject)", data)
    assert abs(first.objective - again.objective) <= 1e-10 * abs(first.objective)
    np.testing.assert_allclose(again.theta, first.theta, rtol=1e-5)


def test_nothing_loads_where_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernel_loop, "_LOOP", [])
    monkeypatch.setattr(background, "_STARTED", set())
    monkeypatch.setenv("HIERLM_BACKGROUND_LOADS", "0")
    kernel_loop.load_in_background()
    assert background._STARTED == set() and kernel_loop._LOOP == []


def test_arguments_of_other_types_fall_back_to_scipys_driver(
        compiled: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loaded dispatcher compiles nothing: a call with other argument types raises
    TypeError, and the run goes to SciPy's driver before any step."""
    _warm(monkeypatch)
    monkeypatch.setattr(kernel_loop, "_LOOP", [compiled])
    m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    call = psi_call.PsiCall(m.objective, psi_call.DesignCovariance.of(m.design))
    run = descent_loop.CompiledDescent(m.objective, call, True, [], {"f": float("inf")})
    assert run._kernel_loop(True) is compiled
    run._args = (call.layout, call.log_scale, np.asarray(1.0, dtype=np.float32),
                 *m.objective._arguments)  # a float32 reml: not the compiled types

    class Search:
        scale = np.ones(3)
        best = {"f": float("inf")}
        n = 0

    assert run(Search(), np.ones(3), np.ones(3),
               {"maxiter": 10, "ftol": 1e-12, "gtol": 1e-6, "maxls": 20}) is None
    assert Search.n == 0 and run.trace == []


def test_serves_unstructured_layouts_only() -> None:
    assert kernel_loop.serves(np.array([[0, 1, 2, 0, 3, 0], [0, 1, 1, 3, 1, 3]]))
    assert not kernel_loop.serves(np.array([[0, 1, 2, 0, 3, 0], [1, 1, 2, 3, 1, 3]]))


def test_arguments_are_c_contiguous_writable_float64_or_int64() -> None:
    ro = np.arange(4.0)
    ro.setflags(write=False)
    out = kernel_loop.arguments((ro, np.arange(6, dtype=np.int32)[::2], np.asarray(1.0)))
    assert all(a.flags.c_contiguous and a.flags.writeable for a in out)
    assert [a.dtype for a in out] == [np.float64, np.int64, np.float64]
    np.testing.assert_array_equal(out[1], [0, 2, 4])


_COLD = """
import json, warnings
import hierlm
from hierlm.estimate import background, kernel_loop, psi_call
from hierlm.objective import numpy_link
warnings.simplefilter("ignore")
numpy_link.PROCESS_BUDGET_S = 0.0
d = hierlm.load_sleepstudy()
f = "Reaction ~ Days + (Days | Subject)"
hierlm.fit(f, d)                       # warm: the load starts, finds nothing cached
background.wait()
codes = [p.wait() for p in kernel_loop._WARMING if p is not None]  # it compiles
kernel_loop.loop()                     # its end seen: loaded again, from the cache
background.wait()
print(json.dumps([codes, kernel_loop.loop() is not None, sorted(map(str, psi_call._LOADED)),
                  hierlm.fit(f, d).optimizer["message"]]))
"""


@pytest.mark.slow
def test_cold_caches_compile_the_kernel_loop_in_a_process_then_load(tmp_path: Path) -> None:
    codes, loaded, structures, message = run_cold(_COLD, tmp_path)
    assert codes == [0] and loaded and structures == [] and message.startswith("CONVERGENCE")


def test_heavy_models_keep_their_structures_code() -> None:
    """Crossed factors of 200 and 170 levels: the rest's dense ``m x m`` steps alone are
    above the kernel's work limit (large crossed designs have a path of their own)."""
    rng = np.random.default_rng(3)
    n = 2000
    data = {"y": rng.normal(size=n), "g": rng.integers(0, 200, n).astype(str),
            "h": rng.integers(0, 170, n).astype(str)}
    m = hierlm.Model("y ~ 1 + (1 | g) + (1 | h)", pd.DataFrame(data))
    layout = np.array([[0, 1, 1, 0, 1, 0], [0, 1, 1, 1, 1, 1]])
    assert kernel_loop.kernel_work(m.objective.gram) > kernel_loop.MAX_WORK
    assert not kernel_loop.serves(layout, m.objective.gram)
    small = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    assert kernel_loop.serves(layout[:1], small.objective.gram)
