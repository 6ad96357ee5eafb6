"""The source of the fit's compiled descent loop (:mod:`hierlm.estimate.descent_loop`).

L-BFGS without bounds with L-BFGS-B's steps and stopping rules, as that module's
docstring states, written as Python source for Numba: the loop is compiled around the
objective's graph by :func:`hierlm.objective.graph_cache.wrapper_function`, so its
arguments end with the graph's inputs (``{args}``), and each evaluation (:data:`_EVAL`,
inlined twice) calls :mod:`hierlm.estimate.psi_call`'s compiled function
(``psi_eval``).  ``lsj`` is :mod:`hierlm.estimate.line_search_jit`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hierlm.estimate import psi_call
from hierlm.estimate.lbfgsb import MAXCOR

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

# L-BFGS-B's projected gradient norm without bounds (projgr): max |g_i|, NaN if any is
_NORM = """
sbgnrm = 0.0
for i in range(n):
    if g[i] != g[i]:
        sbgnrm = g[i]
        break
    sbgnrm = max(sbgnrm, abs(g[i]))
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
{norm1}
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
{norm2}
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
                        eval1=_indent(body, 4), eval3=_indent(body, 20),
                        norm1=_indent(_NORM, 4), norm2=_indent(_NORM, 8))
