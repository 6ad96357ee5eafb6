"""The fit's L-BFGS-B descents as one compiled loop around the compiled evaluation.

The fit of an unstructured model (:func:`hierlm.estimate.optimize.optimize_theta`)
runs L-BFGS-B without bounds (:mod:`hierlm.estimate.checked_descent`) on the profiled
criterion ``d(theta)`` in search units ``u``, ``theta = (u * units) * scale``, with
the search's gradient ``(grad_theta d * scale) * units``.  Without bounds, L-BFGS-B
(Byrd, Lu, Nocedal and Zhu; SciPy's C translation of version 3.0) is L-BFGS:

* the direction ``d = -H g``, with ``H`` the inverse of the limited-memory BFGS matrix
  of the last ``m = 10`` pairs ``(s, y)`` (``H_0 = I / theta_k``, ``theta_k = y'y /
  s'y`` of the last pair), here by the two-loop recursion (the same matrix as
  L-BFGS-B's compact form, so the same direction up to rounding); ``d = -g`` with no
  pairs;
* Moré and Thuente's line search (:mod:`hierlm.estimate.line_search_jit`, ``ftol =
  1e-3``, ``gtol = 0.9``, ``xtol = 0.1``, steps in ``[0, 1e10]``), first step ``1 /
  |d|`` on the first iteration and 1 after; at most ``maxls`` trial points; a search
  that fails (no descent, or ``maxls`` points) restarts from ``d = -g`` with the pairs
  dropped, or ends the run (``ABNORMAL``) when there were none;
* a pair is kept when ``s'y > eps (-g_0'd) stp``; the run stops when ``max |g_i| <=
  gtol`` or ``(f_k - f_{k+1}) <= ftol max(|f_k|, |f_{k+1}|, 1)``, and after ``maxiter``
  iterations or ``MAXFUN`` evaluations, with L-BFGS-B's own messages.

Every evaluation is the fit's (:mod:`hierlm.estimate.psi_call`'s compiled function):
a point where the criterion or its gradient is not finite is given ``1e300`` and a
zero gradient, the lowest point is kept with its gradient and factors, and each
evaluation's theta and criterion go to the fit's trace.  From Python each evaluation
of a small model cost its compiled call (about 20 us for sleepstudy) plus 15-35 us of
Python around it (the optimizer's wrappers, SciPy's ``setulb`` driver); here the loop
is machine code.  The loop's source is compiled by Numba against the objective's graph
(one function per graph structure, cached on disk under the graph's digest and this
source, as :mod:`hierlm.estimate.psi_call`'s function is) and loaded with it on the
background thread of a warm process (:func:`hierlm.estimate.psi_call.load_in_background`);
until then, or where it cannot be compiled, the fit drives SciPy's L-BFGS-B
(:mod:`hierlm.estimate.lbfgsb`) as before.

Tested against that driver (``tests/estimate/test_descent_loop.py``): the same trace
of evaluated points to rounding on the reference fits, the same messages, the fits'
criteria to 1e-10.

For an unstructured model of light evaluations, the same source compiled around a
hand-written kernel (:mod:`hierlm.estimate.kernel_loop`) serves every structure: where
it is loaded, :class:`CompiledDescent` runs it instead, and a warm process loads it
instead of the structure's function and loop.
"""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Any

import numpy as np

from hierlm.estimate import kernel_loop, psi_call, warm_up_process
from hierlm.estimate.descent_loop_source import loop_source
from hierlm.estimate.lbfgsb import MAXFUN
from hierlm.objective.graph_cache import NotNeeded, cache_dir, wrapper_function
from hierlm.objective.numpy_link import process_warm
from hierlm.objective.profiled import ProfiledObjective

try:  # L-BFGS-B's messages, as SciPy writes them
    from scipy.optimize._lbfgsb_py import status_messages, task_messages
except ImportError:  # pragma: no cover - other SciPy versions
    status_messages = {4: "CONVERGENCE", 5: "STOP", 8: "ABNORMAL"}
    task_messages = {0: "", 401: "NORM OF PROJECTED GRADIENT <= PGTOL",
                     402: "RELATIVE REDUCTION OF F <= FACTR*EPSMCH",
                     502: "TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
                     504: "TOTAL NO. OF ITERATIONS REACHED LIMIT"}

