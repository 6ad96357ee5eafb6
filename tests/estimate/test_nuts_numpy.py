"""The NumPy log density NUTS samples with nothing compiled (``nuts_numpy``), and the
choice between it and the compiled one (``nuts_first``).

The density is checked against the compiled ``logp`` graph of the same model
(evaluated on PyTensor's Python VM, which runs the same rewritten graph with no
compile) and against central finite differences, at random points; the draw map and
its inverse against the graph's ``expand`` and each other; a posterior sampled
through it against one sampled through the compiled C entry points.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.estimate import nuts_first, nuts_warm_up, warm_up_process
from hierlm.estimate.nuts_compiled import call_args, data_values, density_graphs
from hierlm.estimate.nuts_numpy import NumpyDensity, suits
from hierlm.estimate.priors import resolve_priors

pytest.importorskip("nutpie")

SLEEP = "Reaction ~ 1 + Days + (1 + Days | Subject)"
FORMULAS = [
    SLEEP,
    "Reaction ~ Days + (1 | Subject) + (1 | g2)",
    "Reaction ~ 1 + (Days || Subject)",
    "Reaction ~ Days + (Days + x3 | Subject) + (1 | g2)",
    "Reaction ~ 0 + (Days | g2) + (1 | Subject)",
]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    df = hierlm.load_sleepstudy()
    df["g2"] = (df["Days"] % 3).astype(str)
    df["x3"] = np.random.default_rng(0).normal(size=len(df))
    return df


def _points(d: NumpyDensity, pr: object, rng: np.random.Generator, k: int) -> list[np.ndarray]:
    """Random points around the bulk: beta near its prior mean, sigma near 30."""
    out = []
    for _ in range(k):
        x = 0.7 * rng.normal(size=d.ndim)
        x[:d.p] = d.beta_mu + 5.0 * rng.normal(size=d.p)
        x[d.p] += np.log(30.0)
        out.append(x)
    return out


@pytest.mark.filterwarnings("ignore:NUTS:UserWarning")
@pytest.mark.parametrize("formula", FORMULAS)
def test_density_equals_compiled_graph(data: pd.DataFrame, formula: str) -> None:
    m = hierlm.Model(formula, data)
    pr = resolve_priors(m.design)
    graphs = density_graphs(m.objective, pr)
    d = NumpyDensity(m.objective, pr)
    assert (d.names, d.shapes, d.dims, d.value_names, d.value_shapes, d.ndim) == (
        graphs.names, graphs.shapes, graphs.dims, graphs.value_names, graphs.value_shapes,
        graphs.ndim)
    values = data_values(m.objective, pr)
    logp, expand = graphs.logp.vm_fn, graphs.expand.vm_fn
    args, eargs = call_args(graphs.logp, values, 1), call_args(graphs.expand, values, 1)
    for x in _points(d, pr, np.random.default_rng(1), 10):
        v_ref, g_ref = logp(x, *args)
        v, g = d(x)
        assert v == pytest.approx(float(v_ref), rel=1e-8, abs=0)
        np.testing.assert_allclose(g, g_ref, rtol=1e-8, atol=1e-8 * np.abs(g_ref).max())
        flat = np.concatenate([np.ravel(a) for a in d.constrained(x)])
        np.testing.assert_allclose(flat, expand(x, *eargs)[0], rtol=1e-12)
        np.testing.assert_allclose(d.forward(d.expand(x)), x, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("formula", [FORMULAS[0], FORMULAS[3]])
def test_gradient_matches_finite_differences(data: pd.DataFrame, formula: str) -> None:
    m = hierlm.Model(formula, data)
    pr = resolve_priors(m.design)
    d = NumpyDensity(m.objective, pr)
    for x in _points(d, pr, np.random.default_rng(2), 3):
        _, g = d(x)
        h = 1e-5
        fd = np.array([(d(x + h * e)[0] - d(x - h * e)[0]) / (2 * h) for e in np.eye(d.ndim)])
        np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5 * np.abs(fd).max())


@pytest.mark.filterwarnings("error")
def test_failed_factor_is_minus_infinity(data: pd.DataFrame) -> None:
    m = hierlm.Model(SLEEP, data)
    d = NumpyDensity(m.objective, resolve_priors(m.design))
    x = np.zeros(d.ndim)
    x[d.p + 1] = 800.0  # sd = exp(800) overflows
    v, g = d(x)
    assert v == -np.inf and np.all(g == 0)


def test_suits_only_small_unstructured_models(data: pd.DataFrame) -> None:
    assert suits(hierlm.Model(SLEEP, data).objective)
    assert not suits(hierlm.Model("Reaction ~ Days + cs(0 + g2 | Subject)", data).objective)
    big = pd.DataFrame({"y": np.arange(400.0), "g": np.arange(400) % 200})
    assert not suits(hierlm.Model("y ~ 1 + (1 | g)", big).objective)


def _fit(model: hierlm.Model, monkeypatch: pytest.MonkeyPatch, density: str,
         **kw: object) -> hierlm.FitResult:
    monkeypatch.setenv("HIERLM_NUTS_DENSITY", density)
    return model.fit(method="nuts", sampler="nutpie", progressbar=False, **kw)


@pytest.mark.filterwarnings("ignore:NUTS:UserWarning")
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_reproducible_and_same_layout_as_compiled(data: pd.DataFrame,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    m = hierlm.Model(SLEEP, data)
    kw = {"draws": 60, "tune": 60, "chains": 2, "random_seed": 5}
    a = _fit(m, monkeypatch, "numpy", **kw)
    b = _fit(m, monkeypatch, "numpy", **kw)
    c = _fit(m, monkeypatch, "compiled", **kw)
    assert [r.idata["sample_stats"].attrs["log_density"] for r in (a, b, c)] == [
        "numpy", "numpy", "compiled"]
    for name in a.idata["posterior"].data_vars:
        np.testing.assert_array_equal(a.idata["posterior"][name].values,
                                      b.idata["posterior"][name].values)
    assert sorted(a.idata.children) == sorted(c.idata.children)
    for group in a.idata.children:
        da, dc = a.idata[group].to_dataset(), c.idata[group].to_dataset()
        assert sorted(da.data_vars) == sorted(dc.data_vars), group
        for name in da.data_vars:
            assert da[name].dims == dc[name].dims, (group, name)
            assert da[name].shape == dc[name].shape, (group, name)
            assert da[name].dtype == dc[name].dtype, (group, name)
        for dim in da.coords:
            np.testing.assert_array_equal(da[dim].values, dc[dim].values)


def test_choice_follows_the_caches(data: pd.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    m = hierlm.Model("Reaction ~ 1 + Days + (1 | Subject) + (1 | g2)", data)
    pr = resolve_priors(m.design)
    monkeypatch.setattr(nuts_first, "_CHOSEN", {})
    monkeypatch.setenv("HIERLM_GRAPH_CACHE", "0")  # nothing on disk
    monkeypatch.setattr("hierlm.estimate.nuts_compiled._CODE", {})
    assert nuts_first.choose(m.objective, pr) == "numpy"
    monkeypatch.setenv("HIERLM_NUTS_DENSITY", "compiled")
    assert nuts_first.choose(m.objective, pr) == "compiled"
    monkeypatch.setenv("HIERLM_NUTS_DENSITY", "auto")
    assert nuts_first.choose(m.objective, pr) == "numpy"  # kept in the process


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Estimated shape parameter of Pareto")
def test_posterior_agrees_with_compiled_path(data: pd.DataFrame,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Posterior means of every sampled quantity within Monte Carlo error (4.5 combined
    MCSEs, from each run's bulk ESS) of the compiled path's, on sleepstudy."""
    m = hierlm.Model(SLEEP, data)
    kw = {"draws": 1000, "tune": 1000, "chains": 4}
    a = _fit(m, monkeypatch, "numpy", random_seed=11, **kw)
    c = _fit(m, monkeypatch, "compiled", random_seed=12, **kw)
    ta, tc = a.nuts.diagnostics, c.nuts.diagnostics
    assert list(ta.index) == list(tc.index)
    mcse = np.hypot(ta["sd"] / np.sqrt(ta["ess_bulk"]), tc["sd"] / np.sqrt(tc["ess_bulk"]))
    z = (ta["mean"] - tc["mean"]).abs() / mcse
    assert (z < 4.5).all(), z
    np.testing.assert_allclose(ta["sd"], tc["sd"], rtol=0.15)


