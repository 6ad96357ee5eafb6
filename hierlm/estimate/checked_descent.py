"""The fit's descent with the second-order check (:func:`minimize_theta`'s
``second_order`` option).

The profiled criterion depends on each template ``T_i`` only through ``T_i T_i'``,
unchanged when a column of ``T_i`` changes sign, so L-BFGS-B runs *unconstrained* on
``phi = theta / scale`` (in the units ``phi / units``), and the end point is mapped
back to lme4's half-space (template diagonals >= 0) by flipping the columns with a
negative diagonal.  With lme4's bounds a line search that lands on ``theta_jj = 0``
stops there for good: the criterion is even in ``theta_jj`` when the rest of column
``j`` is zero, so its derivative vanishes on the bound even where the bound is a
maximum along it.  Three checks make the end point a local minimum of the bounded
problem (measured in :mod:`hierlm.estimate.optimize`):

* first order: ``max_j |d d / d phi_j| max(1, |phi_j|) <= check_tol``, or else lme4's
  own rule (gradient scaled by the Cholesky factor of a finite-difference Hessian,
  below 2e-3; :mod:`hierlm.estimate.convergence`); a point that fails restarts
  L-BFGS-B once, then Powell on the canonical half-space, then L-BFGS-B again;
* second order at zero diagonals (:func:`hierlm.estimate.boundary.escape_boundary`):
  a lower point at ``phi_j = h`` for a near-zero diagonal restarts the descent there
  (at most ``MAX_ESCAPES`` times); a point that still fails is not converged;
* with ``face_check``, one more descent from each term's covariance with its smallest
  eigenvalue set to 0 (a second, singular local optimum); the lowest end point wins.
  These descents stay on the face (the criterion is even in the zeroed diagonal
  there) and on the reference fits end 0.6 to 280 units of the criterion above the
  interior optimum, which they never replace.  So they stop at L-BFGS-B's ``ftol`` of
  ``FACE_FTOL`` instead of 1e-12 (a step that lowers the criterion by less than
  ``FACE_FTOL |f|``: 0.02 units for sleepstudy, 0.05 for chickweight, well below the
  smallest gap of 0.6); one that passes below the best point goes on from there at full
  precision.  With 1e-8 the estimates were unchanged (bit for bit on the 24 reference
  fits of ``benchmarks.peers``), with 481 instead of 509 evaluations in all; with 1e-5,
  471 -> 426 evaluations there, the same criteria to 1e-10 and the same theta bit for
  bit; on the 400 fits of ``tests/estimate/test_optimum.py`` 9,845 -> 9,549
  evaluations, 396 fits bit for bit the same, the other four within 7.1e-11 of the
  criterion (one of them lower).

Diagonals within ``ZERO_DIAG`` of 0 are reported as exact zeros where the criterion
does not tell them apart (within ``ESCAPE_TOL`` relative).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.optimize

from hierlm.estimate.boundary import (
    ESCAPE_TOL,
    MAX_ESCAPES,
    ZERO_DIAG,
    escape_boundary,
    face_starts,
)
from hierlm.estimate.convergence import LME4_TOL, scaled_gradient
from hierlm.estimate.lbfgsb import run_lbfgsb

#: L-BFGS-B's ftol for the face descents until they pass below the best point so far.
FACE_FTOL = 1e-5

State = tuple[np.ndarray, float, np.ndarray, bool]
#: ``(theta, criterion, gradient, converged, method, messages, phases)``.
Outcome = tuple[np.ndarray, float, np.ndarray, bool, str, tuple[str, ...],
                tuple[tuple[str, int], ...]]


def checked_descent(search: Any, space: Any, start: np.ndarray, opts: Any) -> Outcome:
    """The fit's search from ``start`` (theta); see the module docstring.

    ``search``, ``space`` and ``opts`` are :mod:`hierlm.estimate.theta_optimizer`'s
    ``Search``, ``ParameterSpace`` and ``SearchOptions`` (that module calls this one).
    """
    scale, fun, best = space.scale, search.fun, search.best
    units = np.ones(len(scale)) if opts.units is None else opts.units
    diag = space.diagonals
    x0 = start / scale
    best["x"] = x0.copy()
    check_tol = float(opts.check_tol if opts.check_tol is not None else np.inf)

    def check() -> State:
        phi = best["x"]
        theta = phi * scale
        if "g" in best:
            f, g = best["f"], best["g"]  # already evaluated there
        else:
            f, g = search.criterion(theta)
        crit = np.abs(g * scale) * np.maximum(1.0, np.abs(phi))
        # (math.isfinite and the array's own max: the same test without NumPy's wrappers)
        ok = bool(math.isfinite(f) and crit.max(initial=0.0) <= check_tol)
        if not ok and np.isfinite(f):
            # Large data make the criterion steep: judge the gradient against the
            # curvature, as lme4 does, before restarting.
            sg = scaled_gradient(lambda th: fun(th / scale)[1] / scale, theta, g,
                                 np.full_like(space.lower, -np.inf))
            ok = sg is not None and sg <= LME4_TOL
        return theta, float(f), g, ok

    def fun_units(u: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = fun(u * units)
        return f, g * units

    def run_lbfgs(x_init: np.ndarray, ftol: float | None = None) -> str:
        lbfgs = opts.lbfgsb() if ftol is None else {**opts.lbfgsb(), "ftol": ftol}
        if opts.descent is not None:  # the same runs, compiled (descent_loop)
            message = opts.descent(search, x_init / units, units, lbfgs)
            if message is not None:
                return message
        return run_lbfgsb(fun_units, x_init / units, **lbfgs).message

    def descend(x_init: np.ndarray, ftol: float | None = None
                ) -> tuple[str, list[str], State]:
        method, messages = "L-BFGS-B", [run_lbfgs(x_init, ftol)]
        state = check()
        if not state[3]:
            method = "L-BFGS-B+restart"
            messages.append(run_lbfgs(best["x"]))
            state = check()
        if not state[3]:
            # Powell on the canonical half-space (diagonals >= 0, where it can be
            # bounded); T T' is unchanged by the sign flips.
            bounds = [(lo if np.isfinite(lo) else None, None) for lo in space.lower]
            pres = scipy.optimize.minimize(lambda x: fun(x)[0],
                                           space.canonical_signs(best["x"])[0],
                                           method="Powell", bounds=bounds,
                                           options={"xtol": 1e-10, "ftol": 1e-14})
            method = "L-BFGS-B+Powell"
            messages += [str(pres.message), run_lbfgs(best["x"])]
            state = check()
        return method, messages, state

    def polish(method: str, messages: list[str], state: State
               ) -> tuple[str, list[str], State]:
        """Escape saddles at zero template diagonals until none is left (or give up)."""
        for _ in range(MAX_ESCAPES):
            escaped = escape_boundary(lambda x: fun(x)[0], best["x"], float(best["f"]), diag)
            if escaped is None:
                return method, messages, state
            m2, msg2, state = descend(escaped)
            method = f"{method}+escape+{m2}"
            messages = [*messages, "escaped a saddle", *msg2]
        lower_point = escape_boundary(lambda x: fun(x)[0], best["x"], float(best["f"]), diag)
        if lower_point is not None:
            state = (*state[:3], False)
            moved = [space.names[j] for j in diag if lower_point[j] != best["x"][j]]
            messages = [*messages, f"the criterion still decreases from {', '.join(moved)} "
                                   f"= 0 into the interior (second-order check failed)"]
        return method, messages, state

    method, messages, state = polish(*descend(x0))
    phases = [("descent", search.n)]
    if state[3] and opts.face_check and space.design is not None:
        # Small samples can have a second, singular local optimum besides an interior
        # one: descend once from each term's rank-reduced covariance and keep the lower.
        face_ftol = max(FACE_FTOL, float(opts.ftol))
        for face in face_starts(space.design, best["x"] * scale):
            f_before = best["f"]
            # to the looser FACE_FTOL first: the end point counts only if it is lower
            m2, msg2, st2 = polish(*descend(face / scale, face_ftol))
            if best["f"] < f_before:
                # it is: on from there to full precision
                m3, msg3, st2 = polish(*descend(best["x"]))
                m2, msg2 = f"{m2}+{m3}", [*msg2, *msg3]
                method, messages, state = f"{method}+face+{m2}", [*messages, *msg2], st2
            phases.append(("face", search.n - sum(n for _, n in phases)))
    return _finish(search, space, method, messages, state, phases)


def _finish(search: Any, space: Any, method: str, messages: list[str], state: State,
            phases: list[tuple[str, int]]) -> Outcome:
    """Exact zeros for near-zero diagonals the criterion does not tell from 0; signs."""
    scale, best, diag = space.scale, search.best, space.diagonals
    _, f, g, ok = state
    near = diag[(np.abs(best["x"][diag]) < ZERO_DIAG) & (best["x"][diag] != 0.0)]
    if near.size:
        snapped = best["x"].copy()
        snapped[near] = 0.0
        f0, g0 = search.fun(snapped)
        if f0 <= f + ESCAPE_TOL * max(1.0, abs(f)):
            best.update(x=snapped, f=f0, g=g0 / scale)
            f, g = f0, g0 / scale
        last, n_last = phases[-1]
        phases[-1] = (last, n_last + search.n - sum(n for _, n in phases))
    phi, flipped = space.canonical_signs(best["x"])
    g_out: Any = np.where(flipped, -g, g)
    return phi * scale, f, g_out, ok, method, tuple(messages), tuple(phases)
