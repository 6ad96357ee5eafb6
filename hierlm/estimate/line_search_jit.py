"""Moré and Thuente's line search (MINPACK-2's ``dcsrch`` and ``dcstep``) for Numba.

The line search of L-BFGS-B (:mod:`hierlm.estimate.lbfgsb`): along a descent direction
with ``phi(a) = f(x + a d)``, find a step ``a`` with the sufficient decrease
``phi(a) <= phi(0) + ftol a phi'(0)`` and the curvature condition
``|phi'(a)| <= gtol |phi'(0)|``, keeping an interval ``[stx, sty]`` known to contain
such a step and choosing trial steps by safeguarded cubic and quadratic interpolation
(``dcstep``).  These are the steps of SciPy's Python port
(``scipy.optimize._dcsrch``) and of the C translation inside SciPy's L-BFGS-B, in the
same order of operations, written as plain functions of floats and one state array so
that :mod:`hierlm.estimate.descent_loop` calls them from compiled code (tested step by
step against ``scipy.optimize._dcsrch.DCSRCH`` in
``tests/estimate/test_line_search_jit.py``).

The state array holds ``stage, brackt, finit, ginit, gtest, width, width1, stx, fx,
gx, sty, fy, gy, stmin, stmax`` (:data:`STATE_SIZE` floats).  Numba is imported here;
only the compiled descent's loader imports this module.
"""

from __future__ import annotations

import math

import numba
import numpy as np

