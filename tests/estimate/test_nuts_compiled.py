"""The log density NUTS samples, through the C entry points nutpie calls.

Checked against PyMC's own compilation of the same model (``compile_logp``) and
against central finite differences, at points away from the start; the constrained
draws against the transforms' closed forms; the starting-point map as the inverse of
the draw map; and the graphs loaded from disk against freshly built ones.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import hierlm
import hierlm.estimate.nuts_compiled as nc
from hierlm.estimate import nuts_cfunc
from hierlm.estimate.nuts_model import compiled
from hierlm.estimate.priors import resolve_priors
from hierlm.objective import graph_cache

SLEEP = "Reaction ~ 1 + Days + (1 + Days | Subject)"
_P = ctypes.POINTER(ctypes.c_double)


@pytest.fixture(scope="module")
def sleep_model() -> hierlm.Model:
    return hierlm.Model(SLEEP, hierlm.load_sleepstudy())


def _c_logp(graphs: nc.DensityGraphs, ud: np.ndarray, x: np.ndarray) -> tuple[int, float,
                                                                              np.ndarray]:
    logp_c, _ = graphs.c_functions
    x = np.ascontiguousarray(x, dtype=float)
    grad, value = np.zeros(x.size), np.zeros(())
    code = logp_c.ctypes(x.size, x.ctypes.data_as(_P), grad.ctypes.data_as(_P),
                         value.ctypes.data_as(_P), ctypes.c_void_p(ud.ctypes.data))
    return int(code), float(value), grad


def _c_expand(graphs: nc.DensityGraphs, ud: np.ndarray, x: np.ndarray) -> tuple[int,
                                                                               np.ndarray]:
    _, expand_c = graphs.c_functions
    m = graphs.n_expanded
    out = np.zeros(m)
    code = expand_c.ctypes(x.size, m, x.ctypes.data_as(_P), out.ctypes.data_as(_P),
                           ctypes.c_void_p(ud.ctypes.data))
    return int(code), out


# PyMC's compile_logp (the reference here) compiles C, and PyTensor warns that it finds
# no BLAS to link; the reference needs none, and hierlm's own path compiles no C.
@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
def test_c_logp_matches_pymc_and_finite_differences(sleep_model: hierlm.Model) -> None:
    obj = sleep_model.objective
    pr = resolve_priors(obj.design, None)
    graphs = nc.density_graphs(obj, pr)
    assert graphs.names == ("beta", "sigma", "sd_Subject", "chol_corr_Subject")
    assert graphs.shapes == ((2,), (), (2,), (2, 2)) and graphs.ndim == 6
    values = nc.data_values(obj, pr)
    args = nc.call_args(graphs.logp, values, 1)
    ud = graphs.user_data(args)

    model = compiled(obj, pr).model
    value_vars = model.value_vars
    assert tuple(v.name for v in value_vars) == graphs.value_names
    start = model.initial_point()
    shapes = [np.shape(start[v.name]) for v in value_vars]
    sizes = [int(np.prod(s)) for s in shapes]
    assert graphs.value_shapes == tuple(shapes)

    def unravel(x: np.ndarray) -> dict[str, np.ndarray]:
        parts = np.split(x, np.cumsum(sizes)[:-1])
        return {v.name: p.reshape(s) for v, p, s in zip(value_vars, parts, shapes, strict=True)}

    logp_pymc = model.compile_logp()
    rng = np.random.default_rng(7)
    # beta, log sigma, log SDs, the correlation's unconstrained value
    center = np.array([251.0, 10.5, np.log(25.0), np.log(25.0), np.log(6.0), 0.1])
    for _ in range(3):
        x = center + rng.normal(0, [5.0, 1.0, 0.2, 0.3, 0.3, 0.3])
        code, value, grad = _c_logp(graphs, ud, x)
        assert code == 0
        assert value == pytest.approx(float(logp_pymc(unravel(x))), rel=1e-10)
        h = 1e-5 * np.maximum(1.0, np.abs(x))
        fd = np.array([(logp_pymc(unravel(x + h[i] * e)) - logp_pymc(unravel(x - h[i] * e)))
                       / (2 * h[i]) for i, e in enumerate(np.eye(x.size))])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)

        code, flat = _c_expand(graphs, ud, x)
        assert code == 0
        beta, sigma, sd, L = flat[:2], flat[2], flat[3:5], flat[5:].reshape(2, 2)
        np.testing.assert_allclose(beta, x[:2])
        assert sigma == pytest.approx(np.exp(x[2]))
        np.testing.assert_allclose(sd, np.exp(x[3:5]))
        np.testing.assert_allclose(np.diag(L @ L.T), 1.0)
        assert L[0, 1] == 0.0 and L[0, 0] == 1.0
        back = nc.to_unconstrained(graphs, values, [
            {"beta": beta, "sigma": sigma, "sd_Subject": sd, "chol_corr_Subject": L}])[0]
        np.testing.assert_allclose(back, x, rtol=1e-10, atol=1e-12)
        for k, v in graphs.unravel(x).items():
            np.testing.assert_array_equal(v, unravel(x)[k])


def test_non_finite_density_is_reported(sleep_model: hierlm.Model) -> None:
    obj = sleep_model.objective
    pr = resolve_priors(obj.design, None)
    graphs = nc.density_graphs(obj, pr)
    args = nc.call_args(graphs.logp, nc.data_values(obj, pr), 1)
    ud = graphs.user_data(args)
    x = np.array([251.0, 10.5, 800.0, np.log(25.0), np.log(6.0), 0.1])  # sigma = e^800
    code, _, _ = _c_logp(graphs, ud, x)
    assert code in (3, 4)
    assert _c_logp(graphs, ud, np.zeros(5))[0] == -1  # wrong dimension


def test_graphs_from_disk_equal_fresh_ones(sleep_model: hierlm.Model, tmp_path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    obj = sleep_model.objective
    pr = resolve_priors(obj.design, None)
    x = np.array([250.0, 10.0, np.log(26.0), np.log(24.0), np.log(5.5), -0.2])
    values = nc.data_values(obj, pr)
    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path)
    results = []
    for expect_loaded in (False, True):
        monkeypatch.setattr(nc, "_CODE", {})
        graphs = nc.density_graphs(obj, pr)
        assert graphs.logp.loaded is expect_loaded
        ud = graphs.user_data(args := nc.call_args(graphs.logp, values, 1))
        results.append((_c_logp(graphs, ud, x), graphs.logp.fn(x, *args)))
        del args
    (c0, f0), (c1, f1) = results
    assert c0[0] == c1[0] == 0
    assert c1[1] == c0[1] == pytest.approx(float(f0[0]), rel=1e-12)
    np.testing.assert_allclose(c1[2], c0[2], rtol=1e-12)
    np.testing.assert_allclose(f1[1], f0[1], rtol=1e-12)
    assert len(list(tmp_path.glob("nuts-*.pkl"))) == 3


@pytest.mark.skipif(importlib.util.find_spec("nutpie") is None, reason="nutpie not installed")
def test_nutpie_model_carries_names_and_coords(sleep_model: hierlm.Model) -> None:
    obj = sleep_model.objective
    pr = resolve_priors(obj.design, None)
    graphs = nc.density_graphs(obj, pr)
    from hierlm.estimate.nuts_posterior import coords_of
    m = nc.nutpie_model(graphs, nc.data_values(obj, pr), coords_of(obj.design),
                        lambda s: np.zeros(graphs.ndim))
    assert m.n_dim == 6
    assert m.shapes == {"beta": (2,), "sigma": (), "sd_Subject": (2,),
                        "chol_corr_Subject": (2, 2)}
    assert m.coords == {"coef": ["(Intercept)", "Days"], "Subject_term": ["(Intercept)", "Days"]}


def test_wrapper_compiles_when_not_in_numba_cache(sleep_model: hierlm.Model, tmp_path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """With an empty Numba cache the wrapper first fails to load with the stand-in
    function, then compiles against the graph's own function."""
    import pytensor.link.numba.cache as numba_cache

    monkeypatch.setattr(numba_cache, "NUMBA_CACHE_PATH", tmp_path)
    obj = sleep_model.objective
    pr = resolve_priors(obj.design, None)
    graphs = nc.density_graphs(obj, pr)
    _, sig_expand = nuts_cfunc._signatures()
    m = graphs.n_expanded
    expand_c = nuts_cfunc._cfunc(graphs.logp, graphs.expand, nuts_cfunc._EXPAND_SRC,
                                 "hierlm_expand", sig_expand)
    assert any(tmp_path.iterdir())  # compiled here, and cached
    args = nc.call_args(graphs.logp, nc.data_values(obj, pr), 1)
    ud = graphs.user_data(args)
    x = np.array([250.0, 10.0, np.log(26.0), np.log(24.0), np.log(5.5), -0.2])
    out = np.zeros(m)
    code = expand_c.ctypes(x.size, m, x.ctypes.data_as(_P), out.ctypes.data_as(_P),
                           ctypes.c_void_p(ud.ctypes.data))
    assert code == 0
    np.testing.assert_allclose(out[:5], [250.0, 10.0, 26.0, 24.0, 5.5])


