"""The profiled criterion in psi as one compiled call: map, criterion, chain rule.

An evaluation of a structured model's criterion at ``psi`` is

    theta = theta(psi),   (d, g) = (d(theta), grad_theta d(theta)),   grad_psi d = J' g

with ``J = d theta / d psi`` block diagonal over the terms.  From Python that was three
calls into compiled code (each term's map kernel, :mod:`hierlm.covariance.jit`; the
objective's graph, :attr:`hierlm.objective.profiled.ProfiledObjective.graph`; ``J' g``
by NumPy) with the Python around each.  Here one Numba function does all three: a loop
over the terms calls each term's kernel by its *kind* (identity for an unstructured
term, then ``diag``, ``ar1``, ``cs``, ``toep``), the graph's Numba function, and the
chain rule, and reports whether theta, ``d`` and ``g`` are finite.  The terms'
layout (kind, homogeneity, size, offsets) and their log column scales are two small
arguments, so nothing in the function depends on a model: one function per graph
structure (the same granularity as the graph itself), compiled once per install and
cached by Numba under the graph's digest, its source
(:mod:`hierlm.estimate.psi_call_source`) and a digest of the kernels' module (a
changed kernel never runs stale machine code).  No per-model compile.

It is used where the objective already runs on its Numba link, the structures'
kernels are loaded and one evaluation is light (:func:`PsiCall.ready`: at most
:data:`hierlm.objective.profiled.NUMBA_WORK` multiply-adds, where the Python around
the calls is a noticeable share of an evaluation; a heavier one costs milliseconds, and
the few microseconds saved would not repay compiling the function): a process that
evaluates on NumPy or PyTensor's VM, or has not yet loaded the kernels, or a heavy
model, keeps the separate calls (the same values).  The values are the separate
calls' in the same order of operations (the kernels' loops, the graph's function);
``J' g`` is summed here in a loop where NumPy called BLAS, so the psi-gradient can
differ from it in the last bits, and on an ill-posed fit that can move the
optimizer's path.  Of 150 bootstrap replicates of ``Reaction ~ Days + ar1(0 + Days |
Subject)`` on sleepstudy's days 0-3 (one observation a cell; seed 11), 147 ended
within 1e-4 of the criterion of the separate calls' end points (68 within 1e-6 in
every number, 1 the same bit for bit), and 2 at another local optimum: one at
``sigma -> 0``, 21 lower, the other at ``rho = 1``, 10 higher (each code found the
lower optimum in one of them).  ``J' g`` by NumPy after the call keeps the bits but
costs 1.5-2 us an evaluation (the optimizers' functions 1.01-1.03 x ``us``'s instead
of 0.99-1.01 x).

A process that has spent :data:`hierlm.objective.numpy_link.PROCESS_BUDGET_S` seconds
evaluating small models on NumPy (about 10-15 fits: a loop, a simulation, a notebook
session) loads each structure's function on a daemon thread when a fit of it next asks
(:func:`load_in_background`), with the fit's compiled descent loop
(:mod:`hierlm.estimate.descent_loop`, :func:`after_load`); the fits use NumPy until
it is there.  The cost, measured for sleepstudy's structure from Numba's cache
(``/tmp``-style scripts, 2 cores, load about 2): importing Numba 0.2-0.4 s, this
function 0.35 s, the loop 0.23 s; a second structure 0.15 s.  In a loop of fits on 2
busy cores it cost the foreground about 0.9 s (586 fits in 3 s without it, 480 with
it, the load done after 1.7 s and 154 fits); after it, a sleepstudy fit took 1.9
instead of 3.5 ms (thread CPU time, best of 20).  In a notebook the load falls in the
idle time between cells.  ``HIERLM_BACKGROUND_LOADS=0`` turns it off (the tests do,
except those of this path: which fits it reaches would depend on timing).  Light
unstructured fits load :mod:`hierlm.estimate.kernel_loop`'s one loop instead.

The unstructured fit (:func:`hierlm.estimate.optimize.optimize_theta`) evaluates by
the same function, its layout all identity: the values are the separate calls' bit
for bit there (``J' g`` is ``g``).  Loading the function from Numba's cache costs about
0.1 s once per process and graph (after the graph's own Numba function is loaded);
compiling it, once per install and graph, 5-10 s.

``python -m benchmarks.structured_eval --subjects 100 --times 5`` (p = 5, one term,
100 groups): the structured function 1.03-1.06 x ``us``'s with separate calls ->
0.99-1.01 x (:mod:`hierlm.estimate.optimize_structured`).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hierlm.covariance import compiled
from hierlm.covariance.design import DesignCovariance
from hierlm.estimate import background
from hierlm.estimate.psi_call_source import PSI_SOURCE
from hierlm.objective import scalar_crossed
from hierlm.objective.graph_cache import NotNeeded, on_disk, wrapper_function
from hierlm.objective.numpy_link import process_warm
from hierlm.objective.profiled import NUMBA_WORK, ProfiledObjective, work_of

#: The kind code of each kernel (0: an unstructured term, ``theta = psi``).
KIND_CODES = {"": 0, "diag": 1, "ar1": 2, "cs": 3, "toep": 4}
#: Columns of the layout array: kind, homogeneous, p, psi offset, n_psi, theta offset.
LAYOUT_COLUMNS = 6
#: Status of a call: all finite; ``d`` or ``g`` not finite; theta not finite (the
#: criterion then not evaluated).
OK, NOT_FINITE, THETA_NOT_FINITE = 0, 1, 2

_LOCK = threading.Lock()
#: The compiled function of each graph (by digest); None where Numba failed.
_FUNCTIONS: dict[str, Any] = {}
#: The compiled function of each objective structure loaded on a background thread.
_LOADED: dict[Any, Any] = {}
#: What else a background load loads once the function is there (:func:`after_load`).
_AFTER: list[Any] = []



def _kernels_digest() -> str:
    from hierlm.covariance import jit

    return hashlib.sha256(Path(jit.__file__).read_bytes()).hexdigest()[:16]


def on_numba(objective: ProfiledObjective) -> bool:
    """Whether the objective's evaluations run its graph's Numba function now.

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> on_numba(m.objective.with_backend("numba"))
    True
    """
    if objective.backend == "numba":
        return objective.fn is not scalar_crossed.evaluate
    return getattr(objective.fn, "link", None) == "numba"


class PsiCall:
    """One design's compiled evaluation in psi (see the module docstring).

    Parameters
    ----------
    objective : ProfiledObjective
        The design's compiled objective.
    cov : DesignCovariance
        The design's covariance objects.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> data = hierlm.load_sleepstudy().query("Days < 4").astype({"Days": str})
    >>> d = hierlm.build_design("Reaction ~ Days + ar1(0 + Days | Subject)", data)
    >>> call = PsiCall(compile_objective(d, backend="numba"), DesignCovariance.of(d))
    >>> call.layout.tolist()
    [[2, 1, 4, 0, 2, 0]]
    """

    def __init__(self, objective: ProfiledObjective, cov: DesignCovariance) -> None:
        self.objective, self.cov = objective, cov
        rows, scales = [], []
        s0 = t0 = 0
        for c in cov.terms:
            rows.append([KIND_CODES.get(c.kernel_kind, -1) if c.structure != "us" else 0,
                         int(c.homogeneous), c.p, s0, c.n_psi, t0])
            scales.append(c.kernel_log_scale)
            s0, t0 = s0 + c.n_psi, t0 + c.n_theta
        self.layout = np.ascontiguousarray(np.array(rows, dtype=np.int64).reshape(
            -1, LAYOUT_COLUMNS))
        self.log_scale = np.ascontiguousarray(np.concatenate(scales), dtype=float)
        self.kinds = sorted({c.kernel_kind for c in cov.terms if c.structure != "us"})
        self._failed = (not cov.terms or bool((self.layout[:, 0] < 0).any())
                        or work_of(objective.gram) > NUMBA_WORK)
        #: Whether :meth:`ready` starts the structure's background load (the compiled
        #: descent loop turns it off where its kernel loop serves the fit instead).
        self.load_later = True

    def ready(self, reml: bool) -> Any:
        """The compiled function with its constant arguments bound, ``psi -> (status,
        d, grad_psi d, theta, L1, L_R)`` (None for a ``psi`` it was not compiled for: not
        C-contiguous float64, or read-only); None where it is not (yet) worth it: a
        heavy evaluation, the objective not on its Numba link, a kernel not loaded, no
        cached graph, or Numba failed (then never again for this design)."""
        if self._failed or any(compiled.kernel(k) is None for k in self.kinds):
            return None
        if on_numba(self.objective):  # compiles what is not cached, here and now
            fn = _function(self.objective, self.layout, self.log_scale)
            _run_hooks(self.objective, fn, compile_missing=True)
        else:
            fn = _LOADED.get(self.objective.structure)
            if fn is None:
                if process_warm() and self.load_later:
                    load_in_background(self.objective, self.layout, self.log_scale)
                return None
        if fn is None:
            self._failed = True
            return None
        layout, log_scale = self.layout, self.log_scale
        args = (np.asarray(1.0 if reml else 0.0), *self.objective._arguments)

        def call(psi: np.ndarray) -> tuple[int, float, np.ndarray, np.ndarray, np.ndarray,
                                           np.ndarray] | None:
            try:
                return fn(psi, layout, log_scale, *args)  # type: ignore[no-any-return]
            except Exception:  # noqa: BLE001 - psi of another type (read-only, say):
                return None    # the caller makes the separate calls

        return call


def kinds_missing(call: PsiCall) -> bool:
    """Whether a structure kernel the design needs is not loaded (then the separate
    calls run).

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> kinds_missing(PsiCall(m.objective, DesignCovariance.of(m.design)))
    False
    """
    return any(compiled.kernel(k) is None for k in call.kinds)


def load_in_background(objective: ProfiledObjective, layout: np.ndarray,
                       log_scale: np.ndarray, attempt: int = 1) -> None:
    """Load the compiled function of the objective's structure on a daemon thread (once
    per structure and process, :mod:`hierlm.estimate.background`) from Numba's disk
    cache, and what :func:`after_load` asks for; :meth:`PsiCall.ready` uses it once it
    is there.  Nothing is compiled on the thread (a structure not cached stays on the
    separate calls in this process, and :func:`hierlm.estimate.descent_loop.warm_up`
    compiles it in a process of its own; ``attempt`` 2 loads again after that): a
    compile takes seconds, and the interpreter's exit must not find LLVM compiling on a
    daemon thread (it aborted there).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate import background, descent_loop
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> call = PsiCall(m.objective, DesignCovariance.of(m.design))
    >>> load_in_background(m.objective, call.layout, call.log_scale)  # returns at once
    >>> background.wait()  # the load has ended (loaded, or not in Numba's cache)
    >>> key = m.objective.structure  # (the example leaves the process as it found it)
    >>> _ = _LOADED.pop(key, None), descent_loop._LOOPS.pop(key, None)
    >>> background._STARTED.discard(("psi_call", key, 1))
    """
    key = objective.structure
    if key in _LOADED:
        return

    def work() -> None:
        try:  # from Numba's cache only: nothing is compiled on this thread
            fn = _function(objective, layout, log_scale, compile_missing=False)
            _run_hooks(objective, fn, compile_missing=False)
        except Exception:  # noqa: BLE001 - any failure: the separate calls go on
            fn = None
        if fn is not None:
            _LOADED[key] = fn

    background.start(("psi_call", key, attempt), work)


def after_load(hook: Any) -> None:
    """Have every load call ``hook(objective, fn, compile_missing)`` once the
    structure's function ``fn`` is loaded (None where Numba failed), before the fits use
    it: compiled code built on it (:mod:`hierlm.estimate.descent_loop`) loads on the
    same thread, from Numba's cache only on the background thread
    (``compile_missing=False``).

    Examples
    --------
    >>> from hierlm.estimate import descent_loop
    >>> after_load(descent_loop.build)  # registered once, when that module is imported
    >>> _AFTER.count(descent_loop.build)
    1
    """
    if hook not in _AFTER:
        _AFTER.append(hook)


_HOOKED: set[Any] = set()


def _run_hooks(objective: ProfiledObjective, fn: Any, compile_missing: bool) -> None:
    """The :func:`after_load` hooks for the objective's structure (once per structure
    where they may compile)."""
    if compile_missing:
        if objective.structure in _HOOKED:
            return
        _HOOKED.add(objective.structure)
    for hook in list(_AFTER):
        hook(objective, fn, compile_missing)


def source_digest() -> str:
    """A digest of this function's source and of the kernels it calls (compiled code
    that inlines the function caches under it).

    Examples
    --------
    >>> len(source_digest())
    16
    """
    return hashlib.sha256((PSI_SOURCE + _kernels_digest()).encode()).hexdigest()[:16]


def _function(objective: ProfiledObjective, layout: np.ndarray, log_scale: np.ndarray,
              compile_missing: bool = True) -> Any:
    """The compiled function of the objective's graph, made once per process: from
    Numba's cache, else (``compile_missing``) compiled against the graph; None on any
    failure of Numba, or where it is not cached and may not be compiled."""
    if not compile_missing and not on_disk("profiled", objective.structure):
        return None  # building the graph would compile it
    graph = objective.graph
    if graph.digest is None:
        return None
    with _LOCK:
        if graph.digest not in _FUNCTIONS:
            fn = _load(objective, layout, log_scale, compile_missing)
            if fn is None and not compile_missing:
                return None  # not cached: a later call may compile it
            _FUNCTIONS[graph.digest] = fn
        return _FUNCTIONS[graph.digest]


def _load(objective: ProfiledObjective, layout: np.ndarray, log_scale: np.ndarray,
          compile_missing: bool = True) -> Any:
    graph = objective.graph
    try:
        import numba
        from numba.core.errors import NumbaError

        from hierlm.covariance import jit
    except Exception:  # noqa: BLE001 - no Numba: the separate calls go on
        return None
    n_args = len(graph.fgraph.inputs)
    src = PSI_SOURCE.format(args=", ".join(f"a{i}" for i in range(1, n_args)),
                      kernels=_kernels_digest())
    env = {"np": np, **{f"{k}_kernel": getattr(jit, f"{k}_kernel")
                        for k in ("diag", "ar1", "cs", "toep")}}

    def make(callee: Any) -> Any:
        py = wrapper_function(graph, src, "hierlm_psi", callee, env=env)
        return numba.njit(cache=True)(py)

    # the design's own layout at psi = 0: loads (or compiles) the one specialization
    # every design of the graph uses
    probe = (np.zeros(int(layout[:, 4].sum())), layout, log_scale, np.asarray(1.0),
             *objective._arguments)
    for callee in (NotNeeded(), None) if compile_missing else (NotNeeded(),):
        try:
            fn = make(graph.fn if callee is None else callee)
            fn(*probe)
            return fn
        except NumbaError:
            continue
        except Exception:  # noqa: BLE001 - any failure of Numba: the separate calls
            return None
    return None
