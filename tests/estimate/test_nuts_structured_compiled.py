"""Structured terms on the compiled NUTS path: one density per structure, nutpie.

The compiled density (keyed by structure, :mod:`hierlm.estimate.nuts_compiled`) is
checked against PyMC's own compilation (``compile_logp``, ``compile_dlogp``) of the
model of :mod:`hierlm.estimate.nuts_structured` (itself checked against a dense
marginal likelihood in ``test_nuts_structured``); a second model with other names,
level counts and fixed effects loads the first one's graphs; and a nutpie fit through
the compiled density agrees with PyMC's sampler on PyMC's own compilation of the
model, within Monte Carlo error.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pytest

import hierlm
import hierlm.estimate.nuts_compiled as nc
from hierlm.estimate.nuts_model import compiled
from hierlm.estimate.priors import resolve_priors
from hierlm.objective import graph_cache
from tests.estimate.test_nuts_compiled import _c_expand, _c_logp
from tests.estimate.test_nuts_structured import simulate

CASES = [("y ~ time + ar1(0 + time | g)", 4), ("y ~ time + cs(0 + time | g, hom=True)", 4),
         ("y ~ time + toep(0 + time | g)", 3)]


# PyMC's compile_logp (the reference) compiles C and warns that it finds no BLAS.
@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
@pytest.mark.parametrize(("formula", "T"), CASES)
def test_compiled_density_equals_pymc_model(formula: str, T: int) -> None:
    rng = np.random.default_rng(5)
    df = simulate(rng, 1.5, 0.5, 1.0, np.array([1.0, 0.3, 0.6, 0.9])[:T], n_sub=12, T=T)
    obj = hierlm.Model(formula, df).objective
    pr = resolve_priors(obj.design)
    graphs = nc.density_graphs(obj, pr)
    model = compiled(obj, pr).model
    assert tuple(v.name for v in model.value_vars) == graphs.value_names
    logp_ref, dlogp_ref = model.compile_logp(), model.compile_dlogp()
    ud = graphs.user_data(args := nc.call_args(graphs.logp, nc.data_values(obj, pr), 1))
    for _ in range(4):
        x = rng.normal(scale=0.7, size=graphs.ndim)
        x[:T] += [1.0, 0.3, 0.6, 0.9][:T]
        point = graphs.unravel(x)
        code, value, grad = _c_logp(graphs, ud, x)
        assert code == 0
        assert value == pytest.approx(float(logp_ref(point)), rel=1e-8)
        np.testing.assert_allclose(grad, dlogp_ref(point), rtol=1e-8, atol=1e-8)
        code, flat = _c_expand(graphs, ud, x)
        assert code == 0
        back = nc.to_unconstrained(graphs, nc.data_values(obj, pr), [
            dict(zip(graphs.names, np.split(flat, np.cumsum(
                [int(np.prod(s)) for s in graphs.shapes])[:-1]), strict=True))])[0]
        np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-10)
    del args


def test_second_structured_model_loads_the_first_ones_density(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(nc, "_CODE", {})
    built: list[int] = []
    pieces = nc.pymc_pieces
    monkeypatch.setattr(nc, "pymc_pieces", lambda *a: built.append(1) or pieces(*a))
    rng = np.random.default_rng(1)
    first = hierlm.Model("y ~ time + ar1(0 + time | g)",
                         simulate(rng, 1.0, 0.5, 1.0, np.zeros(4), n_sub=10)).objective
    g1 = nc.density_graphs(first, resolve_priors(first.design))
    df = simulate(rng, 1.0, 0.5, 1.0, np.zeros(4), n_sub=17).rename(
        columns={"g": "person", "time": "visit", "y": "score"})
    df["dose"] = rng.normal(size=len(df))
    second = hierlm.Model("score ~ visit + dose + ar1(0 + visit | person)", df).objective
    assert second.design.p == 5 and second.design.terms[0].n_levels == 17
    g2 = nc.density_graphs(second, resolve_priors(second.design))
    assert g2.code is g1.code and len(built) == 1            # built and compiled once
    assert len(list(tmp_path.glob("nuts-*.pkl"))) == 3
    assert g2.names == ("beta", "sigma", "sd_person", "rho_person")
    assert g2.shapes == ((5,), (), (), ())
    # the structure is in the key: cs of the same size is another density; an
    # unstructured model keeps its former key
    cs = hierlm.Model("y ~ time + cs(0 + time | g, hom=True)",
                      simulate(rng, 1.0, 0.5, 1.0, np.zeros(4), n_sub=10)).objective
    us = hierlm.Model("y ~ time + (0 + time | g)",
                      simulate(rng, 1.0, 0.5, 1.0, np.zeros(4), n_sub=10)).objective
    assert nc._structure_key(cs) != nc._structure_key(first)
    assert nc._structure_key(first) == (*nc._structure_key(us), ("ar1",))
    assert len(nc._structure_key(us)) == 3


@pytest.mark.skipif(importlib.util.find_spec("nutpie") is None, reason="nutpie not installed")
@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
def test_nutpie_fit_agrees_with_pymc_on_the_pymc_model() -> None:
    """Posterior means by nutpie on the compiled density against PyMC's NUTS on PyMC's
    own compilation of the model: within 4 combined Monte Carlo SEs."""
    import pymc as pm

    rng = np.random.default_rng(11)
    df = simulate(rng, 2.0, 0.6, 1.0, np.array([1.0, 0.5, 1.0, 1.5]), n_sub=30)
    formula = "y ~ time + ar1(0 + time | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit(formula, df, method="nuts", sampler="nutpie", draws=1000, tune=500,
                         chains=4, random_seed=3, progressbar=False)
    assert res.nuts.sampler == "nutpie"
    obj = hierlm.Model(formula, df).objective
    model = compiled(obj, resolve_priors(obj.design)).model
    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pm.sample(draws=1000, tune=500, chains=2, cores=1, random_seed=4,
                        progressbar=False, compute_convergence_checks=False)
    post_a, post_b = res.idata["posterior"], ref.posterior
    for name in ("rho_g", "sd_g", "sigma", "beta"):
        a, b = post_a[name], post_b[name]
        mean_a, mean_b = a.mean(("chain", "draw")).values, b.mean(("chain", "draw")).values
        se = np.sqrt(az.mcse(a.to_dataset(name="v"))["v"].values ** 2
                     + az.mcse(b.to_dataset(name="v"))["v"].values ** 2)
        assert np.all(np.abs(mean_a - mean_b) <= 4 * se), (name, mean_a, mean_b, se)
        assert np.all(np.abs(mean_a - mean_b) > 0)  # two different chains of draws
