"""The structures' Numba kernels (:mod:`hierlm.covariance.jit`) and when they run.

References: the structures' NumPy/Python closed forms (equal to 1e-14), the general
path (LAPACK's factor, Murray's formula, the complex step; shares no code with
either), the 160-digit reference of ``test_closed_forms`` and central finite
differences.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hierlm.covariance import compiled
from hierlm.covariance.design import CLASSES
from tests.covariance.test_closed_forms import STRUCTURED, _make, _points, reference_hp


def _kernel_of(c):
    fn = compiled.load(c.kernel_kind)
    assert fn is not None, f"the {c.kernel_kind} kernel did not load"
    return fn


def _run_kernel(c, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    theta, J = np.empty(c.n_theta), np.empty((c.n_theta, c.n_psi))
    _kernel_of(c)(np.ascontiguousarray(psi, dtype=float), c._log_scale, c.homogeneous,
                  theta, J)
    return theta, J


def test_every_structure_has_a_kernel() -> None:
    assert sorted(n for n in CLASSES if CLASSES[n].kernel_kind) == STRUCTURED
    assert {CLASSES[n].kernel_kind for n in STRUCTURED} == set(compiled.KINDS)


@pytest.mark.parametrize("name", STRUCTURED)
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 7])
def test_kernel_equals_the_python_form(name: str, p: int) -> None:
    c = _make(name, p)
    for psi in _points(c, 6):
        theta, J = _run_kernel(c, psi)
        theta_py, J_py = c.theta_jacobian_python(psi)
        np.testing.assert_allclose(theta, theta_py, rtol=1e-14, atol=1e-300)
        scale = max(1.0, float(np.abs(J_py).max()))
        np.testing.assert_allclose(J, J_py, rtol=1e-14, atol=1e-14 * scale)


@pytest.mark.parametrize("name", STRUCTURED)
@pytest.mark.parametrize("p", [2, 4, 6])
def test_kernel_equals_general_path(name: str, p: int) -> None:
    c = _make(name, p)
    for psi in _points(c, 4)[:4]:  # away from the limits, where LAPACK is exact enough
        theta, J = _run_kernel(c, psi)
        theta0, J0 = c.theta_jacobian_general(psi)
        np.testing.assert_allclose(theta, theta0, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(J, J0, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("name", STRUCTURED)
@pytest.mark.parametrize("p", [3, 6])
def test_kernel_equals_hp_digit_reference(name: str, p: int) -> None:
    c = _make(name, p)
    n_sd = 1 if c.homogeneous else c.p
    for psi in _points(c, 2):
        theta, J = _run_kernel(c, psi)
        theta_hp, dl_hp = reference_hp(c, psi)
        np.testing.assert_allclose(theta, theta_hp, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(J[:, n_sd:], dl_hp, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", STRUCTURED)
def test_kernel_jacobian_matches_finite_differences(name: str) -> None:
    c = _make(name, 5)
    for psi in _points(c, 3)[:3]:
        _, J = _run_kernel(c, psi)
        h = 1e-6
        fd = np.column_stack([(_run_kernel(c, psi + h * e)[0] - _run_kernel(c, psi - h * e)[0])
                              / (2 * h) for e in np.eye(c.n_psi)])
        np.testing.assert_allclose(J, fd, atol=2e-8 * max(1.0, np.abs(fd).max()))


def test_theta_jacobian_runs_the_kernel_once_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "_KERNELS", {})
    monkeypatch.setattr(compiled, "_spent", [0.0])
    monkeypatch.setattr(compiled, "BUDGET_S", np.inf)
    monkeypatch.setattr(compiled, "BUDGET_LOADED_S", np.inf)
    c = _make("toep", 5)
    psi = _points(c, 1)[0]
    theta_py, J_py = c.theta_jacobian(psi)        # the Python form: no kernel yet
    assert c._kernel is None and compiled._spent[0] > 0
    monkeypatch.setattr(compiled, "BUDGET_LOADED_S", 0.0)
    monkeypatch.setattr(compiled, "BUDGET_S", 0.0)
    c.theta_jacobian(psi + 0.1)                   # the budget is spent: loaded
    assert "toep" in compiled._KERNELS
    theta, J = c.theta_jacobian(psi)
    assert c._kernel is compiled._KERNELS["toep"]
    np.testing.assert_allclose(theta, theta_py, rtol=1e-14)
    np.testing.assert_allclose(J, J_py, rtol=1e-14, atol=1e-14)
    assert not theta.flags.writeable and not J.flags.writeable


def test_kernel_takes_read_only_and_strided_psi_without_a_new_compile() -> None:
    fn = compiled.load("cs")
    c = _make("cs", 4)
    assert fn is not None
    wide = np.zeros(2 * c.n_psi)
    wide[::2] = [0.1, -0.2, 0.3, 0.4, -1.0]
    ro = wide[::2].copy()
    ro.setflags(write=False)
    theta, J = c.theta_jacobian(wide[::2])
    assert c._kernel is fn
    c._last = None
    theta2, J2 = c.theta_jacobian(ro)
    np.testing.assert_array_equal(theta, theta2)
    np.testing.assert_array_equal(J, J2)
    np.testing.assert_allclose(theta, c.theta_jacobian_python(ro)[0], rtol=1e-14)
    assert len(fn.signatures) == 1
    with pytest.raises(ValueError, match="psi must have length 5"):
        c.theta_jacobian(np.zeros(3))


def test_a_kernel_that_cannot_load_leaves_the_python_form(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import hierlm.covariance.jit as jit

    monkeypatch.setattr(compiled, "_KERNELS", {})
    monkeypatch.setattr(compiled, "_FAILED", set())

    def broken(*args: object) -> None:
        raise RuntimeError("no cache locator")

    monkeypatch.setattr(jit, "ar1_kernel", broken)
    assert compiled.load("ar1") is None
    monkeypatch.setattr(compiled, "BUDGET_S", 0.0)
    monkeypatch.setattr(compiled, "BUDGET_LOADED_S", 0.0)
    c = _make("ar1", 3)
    psi = np.array([0.2, 0.5])
    theta, J = c.theta_jacobian(psi)
    assert c._kernel is None
    np.testing.assert_allclose(J, c.theta_jacobian_general(psi)[1], rtol=1e-9, atol=1e-12)


def test_a_small_structured_fit_imports_no_numba() -> None:
    """Below the budget the Python forms run: neither ``import hierlm`` nor one small
    structured fit loads Numba."""
    code = ("import sys, hierlm\n"
            "assert 'numba' not in sys.modules\n"
            "d = hierlm.load_sleepstudy().query('Days < 4').astype({'Days': str})\n"
            "hierlm.fit('Reaction ~ Days + toep(0 + Days | Subject)', d)\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "False"


_LOAD = """
import numpy as np
from hierlm.covariance import compiled
from hierlm.covariance.ar1 import AR1
fn = compiled.load("ar1")
c = AR1(("a", "b", "c"), "g", np.array([0.5, 1.0, 2.0]))
psi = np.array([0.3, 0.7])
theta, J = c.theta_jacobian(psi)
assert (fn is None) == (c._kernel is None)
np.testing.assert_allclose(J, c.theta_jacobian_python(psi)[1], rtol=1e-14, atol=1e-15)
print("LOADED", fn is not None)
"""


def _load_in_fresh_process(cache: Path) -> str:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    out = subprocess.run([sys.executable, "-c", _LOAD], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()[-1]


def test_a_damaged_kernel_cache_costs_only_time(tmp_path: Path) -> None:
    assert _load_in_fresh_process(tmp_path) == "True"     # compiled, written to the cache
    files = [p for p in tmp_path.rglob("*") if p.suffix in (".nbi", ".nbc")]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[:10])
    # the damaged files emptied, the kernel compiled again and the cache rewritten
    assert _load_in_fresh_process(tmp_path) == "True"
    assert all(p.stat().st_size > 10 for p in tmp_path.rglob("*.nbi"))
    assert _load_in_fresh_process(tmp_path) == "True"
