"""Contract: the fit, the structured fit, the bootstrap refits and the profiles share one
optimizer (:mod:`hierlm.estimate.theta_optimizer`).

Outside the optimizer's modules no module of the package may call
``scipy.optimize.minimize`` (or import it, or another of scipy's minimizers), call the
L-BFGS-B driver (:mod:`hierlm.estimate.lbfgsb`) or SciPy's ``_lbfgsb``, or name the
method ``"L-BFGS-B"`` in code.  The source is parsed (``ast``), so the check sees code,
not comments or docstrings.  A second test follows each call site at run time.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import numpy as np
import pytest

import hierlm
from hierlm.estimate import descent_loop, theta_optimizer

PACKAGE = Path(hierlm.__file__).resolve().parent
#: (descent_loop, kernel_loop: the checked descent's L-BFGS-B runs compiled, with its
#: line search; stable_polish: a nearly exact fit's theta on the residual criterion)
OWNERS = {"estimate/theta_optimizer.py", "estimate/checked_descent.py", "estimate/lbfgsb.py",
          "estimate/descent_loop.py", "estimate/descent_loop_source.py",
          "estimate/line_search_jit.py", "estimate/kernel_loop.py",
          "estimate/stable_polish.py"}
#: nlme's gls (no random term left in ``ranova``) has no covariance parameters: its
#: residual parameters are fitted on the value alone (Nelder-Mead, then BFGS).
EXEMPT = {"inference/residual_ranova.py"}
SCIPY_MINIMIZERS = {"minimize", "fmin", "fmin_l_bfgs_b", "fmin_bfgs", "fmin_powell",
                    "fmin_tnc", "fmin_cg", "least_squares"}
DRIVER = {"minimize_lbfgsb", "run_lbfgsb", "setulb", "_lbfgsb", "lbfgsb"}
METHODS = {"L-BFGS-B", "POWELL", "BFGS", "NELDER-MEAD", "TNC", "SLSQP"}


def _module_names(tree: ast.AST) -> set[str]:
    """The local names of scipy.optimize and of the L-BFGS-B drivers' modules."""
    names = {"scipy.optimize"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname for a in node.names
                      if a.asname and a.name.startswith("scipy.optimize")}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full.startswith("scipy.optimize") or full.endswith("lbfgsb"):
                    names.add(a.asname or a.name)
    return names


def _violations(tree: ast.AST, where: str) -> list[str]:
    found = []
    modules = _module_names(tree)
    for node in ast.walk(tree):
        at = f"{where}:{getattr(node, 'lineno', 0)}"
        if (isinstance(node, ast.Attribute) and node.attr in SCIPY_MINIMIZERS | DRIVER
                and ast.unparse(node.value) in modules):
            found.append(f"{at}: {ast.unparse(node)}")
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = {a.name for a in node.names}
            if (names & (SCIPY_MINIMIZERS | DRIVER)
                    and (node.module.startswith("scipy.optimize")
                         or node.module.startswith("hierlm"))) or node.module.endswith(
                    "lbfgsb"):
                found.append(f"{at}: from {node.module} import {sorted(names)}")
        elif isinstance(node, ast.Name) and node.id in DRIVER:
            found.append(f"{at}: {node.id}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.upper() in METHODS):
            found.append(f"{at}: method {node.value!r}")
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if p.relative_to(PACKAGE).as_posix() not in OWNERS | EXEMPT)


def test_no_module_outside_the_optimizer_drives_an_optimizer() -> None:
    bad = [v for p in _modules()
           for v in _violations(ast.parse(p.read_text()), p.relative_to(PACKAGE).as_posix())]
    assert not bad, "optimizer calls outside hierlm.estimate.theta_optimizer:\n" + "\n".join(bad)


@pytest.mark.parametrize("code", [
    "import scipy.optimize\nscipy.optimize.minimize(f, x0)\n",
    "from scipy.optimize import minimize\n",
    "import scipy.optimize as so\nso.fmin_l_bfgs_b(f, x0)\n",
    "from hierlm.estimate.lbfgsb import minimize_lbfgsb\n",
    "from hierlm.estimate.lbfgsb import run_lbfgsb as run\n",
    "from scipy.optimize import _lbfgsb\n_lbfgsb.setulb()\n",
    "opts = {'method': 'L-BFGS-B'}\n",
])
def test_the_check_sees_each_form(code: str) -> None:
    # the contract is only as good as its detector
    assert _violations(ast.parse(code), "probe")


def test_the_check_passes_the_optimizers_own_users() -> None:
    code = ("from hierlm.estimate.theta_optimizer import minimize_theta\n"
            "import scipy.optimize\nscipy.optimize.brentq(f, 0, 1)\n")
    assert not _violations(ast.parse(code), "probe")


@pytest.fixture
def searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the shared optimizer's criterion evaluations (from Python, or in its
    compiled descent loop)."""
    counts = [0]
    fun = theta_optimizer.Search.fun

    def counted(self: theta_optimizer.Search, phi: np.ndarray) -> tuple[float, np.ndarray]:
        counts[0] += 1
        return fun(self, phi)

    monkeypatch.setattr(theta_optimizer.Search, "fun", counted)
    # the checked descent's runs as the compiled loop (descent_loop), where it is loaded
    run = descent_loop.CompiledDescent.__call__

    def counted_run(self: descent_loop.CompiledDescent, search: theta_optimizer.Search,
                    *args: object) -> str | None:
        n = search.n
        out = run(self, search, *args)  # type: ignore[arg-type]
        counts[0] += search.n - n
        return out

    monkeypatch.setattr(descent_loop.CompiledDescent, "__call__", counted_run)
    return counts


def _runs(counts: list[int], action) -> int:
    before = counts[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        action()
    return counts[0] - before


def test_each_call_site_runs_the_shared_optimizer(searches: list[int]) -> None:
    from hierlm.inference.profile_inner import minimize_box
    from hierlm.inference.refit import Refitter

    d = hierlm.load_sleepstudy()
    res = hierlm.fit("Reaction ~ Days + (Days | Subject)", d)
    assert _runs(searches, lambda: hierlm.fit("Reaction ~ Days + (Days | Subject)", d)) > 0
    small = d.query("Days < 4").astype({"Days": str})
    assert _runs(searches, lambda: hierlm.fit("Reaction ~ Days + ar1(0 + Days | Subject)",
                                              small)) > 0
    # a Refitter without the fit's Hessian refits by L-BFGS-B alone
    refitter = Refitter(res.model.objective, reml=True)
    y = res.model.design.y
    assert _runs(searches, lambda: refitter.refit_block(y[None, :] * 1.01, res.theta)) > 0
    assert _runs(searches, lambda: minimize_box(lambda x: float((x[0] - 1) ** 2),
                                                np.zeros(1), [(None, None)])) > 0
    assert _runs(searches, lambda: hierlm.fit("Reaction ~ Days + (1 | Subject)", d,
                                              residual="ar1(Days | Subject)")) > 0