def test_warm_up_lock(tmp_path: Path) -> None:
    lock = nuts_warm_up.lock_path(tmp_path, ("structure",))
    assert warm_up_process.take(lock)
    assert not warm_up_process.take(lock)  # held by a live warm-up
    old = time.time() - 2 * warm_up_process.STALE_S
    os.utime(lock, (old, old))
    assert warm_up_process.take(lock)  # left by a process that died


_COLD = """
import json, sys, hierlm
from hierlm.estimate import nuts_first, nuts_warm_up
m = hierlm.Model("Reaction ~ 1 + Days + (1 + Days | Subject)", hierlm.load_sleepstudy())
if sys.argv[1] == "fit":
    res = m.fit(method="nuts", draws=50, tune=50, chains=2, random_seed=1, progressbar=False)
    codes = [p.wait() for p in nuts_first.STARTED]
    print(json.dumps([res.idata["sample_stats"].attrs["log_density"], codes]))
else:
    from hierlm.estimate.priors import resolve_priors
    print(json.dumps(nuts_first.choose(m.objective, resolve_priors(m.design))))
"""


@pytest.mark.slow
def test_empty_caches_sample_numpy_then_compile_in_background(tmp_path: Path) -> None:
    """With empty caches the first fit samples the NumPy density and starts the
    background compile; once it has finished, a new process takes the compiled one."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTENSOR_FLAGS=f"base_compiledir={tmp_path / 'pytensor'}",
               PYTHONPATH=str(Path(hierlm.__file__).resolve().parents[1]))
    env.pop("HIERLM_NUTS_DENSITY", None)
    env["HIERLM_NUTS_WARM_UP"] = "1"  # (the tests' conftest turns it off)

    def run(arg: str) -> object:
        out = subprocess.run([sys.executable, "-c", _COLD, arg], env=env, capture_output=True,
                             text=True, timeout=1200, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    assert run("fit") == ["numpy", [0]]
    assert run("choose") == "compiled"


@pytest.mark.parametrize("name", ["notes.pkl", "hierlm-nuts-warm-up-x.txt"])
def test_warm_up_entry_point_leaves_other_files_alone(tmp_path: Path, name: str) -> None:
    """``python -m hierlm.estimate.nuts_warm_up FILE`` only loads and deletes the
    temporary files :func:`hierlm.estimate.nuts_first.warm_up` writes: any other file is
    neither unpickled nor deleted."""
    from hierlm.estimate import nuts_warm_up

    path = tmp_path / name
    path.write_bytes(b"not a pickle hierlm wrote")
    assert nuts_warm_up.main([str(path)]) == 2
    assert path.read_bytes() == b"not a pickle hierlm wrote"


def test_warm_up_entry_point_recognises_its_own_file() -> None:
    import os
    import tempfile

    from hierlm.estimate import nuts_warm_up

    fd, path = tempfile.mkstemp(prefix=nuts_warm_up.PREFIX, suffix=nuts_warm_up.SUFFIX)
    os.close(fd)
    try:
        assert nuts_warm_up.handed_over(Path(path))
    finally:
        os.unlink(path)