_LOCK = threading.Lock()
#: The loop of each objective structure, loaded (None where Numba failed).
_LOOPS: dict[Any, Any] = {}
#: The warm-up process of each structure this process started (None: done with it).
_WARMING: dict[Any, subprocess.Popen | None] = {}

def build(objective: ProfiledObjective, psi_fn: Any, compile_missing: bool = True) -> Any:
    """Load from Numba's cache (or, with ``compile_missing``, compile against
    ``psi_fn``) the loop of the objective's structure and keep it for
    :func:`loop_for`; None where it is not there (then, on the background thread,
    :func:`warm_up` compiles it in a process of its own).  Called once ``psi_fn`` is
    loaded (:func:`hierlm.estimate.psi_call.after_load`)."""
    key = objective.structure
    if _LOOPS.get(key) is not None:
        return _LOOPS[key]
    fn = None if psi_fn is None else _compile(objective, psi_fn, compile_missing)
    if fn is not None or compile_missing:
        with _LOCK:
            _LOOPS[key] = fn
    else:
        warm_up(objective)
    return fn


def warm_up(objective: ProfiledObjective) -> subprocess.Popen | None:
    """Compile the structure's evaluation and loop in a background process
    (:mod:`hierlm.estimate.fit_warm_up`), once per structure and process; None where
    nothing is started (already started, no disk cache, ``HIERLM_BACKGROUND_LOADS=0``).
    """
    if os.environ.get("HIERLM_BACKGROUND_LOADS") == "0" or cache_dir() is None:
        return None
    with _LOCK:
        if objective.structure in _WARMING:
            return None
        _WARMING[objective.structure] = None
    proc = warm_up_process.launch("hierlm.estimate.fit_warm_up", "hierlm-fit-warm-up-",
                                  (objective.design, objective.gram))
    _WARMING[objective.structure] = proc
    return proc


def _retry(objective: ProfiledObjective, call: psi_call.PsiCall) -> None:
    """Load again from Numba's cache once the structure's warm-up process has ended."""
    proc = _WARMING.get(objective.structure)
    if proc is not None and proc.poll() is not None:
        _WARMING[objective.structure] = None
        psi_call.load_in_background(objective, call.layout, call.log_scale, attempt=2)


def _compile(objective: ProfiledObjective, psi_fn: Any, compile_missing: bool) -> Any:
    try:
        import numba
        from numba.core.errors import NumbaError

        from hierlm.estimate import line_search_jit
    except Exception:  # noqa: BLE001 - no Numba: SciPy's driver goes on
        return None
    graph = objective.graph
    src = loop_source(len(graph.fgraph.inputs))
    cov = psi_call.DesignCovariance.of(objective.design)
    call = psi_call.PsiCall(objective, cov)
    n = int(call.layout[:, 4].sum())
    probe = (np.zeros(n), np.ones(n), np.ones(n), 0.0, np.inf, n, 0, MAXFUN, 1e-12, 1e-6, 1,
             call.layout, call.log_scale, np.asarray(1.0), *objective._arguments)
    for callee in (NotNeeded(), psi_fn) if compile_missing else (NotNeeded(),):
        try:
            py = wrapper_function(graph, src, "hierlm_descent", NotNeeded(),
                                  env={"np": np, "lsj": line_search_jit, "psi_eval": callee})
            fn = numba.njit(cache=True, nogil=True, error_model="numpy")(py)
            fn(*probe)  # loads (or compiles) the one specialization every model uses
            return fn
        except NumbaError:
            continue
        except Exception:  # noqa: BLE001 - any failure of Numba: SciPy's driver
            return None
    return None


def loop_for(objective: ProfiledObjective) -> Any:
    """The loaded loop of the objective's structure, or None.

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> loop_for(m.objective) is None or callable(loop_for(m.objective))
    True
    """
    return _LOOPS.get(objective.structure)


