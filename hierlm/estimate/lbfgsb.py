"""L-BFGS-B exactly as ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)`` runs it,
without the wrappers around SciPy's L-BFGS-B routine.

SciPy's ``minimize`` drives its compiled ``setulb`` (the L-BFGS-B algorithm of Byrd,
Lu, Nocedal and Zhu) through a ``ScalarFunction`` object that caches ``f(x)`` and
``g(x)``, copies ``x`` and counts evaluations.  Building that object (it creates a
``namedtuple`` class on every call) and its per-evaluation bookkeeping cost more than
the profiled criterion of a small model: a ``minimize`` call on a 3-parameter quadratic
took 285 us for 3 evaluations, and a small REML fit runs L-BFGS-B two to four times
(descent, face checks).  :func:`minimize_lbfgsb` runs the same loop over the same
``setulb``: the same first evaluation at ``x0``, the same cache (a request at an ``x``
equal to the last one evaluated is answered from it), the same stopping tests on the
number of iterations and evaluations, the same message.  Iterates, evaluations and
result are bitwise those of ``minimize`` (``tests/estimate/test_lbfgsb.py`` compares
the evaluated points one by one).

With ``bounds`` (:func:`run_lbfgsb`) the start is clipped into the box and each
variable gets ``setulb``'s bound code as ``minimize`` gives it (0 none, 1 lower, 2 both,
3 upper), so bounded runs are ``minimize``'s too.

``setulb``'s calling convention is SciPy's own (it changed in SciPy 1.15, when the
routine was rewritten in C), so the loop is used only where it is the one checked here;
elsewhere :func:`minimize_lbfgsb` calls ``scipy.optimize.minimize``.

The loop's test for a new point compares the two vectors directly rather than through
``np.array_equal`` (the same answer for float vectors), and the fit's callers test
finiteness with ``math.isfinite`` and an array's own ``all``: together with that, a
REML/ML fit of a built model (``Model.fit``, CPU, best of 15, median over the 24
reference designs of ``python -m benchmarks.peers``, old and new code alternately
twice, load about 3) took 2.79 / 2.30 -> 2.37 / 2.13 ms, with the same numbers bit
for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import scipy
import scipy.optimize

try:  # SciPy's private driver pieces; absent or different -> scipy.optimize.minimize
    from scipy.linalg.lapack import HAS_ILP64
    from scipy.optimize import _lbfgsb
    from scipy.optimize._lbfgsb_py import status_messages, task_messages

    _VERSION = tuple(int(v) for v in scipy.__version__.split(".")[:2])
    FAST = (1, 15) <= _VERSION < (2, 0) and hasattr(_lbfgsb, "setulb")
except (ImportError, ValueError):  # pragma: no cover - other SciPy versions
    FAST = False

#: The defaults of ``scipy.optimize.minimize(method="L-BFGS-B")`` not set by the caller.
MAXCOR, MAXFUN = 10, 15000

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]
Bounds = Sequence[tuple[Any, Any]]


class LbfgsbRun(NamedTuple):
    """Where a run stopped, as ``minimize``'s ``x``, ``fun`` and ``message``."""

    x: np.ndarray
    fun: float
    message: str


def _scalar(fx: object) -> object:
    """As SciPy's ``_ScalarFunctionWrapper``: a true scalar."""
    if np.isscalar(fx):
        return fx
    dt = getattr(fx, "dtype", np.dtype(np.float64))
    return dt.type(np.asarray(fx).item())


def minimize_lbfgsb(fun: Objective, x0: np.ndarray, maxiter: int, ftol: float, gtol: float,
                    maxls: int) -> str:
    """Minimize ``fun`` (returning value and gradient) from ``x0``, without bounds.

    Parameters
    ----------
    fun : callable
        ``x -> (f, g)``; called with a copy of the point.
    x0 : ndarray
        Start.
    maxiter, ftol, gtol, maxls : int, float, float, int
        ``minimize``'s options of the same names.

    Returns
    -------
    str
        ``minimize``'s ``message`` at the end.

    Examples
    --------
    >>> seen = []
    >>> def quad(x):
    ...     seen.append(x.copy())
    ...     return float((x - 1.0) @ (x - 1.0)), 2.0 * (x - 1.0)
    >>> minimize_lbfgsb(quad, np.zeros(3), 100, 1e-12, 1e-8, 20)
    'CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL'
    >>> np.round(seen[-1], 6).tolist()
    [1.0, 1.0, 1.0]
    """
    return run_lbfgsb(fun, x0, maxiter, ftol, gtol, maxls).message


