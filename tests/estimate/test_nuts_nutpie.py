"""The nutpie route: which backend a design gets, and the joined log density it samples.

The joined function is checked against PyMC's own compilation of the same model and
against central finite differences, at points away from the start.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from typing import Any

import numpy as np
import pytest

import hierlm
from hierlm.estimate.nuts_model import compiled
from hierlm.estimate.nuts_nutpie import NUMBA_MIN_ORDER, _python_functions, nutpie_backend
from hierlm.estimate.priors import resolve_priors

SLEEP = "Reaction ~ 1 + Days + (1 + Days | Subject)"


@pytest.fixture(scope="module")
def sleep_model() -> hierlm.Model:
    return hierlm.Model(SLEEP, hierlm.load_sleepstudy())


def test_backend_by_design_size(sleep_model: hierlm.Model) -> None:
    gram = sleep_model.objective.gram
    assert nutpie_backend(gram) == "python"
    m = NUMBA_MIN_ORDER
    assert nutpie_backend(dataclasses.replace(gram, A_RR=np.eye(m))) == "numba"
    assert nutpie_backend(dataclasses.replace(gram, A_RR=np.eye(m - 1))) == "python"


def test_joined_logp_matches_pymc(sleep_model: hierlm.Model) -> None:
    obj = sleep_model.objective
    c = compiled(obj, resolve_priors(obj.design, None))
    fns = _python_functions(c.model)
    value_vars = c.model.value_vars
    start = c.model.initial_point()
    shapes = [np.shape(start[v.name]) for v in value_vars]
    sizes = [int(np.prod(s)) for s in shapes]
    assert fns.ndim == sum(sizes) == 6

    def unravel(x: np.ndarray) -> dict[str, np.ndarray]:
        parts = np.split(x, np.cumsum(sizes)[:-1])
        return {v.name: p.reshape(s) for v, p, s in zip(value_vars, parts, shapes, strict=True)}

    logp_pymc = c.model.compile_logp()
    rng = np.random.default_rng(7)
    # beta, log sigma, log SDs, the correlation's unconstrained value
    center = np.array([251.0, 10.5, np.log(25.0), np.log(25.0), np.log(6.0), 0.1])
    for _ in range(3):
        x = center + rng.normal(0, [5.0, 1.0, 0.2, 0.3, 0.3, 0.3])
        value, grad = fns.logp_grad(x)
        assert float(value) == pytest.approx(float(logp_pymc(unravel(x))), rel=1e-10)
        h = 1e-5 * np.maximum(1.0, np.abs(x))
        fd = np.array([(logp_pymc(unravel(x + h[i] * e)) - logp_pymc(unravel(x - h[i] * e)))
                       / (2 * h[i]) for i, e in enumerate(np.eye(x.size))])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)
        out = dict(zip(fns.names, fns.expand(x), strict=True))
        np.testing.assert_allclose(out["beta"], x[:2])
        assert float(out["sigma"]) == pytest.approx(np.exp(x[2]))
        np.testing.assert_allclose(out["sd_Subject"], np.exp(x[3:5]))
        L = np.asarray(out["chol_corr_Subject"])
        np.testing.assert_allclose(np.diag(L @ L.T), 1.0)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("nutpie") is None, reason="nutpie not installed")
def test_backends_give_the_same_draws(sleep_model: hierlm.Model,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """nutpie's Numba compilation of the model (about a minute) against the PyTensor
    function called through Python: the same seed gives the same chains."""
    import hierlm.estimate.nuts as nuts

    kw: dict[str, Any] = {"draws": 100, "tune": 100, "chains": 2, "progressbar": False,
          "sampler": "nutpie",
          "random_seed": 11}
    fits = {}
    for backend in ("python", "numba"):
        monkeypatch.setattr(nuts, "nutpie_backend", lambda gram, b=backend: b)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits[backend] = sleep_model.fit("nuts", **kw)
        assert fits[backend].extra["nutpie_backend"] == backend
    a, b = (fits[k].idata["posterior"] for k in ("python", "numba"))
    for name in ("beta", "sigma", "sd_Subject", "corr_Subject"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-8, atol=1e-10)
