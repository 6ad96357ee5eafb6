"""The compiled profiled objective: theta -> (lme4 criterion, exact gradient, factor).

One PyTensor function per model *structure* (see
:class:`hierlm.objective.cholesky.Structure`).  The Gram blocks are inputs, not
constants, so the compiled function serves every dataset with the same term
structure, and refitting with a new response reuses it without recompiling.
``reml`` is an input too: one function gives both lme4's deviance (ML) and its
REML criterion.  The gradient comes from PyTensor's reverse-mode autodiff.  The
rewritten graph is kept on disk (:mod:`hierlm.objective.graph_cache`), so a new
process only links it.

Two links of the graph (``backend``, each with its own rewritten graph; see
:mod:`hierlm.objective.graph_cache`): ``"numba"`` (machine code; about 20-40 us per
evaluation of sleepstudy, but tens of seconds to compile a new structure and about a
second per process to start Numba) and ``"vm"`` (PyTensor's Python VM over NumPy;
a few milliseconds per evaluation of a small design, nothing compiled).  A fit needs
tens of evaluations, so ``"auto"`` (the default) links with Numba only when one
evaluation's arithmetic is large (:func:`choose_backend`).  Otherwise it starts on the
VM and moves to Numba once this process has spent :data:`VM_BUDGET_S` seconds
evaluating the structure on the VM (many fits in a loop, a simulation study), as a
tiered JIT does.  Callers that evaluate thousands of times (bootstrap, profiles) ask
for ``"numba"`` directly (:meth:`ProfiledObjective.with_backend`).

Large models whose random-effect terms are all scalar (crossed intercepts: InstEval,
MovieLens), linked with Numba, are evaluated by :mod:`hierlm.objective.scalar_crossed`
instead of the graph (:func:`linked`): the same function in a few fused passes, with
the dense factorizations on two threads.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from hierlm.design.terms import ModelDesign
from hierlm.errors import MethodError
from hierlm.objective import scalar_crossed
from hierlm.objective.cholesky import (
    GramVars,
    Structure,
    blocked_cholesky,
    profiled_objective,
)
from hierlm.objective.gram import GramBlocks, compute_gram
from hierlm.objective.gram_dense import dense_gram
from hierlm.objective.graph_cache import CompiledGraph, compile_graph
from hierlm.objective.numpy_link import numpy_first, suits

_GRAPHS: dict[tuple[Structure, str], CompiledGraph] = {}
_CACHE: dict[tuple[Structure, str], Callable] = {}
_LOCK = threading.Lock()
BACKENDS = ("auto", "vm", "numba")
#: Multiply-adds of one evaluation above which ``"auto"`` links with Numba.
NUMBA_WORK = 2e6
#: Seconds of VM evaluation of one structure, per process, after which ``"auto"``
#: moves that structure to Numba.
VM_BUDGET_S = 2.0
#: The ``reml`` argument of the compiled function for ``False`` and ``True``.
_REML = (np.asarray(0.0), np.asarray(1.0))


class TieredCall:
    """The VM's function until it has run :data:`VM_BUDGET_S` seconds, then Numba's.

    Attributes
    ----------
    link : str
        ``"vm"`` or ``"numba"``: what the next call runs.
    """

    def __init__(self, s: Structure) -> None:
        self._s = s
        self._vm = compiled_for(s, "vm")
        self._numba: Callable | None = None
        self.spent = 0.0

    @property
    def link(self) -> str:
        return "vm" if self._numba is None else "numba"

    def __call__(self, *args: Any) -> Any:
        if self._numba is not None:
            return self._numba(*args)
        t0 = time.perf_counter()
        out = self._vm(*args)
        self.spent += time.perf_counter() - t0
        if self.spent > VM_BUDGET_S:
            self._numba = compiled_for(self._s, "numba")
        return out


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


def work_of(gram: GramBlocks) -> float:
    """Multiply-adds of one evaluation, roughly: the first term's blocks
    (``l1 p1^3``), the Schur update (``sum_k nnz_k^2 p1`` by pairs, or ``m^2 l1 p1``
    when ``A_R1`` is stored dense) and the dense factor of the rest (``m^3 / 3``).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> work_of(compute_gram(d))
    477.0
    """
    l1, p1 = gram.A11.shape[0], gram.A11.shape[1]
    m = float(gram.m)
    if gram.dense_r1:
        schur = m * m * l1 * p1
    else:
        # (np.diff's own subtraction, without its wrapper: called twice a fit)
        counts = (gram.level_ptr[1:] - gram.level_ptr[:-1]).astype(np.float64)
        schur = float((counts ** 2).sum()) * p1
    return float(l1 * p1 ** 3 + schur + m ** 3 / 3)


def choose_backend(gram: GramBlocks) -> str:
    """``"numba"`` when :func:`work_of` exceeds :data:`NUMBA_WORK`, else ``"vm"``.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> choose_backend(compute_gram(d))
    'vm'
    """
    return "numba" if work_of(gram) > NUMBA_WORK else "vm"


def compiled_for(s: Structure, backend: str = "numba") -> Callable:
    """The objective function of a structure linked by ``backend`` (``"vm"``,
    ``"numba"``, or ``"auto"``: a :class:`TieredCall`), made on first use and shared
    by every model of the structure in this process."""
    if backend == "auto":
        with _LOCK:
            fn = _CACHE.get((s, backend))
        if fn is None:
            fn = TieredCall(s)
            with _LOCK:
                fn = _CACHE.setdefault((s, backend), fn)
        return fn
    with _LOCK:
        fn = _CACHE.get((s, backend))
        if fn is None:
            graph = _graph_locked(s, backend)
            fn = graph.vm_fn if backend == "vm" else graph.python_fn
            _CACHE[(s, backend)] = fn
    return fn


def _graph_locked(s: Structure, link: str) -> CompiledGraph:
    graph = _GRAPHS.get((s, link))
    if graph is None:
        graph = _GRAPHS[(s, link)] = compile_graph("profiled", s, lambda: _build(s), link)
    return graph


def graph_for(s: Structure, link: str = "numba") -> CompiledGraph:
    """The rewritten graph of a structure's objective for ``link`` (``"numba"`` or
    ``"vm"``), built or loaded on first use."""
    with _LOCK:
        return _graph_locked(s, link)


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
    backend: str = "numba"

    @functools.cached_property
    def _arguments(self) -> tuple[np.ndarray, ...]:
        """``n``, ``p`` and the Gram blocks as the compiled function takes them: the same
        for every evaluation, so built once (an optimizer evaluates tens of times)."""
        return (np.asarray(float(self.gram.n)), np.asarray(float(self.gram.p)),
                *gram_values(self.gram))

    @property
    def graph(self) -> CompiledGraph:
        """The objective's graph rewritten for Numba (what compiled callers build on)."""
        return graph_for(self.structure, "numba")

    def with_backend(self, backend: str) -> ProfiledObjective:
        """The same objective linked by ``backend`` (``"vm"``, ``"numba"`` or ``"auto"``).

        Examples
        --------
        >>> import hierlm
        >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> m.objective.backend, m.objective.with_backend("numba").backend
        ('auto', 'numba')
        """
        backend = _resolve(backend, self.gram)
        if backend == self.backend:
            return self
        return dataclasses.replace(self, fn=linked(self.structure, backend, self.gram),
                                   backend=backend)

    def evaluate(self, theta: np.ndarray, reml: bool) -> tuple[float, np.ndarray,
                                                               np.ndarray, np.ndarray]:
        """Objective, gradient, block-1 factors ``L1`` and Schur factor ``L_R`` at theta."""
        th = np.ascontiguousarray(theta, dtype=np.float64)
        obj, grad, L1, L_R = self.fn(th, _REML[reml] if reml is True or reml is False
                                     else np.asarray(float(reml)), *self._arguments)
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