class CompiledDescent:
    """The fit's L-BFGS-B runs by the loaded loop (a
    :class:`hierlm.estimate.theta_optimizer.Descent`), writing the fit's ``trace`` and
    lowest point with its factors (``best``) as the fit's own criterion does
    (:func:`hierlm.estimate.optimize.optimize_theta`)."""

    def __init__(self, objective: ProfiledObjective, call: psi_call.PsiCall, reml: bool,
                 trace: list[tuple[tuple[float, ...], float]], best: dict[str, Any]) -> None:
        self.objective, self.call, self.reml = objective, call, reml
        self.trace, self.best = trace, best
        self._args: tuple[Any, ...] | None = None
        self._n_theta = 0
        self._kernel = False  # whether _args are the kernel loop's (kernel_loop)
        self._serves: bool | None = None

    def _kernel_loop(self, warm: bool) -> Any:
        """The loop around the hand-written kernel (:mod:`hierlm.estimate.kernel_loop`)
        where it serves this fit: loaded, an unstructured model, and the process warm
        or the objective on its Numba link.  Where it is not loaded yet, a warm process
        starts its load, and the structure's own loads are then not started for this
        fit (``PsiCall.load_later``)."""
        if not warm:
            return None
        if self._serves is None:  # (the layout is the fit's: asked once)
            self._serves = kernel_loop.serves(self.call.layout, self.objective.gram)
        if not self._serves:
            return None
        fn = kernel_loop.loop()
        if fn is None:
            if process_warm():
                self.call.load_later = False
                kernel_loop.load_in_background()
            return None
        self.call.load_later = False
        if not self._kernel:
            self._kernel, self._args = True, None
        return fn

    def __call__(self, search: Any, u0: np.ndarray, units: np.ndarray,
                 options: dict[str, Any]) -> str | None:
        warm = process_warm() or psi_call.on_numba(self.objective)
        fn = self._kernel_loop(warm)
        if fn is None:
            fn = loop_for(self.objective)
            if fn is None:
                _retry(self.objective, self.call)
                return None
            if not warm:
                # loaded for another fit (a profile, the bootstrap) in a process that is
                # not warm (or told not to load: HIERLM_BACKGROUND_LOADS=0): NumPy
                return None
            if psi_call.kinds_missing(self.call):
                return None
        if self._args is None:  # the loop's arguments that are the same in every run
            layout = self.call.layout  # theta's length: the last term's offset and size
            self._n_theta = int(layout[-1, 5] + layout[-1, 2] * (layout[-1, 2] + 1) // 2)
            values = (np.asarray(1.0 if self.reml else 0.0), *self.objective._arguments)
            self._args = (layout, self.call.log_scale,
                          *(kernel_loop.arguments(values) if self._kernel else values))
        n_theta = self._n_theta
        scale = np.ascontiguousarray(search.scale, dtype=np.float64)
        try:
            (status, msg, nev, best_f, best_phi, best_g, improved, L1, L_R, tr_theta,
             tr_f) = fn(np.ascontiguousarray(u0, dtype=np.float64),
                        np.ascontiguousarray(units, dtype=np.float64), scale,
                        float(self.objective.gram.sum_log_w), float(search.best["f"]),
                        n_theta, int(options["maxiter"]), MAXFUN, float(options["ftol"]),
                        float(options["gtol"]), int(options["maxls"]), *self._args)
        except TypeError:  # argument types the kernel loop was not compiled for (its
            return None    # dispatcher compiles nothing): SciPy's driver, before any step
        search.n += int(nev)
        self.trace.extend(zip(map(tuple, tr_theta.tolist()), tr_f.tolist(), strict=True))
        if improved:
            search.best.update(f=float(best_f), x=best_phi, g=best_g)
            if best_f < self.best["f"]:
                self.best.update(f=float(best_f), theta=best_phi * scale, factor=(L1, L_R))
        return message(status, msg)


def message(status: int, msg: int) -> str:
    """L-BFGS-B's message for a status and message code, as SciPy writes it.

    Examples
    --------
    >>> message(4, 401)
    'CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL'
    """
    return f"{status_messages[int(status)]}: {task_messages[int(msg)]}"


psi_call.after_load(build)