def test_pymc_logp_function_matches_c_logp_and_pickles(sleep_model: hierlm.Model) -> None:
    """PyMC's sampler evaluates the same cached graph (checked above against PyMC's own
    compilation) through ``LogpDlogp``, also after a pickle round trip (as PyMC's worker
    processes get it) and after its data are swapped for another response's."""
    import pickle

    obj = sleep_model.objective
    pr = resolve_priors(obj.design, None)
    graphs = nc.density_graphs(obj, pr)
    values = nc.data_values(obj, pr)
    f = nc.LogpDlogp(graphs.logp, nc.call_args(graphs.logp, values, 1))
    g = pickle.loads(pickle.dumps(f))
    x = np.array([251.0, 10.5, np.log(25.0), np.log(25.0), np.log(6.0), 0.1])
    code, value, grad = _c_logp(graphs, graphs.user_data(nc.call_args(graphs.logp, values, 1)), x)
    assert code == 0
    for fn in (f, g):
        v, d = fn(x)
        assert float(v) == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(d, grad, rtol=1e-12)
    other = sleep_model.with_response(sleep_model.design.y * 1.5 + 3.0).objective
    other_values = nc.data_values(other, pr)
    other_args = nc.call_args(graphs.logp, other_values, 1)
    g.args = other_args
    code, value2, _ = _c_logp(graphs, graphs.user_data(other_args), x)
    assert code == 0 and value2 != pytest.approx(value)
    assert float(g(x)[0]) == pytest.approx(value2, rel=1e-12)