def run_lbfgsb(fun: Objective, x0: np.ndarray, maxiter: int, ftol: float, gtol: float,
               maxls: int, bounds: Bounds | None = None) -> LbfgsbRun:
    """Minimize ``fun`` from ``x0`` on the box ``bounds`` (``None``: no bound).

    The end point, the value last evaluated and the message, as
    ``scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds)``
    returns them.

    Examples
    --------
    >>> quad = lambda x: (float((x - 1.0) @ (x - 1.0)), 2.0 * (x - 1.0))
    >>> r = run_lbfgsb(quad, np.zeros(2), 100, 1e-12, 1e-8, 20, [(None, 0.5), (None, None)])
    >>> np.round(r.x, 6).tolist(), round(r.fun, 6)
    ([0.5, 1.0], 0.25)
    """
    options = {"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxls": maxls}
    if not FAST:
        res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                      options=options)
        return LbfgsbRun(np.asarray(res.x), float(res.fun), str(res.message))
    if not maxls > 0:
        raise ValueError("maxls must be positive.")
    x = np.array(np.asarray(x0).ravel(), dtype=np.float64)
    n, m = x.size, MAXCOR
    int_dtype = np.int64 if HAS_ILP64 else np.int32
    nbd = np.zeros(n, dtype=int_dtype)  # no bounds
    low, upp = np.zeros(n), np.zeros(n)
    if bounds is not None:
        if len(bounds) != n:
            raise ValueError("length of x0 != length of bounds")
        lb = np.array([float(lo) if lo is not None else -np.inf for lo, _ in bounds])
        ub = np.array([float(hi) if hi is not None else np.inf for _, hi in bounds])
        if np.any(lb > ub):
            raise ValueError("one of the lower bounds is greater than an upper bound")
        x = np.clip(x, lb, ub)
        has_lo, has_hi = ~np.isinf(lb), ~np.isinf(ub)
        low[has_lo], upp[has_hi] = lb[has_lo], ub[has_hi]
        # minimize's codes: 1 lower only, 2 both, 3 upper only
        nbd[:] = np.where(has_lo, np.where(has_hi, 2, 1), np.where(has_hi, 3, 0))
    # the first evaluation at x0, as ScalarFunction's constructor makes it
    last = x.copy()
    f_out, g_out = fun(last.copy())
    f, g, nfev = _scalar(f_out), np.atleast_1d(g_out), 1
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, np.float64)
    iwa = np.zeros(3 * n, dtype=int_dtype)
    task, ln_task = np.zeros(2, dtype=int_dtype), np.zeros(2, dtype=int_dtype)
    lsave, isave = np.zeros(4, dtype=int_dtype), np.zeros(44, dtype=int_dtype)
    dsave = np.zeros(29, dtype=np.float64)
    factr = ftol / np.finfo(float).eps
    f_arg: object = np.array(0.0, dtype=np.float64)  # minimize's first call passes this
    g_arg = np.zeros((n,), dtype=np.float64)
    iterations = 0
    while True:
        g_arg = g_arg.astype(np.float64)
        _lbfgsb.setulb(m, x, low, upp, nbd, f_arg, g_arg, factr, gtol, wa, iwa, task, lsave,
                       isave, dsave, maxls, ln_task)
        if task[0] == 3:  # FG: the value and gradient at x (cached at the last point)
            # np.array_equal's semantics for two float vectors, without its checks
            if not (x.shape == last.shape and bool((x == last).all())):
                last = x.astype(np.float64)
                f_out, g_out = fun(last.copy())
                f, g, nfev = _scalar(f_out), np.atleast_1d(g_out), nfev + 1
            f_arg, g_arg = f, g
        elif task[0] == 1:  # NEW_X: an iteration done
            iterations += 1
            if iterations >= maxiter:
                task[0], task[1] = 5, 504
            elif nfev > MAXFUN:
                task[0], task[1] = 5, 502
        else:
            break
    message = f"{status_messages[int(task[0])]}: {task_messages[int(task[1])]}"
    return LbfgsbRun(x, float(f), message)  # type: ignore[arg-type]
