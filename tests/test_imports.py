"""``import hierlm`` and a REML fit load only what that path needs.

xarray, h5netcdf, ArviZ, PyMC and nutpie belong to the NUTS, save and load paths, Numba
to graphs linked with it (large designs, the bootstrap, the profiles), and
formulae to formulas whose parts are more than ``+``-joined column names, scipy.stats
to the cluster-robust tables; each is checked in a fresh interpreter, where nothing else
has imported them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hierlm.design.columns import _variables

LAZY = ("xarray", "h5netcdf", "h5py", "arviz", "arviz_base", "arviz_stats", "pymc",
        "nutpie", "formulae", "matplotlib", "numba")


def _loaded_after(code: str) -> set[str]:
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps([m for m in {list(LAZY)!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=600)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_hierlm_loads_none_of_the_lazy_modules() -> None:
    assert _loaded_after("import hierlm") == set()


def test_import_hierlm_plots_loads_none_of_the_lazy_modules() -> None:
    assert _loaded_after("import hierlm.plots") == set()


def test_reml_fit_of_a_simple_formula_loads_none_of_them() -> None:
    code = ("import hierlm\n"
            "hierlm.fit('Reaction ~ 1 + Days + (1 + Days | Subject)', hierlm.load_sleepstudy())")
    assert _loaded_after(code) == set()


def test_a_formula_with_a_transformation_loads_formulae() -> None:
    code = ("import hierlm\n"
            "hierlm.build_design('Reaction ~ 1 + scale(Days) + (1 | Subject)', "
            "hierlm.load_sleepstudy())")
    assert "formulae" in _loaded_after(code)


@pytest.mark.parametrize("expr", ["Reaction ~ 1 + Days", "y ~ 0 + a + b", "1 + x",
                                  "y ~ 1", "x", "0 + x"])
def test_fast_variable_names_match_formulae(expr: str) -> None:
    import formulae as fm

    assert _variables(expr, "fixed part") == set(fm.model_description(expr).var_names) - {""}


def test_post_fit_tables_do_not_load_scipy_stats() -> None:
    # scipy.stats (0.4-1.4 s to import on a busy machine) is for the robust CR2 tables only
    probe = ("import sys, warnings\nimport hierlm\nwarnings.simplefilter('ignore')\n"
             "r = hierlm.fit('Reaction ~ 1 + Days + (1 + Days | Subject)', "
             "hierlm.load_sleepstudy())\n"
             "r.summary(); r.coef_table(); r.coef_table(ddf='kenward-roger'); r.anova()\n"
             "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=600)
    assert out.stdout.strip().splitlines()[-1] == "False"
