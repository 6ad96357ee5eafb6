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
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hierlm.estimate import psi_call
from hierlm.estimate.lbfgsb import MAXCOR, MAXFUN
from hierlm.objective.graph_cache import NotNeeded, wrapper_function
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

_EVAL = """
phi_e = xe * units
th_e = phi_e * scale
out = psi_eval(th_e, layout, log_scale, {args})
f_e = out[1] - sum_log_w
if nev == cap:
    cap = 2 * cap
    t2 = np.empty((cap, n_theta))
    t2[:nev] = tr_theta[:nev]
    tr_theta = t2
    f2 = np.empty(cap)
    f2[:nev] = tr_f[:nev]
    tr_f = f2
tr_theta[nev, :] = out[3]
tr_f[nev] = f_e
nev += 1
if out[0] == 0:
    fx = f_e
    gx = (out[2] * scale) * units
    if f_e < best_f:
        best_f = f_e
        best_phi = phi_e.copy()
        best_g = out[2].copy()
        best_L1 = out[4].copy()
        best_LR = out[5].copy()
        improved = True
else:
    fx = 1e300
    gx = np.zeros(n)
"""

_LOOP = """
# {digest}
def hierlm_descent(u0, units, scale, sum_log_w, best_f, n_theta, maxiter, maxfun, ftol,
                   gtol, maxls, layout, log_scale, {args}):
    n = u0.shape[0]
    m = {maxcor}
    epsmch = 2.220446049250313e-16
    tol = (ftol / epsmch) * epsmch
    cap = 32
    tr_theta = np.empty((cap, n_theta))
    tr_f = np.empty(cap)
    nev = 0
    improved = False
    best_phi = np.zeros(n)
    best_g = np.zeros(n)
    best_L1 = np.zeros((0, 0, 0))
    best_LR = np.zeros((0, 0))
    state = np.zeros(15)
    S = np.zeros((m, n))
    Y = np.zeros((m, n))
    rho = np.zeros(m)
    alpha = np.zeros(m)
    col = 0
    head = 0
    theta_h = 1.0
    iters = 0
    status = 0
    msg = 0
    x = u0.copy()
    xe = x
{eval1}
    f = fx
    g = gx
    last = x.copy()
    nfev = 1
    sbgnrm = 0.0
    for i in range(n):
        if g[i] != g[i]:
            sbgnrm = g[i]
            break
        sbgnrm = max(sbgnrm, abs(g[i]))
    if sbgnrm <= gtol:
        return (4, 401, nev, best_f, best_phi, best_g, improved, best_L1, best_LR,
                tr_theta[:nev], tr_f[:nev])
    while True:
        if col == 0:
            z = x + (-g) / theta_h
        else:
            q = g.copy()
            for k in range(col):
                j = (head + col - 1 - k) % m
                a = rho[j] * np.dot(S[j], q)
                alpha[j] = a
                q -= a * Y[j]
            r = q / theta_h
            for k in range(col):
                j = (head + k) % m
                b = rho[j] * np.dot(Y[j], r)
                r += S[j] * (alpha[j] - b)
            z = x - r
        d = z - x
        dnorm = np.sqrt(np.dot(d, d))
        stpmx = 1e10
        stp = min(1.0 / dnorm, stpmx) if iters == 0 else 1.0
        t_save = x.copy()
        r_save = g.copy()
        fold = f
        ifun = 0
        gd = np.dot(g, d)
        gdold = gd
        failed = gd >= 0.0
        if not failed:
            lsj.dcsrch_start(stp, f, gd, 1e-3, 0.0, stpmx, state)
            while True:
                ifun += 1
                iback = ifun - 1
                if stp == 1.0:
                    x = z.copy()
                else:
                    x = stp * d + t_save
                if iback >= maxls:
                    failed = True
                    break
                same = True
                for i in range(n):
                    if x[i] != last[i]:
                        same = False
                        break
                if not same:
                    xe = x
{eval3}
                    f = fx
                    g = gx
                    last = x.copy()
                    nfev += 1
                gd = np.dot(g, d)
                stp, task = lsj.dcsrch_iterate(stp, f, gd, 0.9, 0.1, 0.0, stpmx, state)
                if task != 0:
                    break
        if failed:
            x = t_save
            g = r_save
            f = fold
            if col == 0:
                status = 8
                msg = 0
                break
            col = 0
            head = 0
            theta_h = 1.0
            continue
        iters += 1
        sbgnrm = 0.0
        for i in range(n):
            if g[i] != g[i]:
                sbgnrm = g[i]
                break
            sbgnrm = max(sbgnrm, abs(g[i]))
        if iters >= maxiter:
            status = 5
            msg = 504
            break
        if nfev > maxfun:
            status = 5
            msg = 502
            break
        if sbgnrm <= gtol:
            status = 4
            msg = 401
            break
        ddum = max(max(abs(fold), abs(f)), 1.0)
        if fold - f <= tol * ddum:
            status = 4
            msg = 402
            break
        yv = g - r_save
        rr = np.dot(yv, yv)
        if stp == 1.0:
            dr = gd - gdold
            ddum = -gdold
            sv = d
        else:
            dr = (gd - gdold) * stp
            sv = stp * d
            ddum = -gdold * stp
        if dr <= epsmch * ddum:
            continue
        if col < m:
            j = (head + col) % m
            col += 1
        else:
            j = head
            head = (head + 1) % m
        S[j] = sv
        Y[j] = yv
        rho[j] = 1.0 / dr
        theta_h = rr / dr
    return (status, msg, nev, best_f, best_phi, best_g, improved, best_L1, best_LR,
            tr_theta[:nev], tr_f[:nev])
"""