def test_building_the_graphs_compiles_no_c_and_never_looks_for_blas(tmp_path: Path) -> None:
    """With empty caches, building the NUTS graphs evaluates PyMC's helper functions
    with Python thunks: no C module is compiled, so PyTensor never looks up BLAS link
    flags (the lookup that warns "could not link to a BLAS installation")."""
    code = (
        "import pytensor, hierlm\n"
        "from hierlm.estimate.nuts_density_graph import pymc_pieces\n"
        "from hierlm.estimate.priors import resolve_priors\n"
        "m = hierlm.Model('Reaction ~ 1 + Days + (1 + Days | Subject)', "
        "hierlm.load_sleepstudy())\n"
        "pymc_pieces(m.objective, resolve_priors(m.design))\n"
        "p = pytensor.config._config_var_dict['blas__ldflags']\n"
        "print('BLAS_LOOKED_UP', hasattr(p, 'val'))\n")
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'pt'}",
           "NUMBA_CACHE_DIR": str(tmp_path / "nb")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=600, check=True)
    assert "BLAS_LOOKED_UP False" in out.stdout, out.stdout + out.stderr
    assert "BLAS" not in out.stderr, out.stderr
    compiled_c = [p for p in (tmp_path / "pt").rglob("*.so") if "numba" not in str(p)]
    assert not compiled_c, compiled_c