STATE_SIZE = 15
#: What :func:`dcsrch_iterate` asks for: evaluate at the new step, or stop there.
FG, CONVERGENCE, WARN_ROUND, WARN_XTOL, WARN_STPMAX, WARN_STPMIN = 0, 1, 2, 3, 4, 5
P5, P66, XTRAPL, XTRAPU = 0.5, 0.66, 1.1, 4.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dcsrch_start(stp: float, f: float, g: float, ftol: float, stpmin: float,
                 stpmax: float, state: np.ndarray) -> None:
    """``dcsrch`` with ``task = 'START'``: initialize ``state`` (``f``, ``g`` at step 0).

    Examples
    --------
    >>> state = np.zeros(STATE_SIZE)
    >>> dcsrch_start(1.0, 2.0, -1.0, 1e-3, 0.0, 1e10, state)
    >>> float(state[14])
    5.0
    """
    state[0] = 1.0
    state[1] = 0.0
    state[2] = f
    state[3] = g
    state[4] = ftol * g
    state[5] = stpmax - stpmin
    state[6] = state[5] / P5
    state[7] = 0.0
    state[8] = f
    state[9] = g
    state[10] = 0.0
    state[11] = f
    state[12] = g
    state[13] = 0.0
    state[14] = stp + XTRAPU * stp


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dcstep(stx: float, fx: float, dx: float, sty: float, fy: float, dy: float,
           stp: float, fp: float, dp: float, brackt: bool, stpmin: float, stpmax: float
           ) -> tuple[float, float, float, float, float, float, float, bool]:
    """One safeguarded step (MINPACK-2's ``dcstep``): the new ``stx, fx, dx, sty, fy,
    dy, stp, brackt``.

    Examples
    --------
    >>> out = dcstep(0.0, 1.0, -1.0, 0.0, 1.0, -1.0, 1.0, 2.0, 1.0, False, 0.0, 5.0)
    >>> round(out[6], 6), out[7]  # as scipy.optimize._dcsrch.dcstep
    (0.13962, True)
    """
    sgn_dp = 0.0 if dp == 0.0 else math.copysign(1.0, dp)
    sgn_dx = 0.0 if dx == 0.0 else math.copysign(1.0, dx)
    sgnd = sgn_dp * sgn_dx
    if fp > fx:
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp < stx:
            gamma = -gamma
        p = (gamma - dx) + theta
        q = ((gamma - dx) + gamma) + dp
        r = p / q
        stpc = stx + r * (stp - stx)
        stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
        if abs(stpc - stx) <= abs(stpq - stx):
            stpf = stpc
        else:
            stpf = stpc + (stpq - stpc) / 2.0
        brackt = True
    elif sgnd < 0.0:
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = ((gamma - dp) + gamma) + dx
        r = p / q
        stpc = stp + r * (stx - stp)
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
        brackt = True
    elif abs(dp) < abs(dx):
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * math.sqrt(max(0.0, (theta / s) ** 2 - (dx / s) * (dp / s)))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = (gamma + (dx - dp)) + gamma
        r = p / q
        if r < 0.0 and gamma != 0.0:
            stpc = stp + r * (stx - stp)
        elif stp > stx:
            stpc = stpmax
        else:
            stpc = stpmin
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if brackt:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            if stp > stx:
                stpf = min(stp + P66 * (sty - stp), stpf)
            else:
                stpf = max(stp + P66 * (sty - stp), stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = min(max(stpf, stpmin), stpmax)
    else:
        if brackt:
            theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp
            s = max(abs(theta), abs(dy), abs(dp))
            gamma = s * math.sqrt((theta / s) ** 2 - (dy / s) * (dp / s))
            if stp > sty:
                gamma = -gamma
            p = (gamma - dp) + theta
            q = ((gamma - dp) + gamma) + dy
            r = p / q
            stpc = stp + r * (sty - stp)
            stpf = stpc
        elif stp > stx:
            stpf = stpmax
        else:
            stpf = stpmin
    if fp > fx:
        sty = stp
        fy = fp
        dy = dp
    else:
        if sgnd < 0.0:
            sty = stx
            fy = fx
            dy = dx
        stx = stp
        fx = fp
        dx = dp
    return stx, fx, dx, sty, fy, dy, stpf, brackt


@numba.njit(cache=True, nogil=True, error_model="numpy")
def dcsrch_iterate(stp: float, f: float, g: float, gtol: float, xtol: float,
                   stpmin: float, stpmax: float, state: np.ndarray) -> tuple[float, int]:
    """``dcsrch`` after the start, given ``f`` and ``g`` at ``stp``: the next step and
    :data:`FG` (evaluate there), :data:`CONVERGENCE` or a warning code (stop at ``stp``).

    Examples
    --------
    >>> state = np.zeros(STATE_SIZE)
    >>> dcsrch_start(1.0, 1.0, -2.0, 1e-3, 0.0, 1e10, state)
    >>> dcsrch_iterate(1.0, 0.0, 0.0, 0.9, 0.1, 0.0, 1e10, state)
    (1.0, 1)
    """
    finit, ginit, gtest = state[2], state[3], state[4]
    ftest = finit + stp * gtest
    if state[0] == 1.0 and f <= ftest and g >= 0.0:
        state[0] = 2.0
    brackt = state[1] != 0.0
    stmin, stmax = state[13], state[14]
    task = FG
    if brackt and (stp <= stmin or stp >= stmax):
        task = WARN_ROUND
    if brackt and stmax - stmin <= xtol * stmax:
        task = WARN_XTOL
    if stp == stpmax and f <= ftest and g <= gtest:
        task = WARN_STPMAX
    if stp == stpmin and (f > ftest or g >= gtest):
        task = WARN_STPMIN
    if f <= ftest and abs(g) <= gtol * -ginit:
        task = CONVERGENCE
    if task != FG:
        return stp, task
    stx, fx, gx, sty, fy, gy = state[7], state[8], state[9], state[10], state[11], state[12]
    if state[0] == 1.0 and f <= fx and f > ftest:
        fm = f - stp * gtest
        fxm = fx - stx * gtest
        fym = fy - sty * gtest
        gm = g - gtest
        gxm = gx - gtest
        gym = gy - gtest
        stx, fxm, gxm, sty, fym, gym, stp, brackt = dcstep(
            stx, fxm, gxm, sty, fym, gym, stp, fm, gm, brackt, stmin, stmax)
        fx = fxm + stx * gtest
        fy = fym + sty * gtest
        gx = gxm + gtest
        gy = gym + gtest
    else:
        stx, fx, gx, sty, fy, gy, stp, brackt = dcstep(
            stx, fx, gx, sty, fy, gy, stp, f, g, brackt, stmin, stmax)
    if brackt:
        if abs(sty - stx) >= P66 * state[6]:
            stp = stx + P5 * (sty - stx)
        state[6] = state[5]
        state[5] = abs(sty - stx)
        stmin = min(stx, sty)
        stmax = max(stx, sty)
    else:
        stmin = stp + XTRAPL * (stp - stx)
        stmax = stp + XTRAPU * (stp - stx)
    stp = min(max(stp, stpmin), stpmax)
    if (brackt and (stp <= stmin or stp >= stmax)) or (
            brackt and stmax - stmin <= xtol * stmax):
        stp = stx
    state[1] = 1.0 if brackt else 0.0
    state[7], state[8], state[9] = stx, fx, gx
    state[10], state[11], state[12] = sty, fy, gy
    state[13], state[14] = stmin, stmax
    return stp, FG