def _indent(src: str, spaces: int) -> str:
    pad = " " * spaces
    return "\n".join(pad + line if line else line for line in src.strip("\n").split("\n"))


def loop_source(n_args: int) -> str:
    """The loop's source for a graph of ``n_args`` inputs (theta first)."""
    args = ", ".join(f"a{i}" for i in range(1, n_args))
    body = _EVAL.format(args=args)
    # the loop inlines the evaluation's and the line search's machine code: a change to
    # either must not run stale code from Numba's cache
    search_src = Path(__file__).with_name("line_search_jit.py").read_bytes()
    digest = hashlib.sha256((psi_call.source_digest() + _EVAL).encode()
                            + search_src).hexdigest()[:16]
    return _LOOP.format(args=args, maxcor=MAXCOR, digest=digest,
                        eval1=_indent(body, 4), eval3=_indent(body, 20))


def build(objective: ProfiledObjective, psi_fn: Any, compile_missing: bool = True) -> Any:
    """Load from Numba's cache (or, with ``compile_missing``, compile against
    ``psi_fn``) the loop of the objective's structure and keep it for
    :func:`loop_for`; None where it is not there.  Called once ``psi_fn`` is loaded
    (:func:`hierlm.estimate.psi_call.after_load`)."""
    key = objective.structure
    if _LOOPS.get(key) is not None:
        return _LOOPS[key]
    fn = None if psi_fn is None else _compile(objective, psi_fn, compile_missing)
    if fn is not None or compile_missing:
        with _LOCK:
            _LOOPS[key] = fn
    return fn


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

    def __call__(self, search: Any, u0: np.ndarray, units: np.ndarray,
                 options: dict[str, Any]) -> str | None:
        fn = loop_for(self.objective)
        if fn is None or psi_call.kinds_missing(self.call):
            return None
        if self._args is None:
            self._args = (self.call.layout, self.call.log_scale,
                          np.asarray(1.0 if self.reml else 0.0), *self.objective._arguments)
        scale = np.ascontiguousarray(search.scale, dtype=np.float64)
        n_theta = int(self.call.layout[-1, 5] + self.call.layout[-1, 2]
                      * (self.call.layout[-1, 2] + 1) // 2)
        (status, msg, nev, best_f, best_phi, best_g, improved, L1, L_R, tr_theta,
         tr_f) = fn(np.ascontiguousarray(u0, dtype=np.float64),
                    np.ascontiguousarray(units, dtype=np.float64), scale,
                    float(self.objective.gram.sum_log_w), float(search.best["f"]), n_theta,
                    int(options["maxiter"]), MAXFUN, float(options["ftol"]),
                    float(options["gtol"]), int(options["maxls"]), *self._args)
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
