"""The compiled profiled objective: theta -> (lme4 criterion, exact gradient, factor).

One PyTensor function per model *structure* (see
:class:`hierlm.objective.cholesky.Structure`).  The Gram blocks are inputs, not
constants, so the compiled function serves every dataset with the same term
structure, and refitting with a new response reuses it without recompiling.
``reml`` is an input too: one function gives both lme4's deviance (ML) and its
REML criterion.  The gradient comes from PyTensor's reverse-mode autodiff.  The
rewritten graph is kept on disk (:mod:`hierlm.objective.graph_cache`), so a new
process only links it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from hierlm.design.terms import ModelDesign
from hierlm.objective.cholesky import (
    GramVars,
    Structure,
    blocked_cholesky,
    profiled_objective,
)
from hierlm.objective.gram import GramBlocks, compute_gram
from hierlm.objective.graph_cache import compile_graph

_CACHE: dict[Structure, Callable] = {}
_LOCK = threading.Lock()


def structure_of(design: ModelDesign, gram: GramBlocks) -> Structure:
    """The structural constants of a design (what its compiled graph depends on)."""
    return Structure(
        p1=design.terms[0].p,
        dense_r1=gram.dense_r1,
        rest_diagonal=all(t.p == 1 for t in design.terms[1:]),
    )


def symbolic_gram() -> GramVars:
    """Fresh symbolic inputs for the Gram blocks (shapes left generic)."""
    return GramVars(
        A11=pt.tensor3("A11"),
        nz_val=pt.matrix("nz_val"),
        nz_level=pt.lvector("nz_level"),
        nz_row=pt.lvector("nz_row"),
        level_ptr=pt.lvector("level_ptr"),
        row_order=pt.lvector("row_order"),
        row_ptr=pt.lvector("row_ptr"),
        A_R1_dense=pt.matrix("A_R1_dense"),
        A_RR=pt.matrix("A_RR"),
        lam_row=pt.lvector("lam_row"),
        lam_col=pt.lvector("lam_col"),
        lam_theta=pt.lvector("lam_theta"),
        q_rest=pt.lscalar("q_rest"),
        beta_offset=pt.vector("beta_offset"),
    )


def gram_values(gram: GramBlocks) -> list[np.ndarray]:
    """Numeric Gram blocks in the order of :class:`GramVars` fields."""
    return [np.asarray(gram.q_rest, dtype=np.int64) if name == "q_rest" else getattr(gram, name)
            for name in GramVars.__dataclass_fields__]


def _build(s: Structure) -> tuple[list[Any], list[Any], dict[str, Any]]:
    theta = pt.vector("theta")
    reml = pt.scalar("reml")
    n = pt.scalar("n")
    p = pt.scalar("p")
    g = symbolic_gram()
    f = blocked_cholesky(theta, g, s)
    obj = profiled_objective(f, n, p, g.q_rest, reml)
    grad: Any = pytensor.grad(obj, theta)
    return [theta, reml, n, p, *g.__dict__.values()], [obj, grad, f.L1, f.L_R], {}


def _compile(s: Structure) -> Callable:
    return compile_graph("profiled", s, lambda: _build(s)).python_fn


def compiled_for(s: Structure) -> Callable:
    """The compiled objective function for a structure, compiled on first use."""
    with _LOCK:
        fn = _CACHE.get(s)
        if fn is None:
            fn = _compile(s)
            _CACHE[s] = fn
    return fn


@dataclass(frozen=True, eq=False)
class ProfiledObjective:
    """lme4's profiled objective of one model, ready to evaluate.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> obj = compile_objective(d)
    >>> round(obj(np.array([0.92922, 0.01817, 0.22264]), reml=False), 3)
    1751.939
    """

    design: ModelDesign
    gram: GramBlocks
    structure: Structure
    fn: Callable

    def evaluate(self, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray,
                                                               np.ndarray, np.ndarray]:
        """Objective, gradient, block-1 factors ``L1`` and Schur factor ``L_R`` at theta."""
        th = np.ascontiguousarray(theta, dtype=np.float64)
        obj, grad, L1, L_R = self.fn(th, np.asarray(float(reml)), np.asarray(float(self.gram.n)),
                                     np.asarray(float(self.gram.p)), *gram_values(self.gram))
        # lme4's criteria of a weighted model: the working problem's minus sum(log w)
        return float(obj) - self.gram.sum_log_w, np.asarray(grad), np.asarray(L1), np.asarray(L_R)

    def __call__(self, theta: np.ndarray, reml: bool = True) -> float:
        """The objective at theta (``inf`` where Omega is not positive definite)."""
        val = self.evaluate(theta, reml)[0]
        return val if np.isfinite(val) else np.inf

    def value_and_grad(self, theta: np.ndarray, reml: bool = True) -> tuple[float, np.ndarray]:
        """The objective and its exact gradient at theta."""
        val, grad = self.evaluate(theta, reml)[:2]
        return val, grad


def compile_objective(design: ModelDesign, gram: GramBlocks | None = None) -> ProfiledObjective:
    """Build (or reuse) the compiled profiled objective of a design.

    Parameters
    ----------
    design : ModelDesign
        The model design.
    gram : GramBlocks, optional
        Precomputed Gram blocks (computed here if omitted).

    Returns
    -------
    ProfiledObjective
        Callable as ``obj(theta, reml=True)``; see also ``value_and_grad``.
    """
    gram = compute_gram(design) if gram is None else gram
    s = structure_of(design, gram)
    return ProfiledObjective(design=design, gram=gram, structure=s, fn=compiled_for(s))
