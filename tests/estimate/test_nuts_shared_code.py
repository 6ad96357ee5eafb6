"""One compiled NUTS density per structure: models with other names, level counts and
numbers of fixed effects load it instead of compiling their own.

The shared density is checked against PyMC's own compilation (``compile_logp`` and
``compile_dlogp``) of each model's named PyMC model, and a renamed dataset is checked
to sample exactly the draws of the original.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hierlm
import hierlm.estimate.nuts_compiled as nc
from hierlm.estimate.nuts_model import compiled
from hierlm.estimate.priors import resolve_priors
from hierlm.objective import graph_cache
from tests.estimate.test_nuts_compiled import _c_expand, _c_logp

SLEEP = "Reaction ~ 1 + Days + (1 + Days | Subject)"


def _renamed(df: pd.DataFrame, drop_levels: int, extra: bool) -> tuple[str, pd.DataFrame]:
    """sleepstudy with other column names, fewer subjects and maybe one more covariate."""
    df = df.rename(columns={"Reaction": "rt_ms", "Days": "sleepless", "Subject": "person"})
    keep = sorted(df["person"].unique())[drop_levels:]
    df = df[df["person"].isin(keep)].copy()
    rhs = "1 + sleepless"
    if extra:
        df["noise"] = np.random.default_rng(5).normal(size=len(df))
        rhs += " + noise"
    return f"rt_ms ~ {rhs} + (1 + sleepless | person)", df


# PyMC's compile_logp (the reference) compiles C and warns that it finds no BLAS.
@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
def test_models_of_one_structure_share_one_compiled_density(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(nc, "_CODE", {})
    built = []
    pieces = nc.pymc_pieces
    monkeypatch.setattr(nc, "pymc_pieces", lambda *a: built.append(1) or pieces(*a))

    sleep = hierlm.load_sleepstudy()
    first = hierlm.Model(SLEEP, sleep).objective
    g_first = nc.density_graphs(first, resolve_priors(first.design))
    formula, df = _renamed(sleep, drop_levels=4, extra=True)
    obj = hierlm.Model(formula, df).objective
    assert obj.design.p == 3 and obj.design.terms[0].n_levels == 14
    pr = resolve_priors(obj.design)
    graphs = nc.density_graphs(obj, pr)

    assert graphs.code is g_first.code and len(built) == 1  # built and compiled once
    assert len(list(tmp_path.glob("nuts-*.pkl"))) == 3
    assert nc._structure_key(obj) == nc._structure_key(first)
    assert graphs.names == ("beta", "sigma", "sd_person", "chol_corr_person")
    assert graphs.shapes == ((3,), (), (2,), (2, 2)) and graphs.ndim == 7
    assert graphs.dims == {"beta": ("coef",), "sd_person": ("person_term",)}

    # the shared code is this model's density: PyMC's compilation of its own model
    model = compiled(obj, pr).model
    assert tuple(v.name for v in model.value_vars) == graphs.value_names
    logp_ref, dlogp_ref = model.compile_logp(), model.compile_dlogp()
    args = nc.call_args(graphs.logp, nc.data_values(obj, pr), 1)
    ud = graphs.user_data(args)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x = np.array([250.0, 10.0, 0.0, np.log(25.0), np.log(25.0), np.log(6.0), 0.1])
        x += rng.normal(scale=[5.0, 1.0, 1.0, 0.2, 0.2, 0.2, 0.3])
        point = graphs.unravel(x)
        code, value, grad = _c_logp(graphs, ud, x)
        assert code == 0
        assert value == pytest.approx(float(logp_ref(point)), rel=1e-10)
        np.testing.assert_allclose(grad, dlogp_ref(point), rtol=1e-8, atol=1e-10)
        code, out = _c_expand(graphs, ud, x)
        assert code == 0
        np.testing.assert_allclose(out[:3], x[:3])  # beta, then sigma = exp(log sigma)
        assert out[3] == pytest.approx(np.exp(x[3]), rel=1e-12)
    assert _c_logp(graphs, ud, np.zeros(6))[0] == -1  # another model's length is refused


def test_new_process_loads_the_density_of_another_models_names(tmp_path: Path) -> None:
    """A process that compiles one model's density leaves on disk what a later process
    needs for a model with other names, level counts and fixed effects: it builds no
    PyMC model (so never imports PyMC)."""
    code = (
        "import sys, pathlib, hierlm\n"
        "import hierlm.estimate.nuts_compiled as nc\n"
        "from hierlm.objective import graph_cache\n"
        "graph_cache.cache_dir = lambda: pathlib.Path(sys.argv[2])\n"
        "from hierlm.estimate.priors import resolve_priors\n"
        "from tests.estimate.test_nuts_shared_code import SLEEP, _renamed\n"
        "sleep = hierlm.load_sleepstudy()\n"
        "formula, df = (SLEEP, sleep) if sys.argv[1] == '0' else _renamed(sleep, 3, True)\n"
        "m = hierlm.Model(formula, df)\n"
        "g = nc.density_graphs(m.objective, resolve_priors(m.design))\n"
        "g.c_functions\n"
        "print('LOADED', g.logp.loaded, g.expand.loaded, 'pymc' in sys.modules)\n")
    outs = [subprocess.run([sys.executable, "-c", code, arg, str(tmp_path)], capture_output=True,
                           text=True, timeout=900, check=True,
                           cwd=Path(__file__).resolve().parent.parent.parent).stdout
            for arg in ("0", "1")]
    assert "LOADED False False True" in outs[0], outs[0]
    assert "LOADED True True False" in outs[1], outs[1]
    assert len(list(tmp_path.glob("nuts-*.pkl"))) == 3


@pytest.mark.skipif(importlib.util.find_spec("nutpie") is None, reason="nutpie not installed")
def test_renamed_data_sample_the_same_draws() -> None:
    """Names are only labels: the same data under other names give the same draws."""
    kw = {"method": "nuts", "draws": 100, "tune": 100, "chains": 2, "random_seed": 4,
          "progressbar": False, "sampler": "nutpie"}
    sleep = hierlm.load_sleepstudy()
    formula, renamed = _renamed(sleep, drop_levels=0, extra=False)
    with pytest.warns(UserWarning):  # (short chains: low ESS)
        a = hierlm.fit(SLEEP, sleep, **kw)
    with pytest.warns(UserWarning):
        b = hierlm.fit(formula, renamed, **kw)
    post_a, post_b = a.idata["posterior"], b.idata["posterior"]
    np.testing.assert_array_equal(post_a["beta"].values, post_b["beta"].values)
    np.testing.assert_array_equal(post_a["sd_Subject"].values, post_b["sd_person"].values)
    np.testing.assert_array_equal(post_a["corr_Subject"].values, post_b["corr_person"].values)
    assert list(post_b["coef"].values) == ["(Intercept)", "sleepless"]
    assert list(post_b["person_term"].values) == ["(Intercept)", "sleepless"]
    assert post_b["sd_person"].dims == ("chain", "draw", "person_term")