def linked(s: Structure, backend: str, gram: GramBlocks) -> Callable:
    """The function that evaluates a model's objective for ``backend``: the structure's
    compiled graph, or, for a large model (:func:`work_of` above :data:`NUMBA_WORK`) of
    all-scalar terms linked with Numba, the fused evaluation of
    :mod:`hierlm.objective.scalar_crossed` (same arguments and results)."""
    if backend == "numba" and scalar_crossed.suits(s) and work_of(gram) > NUMBA_WORK:
        return scalar_crossed.evaluate
    return compiled_for(s, backend)


def _resolve(backend: str, gram: GramBlocks) -> str:
    """``backend`` checked; ``"auto"`` becomes ``"numba"`` for heavy evaluations."""
    if backend not in BACKENDS:
        raise MethodError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto" and choose_backend(gram) == "numba":
        return "numba"
    return backend


def compile_objective(design: ModelDesign, gram: GramBlocks | None = None,
                      backend: str = "auto") -> ProfiledObjective:
    """Build (or reuse) the compiled profiled objective of a design.

    Parameters
    ----------
    design : ModelDesign
        The model design.
    gram : GramBlocks, optional
        Precomputed Gram blocks (computed here if omitted).
    backend : {"auto", "vm", "numba"}
        How the graph is linked (see the module docstring); ``"auto"`` that resolves
        to Numba is reported as ``"numba"``.

    Returns
    -------
    ProfiledObjective
        Callable as ``obj(theta, reml=True)``; see also ``value_and_grad``.
    """
    if gram is None:  # a small design's blocks from one dense product (gram_dense)
        gram = dense_gram(design) or compute_gram(design)
    s = structure_of(design, gram)
    backend = _resolve(backend, gram)
    # small models under "auto": dense NumPy, no graph (hierlm.objective.numpy_link)
    fn = (numpy_first(s, lambda: compiled_for(s, "numba")) if backend == "auto" and suits(gram)
          else linked(s, backend, gram))
    return ProfiledObjective(design=design, gram=gram, structure=s, fn=fn, backend=backend)
