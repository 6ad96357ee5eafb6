"""The evaluation of the NumPy NUTS log density (``nuts_numpy_kernel``): against the
density as first written (``numpy_density_reference``, itself checked against the
compiled graph) and against Richardson-extrapolated central differences, at random
points of models with one to three coefficients a term and one or two terms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.estimate.nuts_numpy import NumpyDensity
from hierlm.estimate.nuts_numpy_kernel import DensityKernel
from hierlm.estimate.priors import resolve_priors
from tests.estimate.numpy_density_reference import reference_density

FORMULAS = [
    "Reaction ~ 1 + Days + (1 + Days | Subject)",
    "Reaction ~ Days + (1 | Subject) + (1 | g2)",
    "Reaction ~ 1 + (Days || Subject)",
    "Reaction ~ Days + (Days + x3 | Subject) + (1 | g2)",
    "Reaction ~ 0 + (Days | g2) + (1 | Subject)",
    "Reaction ~ Days + x3 + (1 + Days + x3 | Subject)",
]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    df = hierlm.load_sleepstudy()
    df["g2"] = (df["Days"] % 3).astype(str)
    df["x3"] = np.random.default_rng(0).normal(size=len(df))
    return df


def _density(formula: str, data: pd.DataFrame) -> NumpyDensity:
    m = hierlm.Model(formula, data)
    return NumpyDensity(m.objective, resolve_priors(m.design))


def _points(d: NumpyDensity, seed: int, k: int, spread: float = 0.7) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        x = spread * rng.normal(size=d.ndim)
        x[:d.p] = d.beta_mu + 5.0 * rng.normal(size=d.p)
        x[d.p] += np.log(30.0)
        out.append(x)
    return out


@pytest.mark.parametrize("formula", FORMULAS)
def test_kernel_equals_reference_density(data: pd.DataFrame, formula: str) -> None:
    d = _density(formula, data)
    kernel = DensityKernel(d)
    for spread in (0.7, 2.5):  # the bulk, and far out (tiny and large SDs, |z| > 1)
        for x in _points(d, 3, 8, spread):
            v_ref, g_ref = reference_density(d, x)
            v, g = kernel(x)
            assert v == pytest.approx(v_ref, rel=1e-12, abs=0)
            np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-12 * np.abs(g_ref).max())
            assert d(x)[0] == v  # NumpyDensity evaluates through its kernel


def _richardson(f: object, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Central differences at h and h/2, extrapolated (error O(h^4))."""
    def central(step: float) -> np.ndarray:
        return np.array([(f(x + step * e)[0] - f(x - step * e)[0]) / (2 * step)  # type: ignore[operator]
                         for e in np.eye(len(x))])
    return (4.0 * central(h / 2) - central(h)) / 3.0


@pytest.mark.parametrize("formula", [FORMULAS[0], FORMULAS[3], FORMULAS[5]])
def test_kernel_gradient_matches_finite_differences(data: pd.DataFrame, formula: str) -> None:
    d = _density(formula, data)
    kernel = DensityKernel(d)
    for x in _points(d, 4, 3):
        _, g = kernel(x)
        fd = _richardson(kernel, x)
        np.testing.assert_allclose(g, fd, rtol=1e-8, atol=1e-8 * np.abs(fd).max())


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("where", ["sigma", "sd", "z"])
def test_overflow_is_minus_infinity(data: pd.DataFrame, where: str) -> None:
    """An early sampler step far out (sigma, an SD or an LKJ coordinate overflowing) gives
    ``(-inf, 0)``, quietly, as the compiled density does."""
    d = _density(FORMULAS[0], data)
    x = np.zeros(d.ndim)
    x[:d.p] = d.beta_mu
    x[{"sigma": d.p, "sd": d.p + 1, "z": d.ndim - 1}[where]] = 800.0 if where != "z" else 1e200
    v, g = d(x)
    assert v == -np.inf and np.all(g == 0)


@pytest.mark.filterwarnings("ignore:NUTS:UserWarning")
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_numpy_density_samples_in_one_thread_unless_told(data: pd.DataFrame,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The NumPy density's calls hold the interpreter lock, so its chains run in one
    thread unless ``cores`` is given; the thread count does not change the draws."""
    nutpie = pytest.importorskip("nutpie")
    seen: list[object] = []
    real = nutpie.sample

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("cores"))
        return real(*args, **kwargs)

    monkeypatch.setattr(nutpie, "sample", spy)
    monkeypatch.setenv("HIERLM_NUTS_DENSITY", "numpy")
    m = hierlm.Model(FORMULAS[0], data)
    kw = {"method": "nuts", "sampler": "nutpie", "progressbar": False, "draws": 40,
          "tune": 40, "chains": 2, "random_seed": 3}
    one = m.fit(**kw)
    two = m.fit(cores=2, **kw)
    assert seen == [1, 2]
    for name in one.idata["posterior"].data_vars:
        np.testing.assert_array_equal(one.idata["posterior"][name].values,
                                      two.idata["posterior"][name].values)


def test_warm_up_launcher_reaches_the_entry_point(tmp_path: Path) -> None:
    """The background compile's launcher (lowest priority first, then the module's
    ``main``) passes the file on: a file it did not write is refused with exit code 2."""
    import subprocess
    import sys

    from hierlm.estimate import nuts_first

    path = tmp_path / "notes.pkl"
    path.write_bytes(b"not a pickle hierlm wrote")
    root = str(Path(hierlm.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", nuts_first._LAUNCH, str(path)],
                         env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"}, timeout=120,
                         check=False)
    assert out.returncode == 2
    assert path.read_bytes() == b"not a pickle hierlm wrote"
