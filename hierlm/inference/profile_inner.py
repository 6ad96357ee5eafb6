"""The inner minimizations of a profile: the deviance with one parameter held fixed.

Each is a smooth problem in a few variables, minimized by the fit's optimizer
(:func:`hierlm.estimate.theta_optimizer.minimize_theta`: bounded L-BFGS-B) on central
finite differences of the deviance (one-sided at a bound), or on its exact gradient
where the caller has one (a fixed effect's, :mod:`hierlm.inference.profile_beta`),
restarted once from its own solution.  A profile trace is only as good as these
minima: a point where the inner minimization stops early raises ``zeta`` and moves the
interval endpoint inwards.  So, as in the fit, several starts are followed to the end and the lowest
minimum wins (:func:`minimize_starts`).

For sigma the other parameters are free on lme4's Cholesky scale, theta, which is
unconstrained (``d(theta, sigma)`` depends on theta only through ``Lambda Lambda'``,
unchanged when a template column changes sign): on the sd/cor scale the minimum
often lies where an SD is 0 and the correlation is undefined, or at a correlation of
+/-1 reached from the other side of its interval, where a bounded descent stalls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hierlm.estimate.theta_optimizer import ParameterSpace, SearchOptions, minimize_theta

Bounds = list[tuple[Any, Any]]
#: The inner searches: bounded L-BFGS-B, tight stops, scipy's default line search,
#: another run from the end while it lowers the deviance (three at most); no
#: convergence rule (the lowest point found is the profile's value).
INNER_SEARCH = SearchOptions(maxiter=2000, ftol=1e-14, gtol=1e-9, maxls=20, check_tol=None,
                             bounded=True, runs=3)
ValueGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]


def clip(x0: np.ndarray, bounds: Bounds) -> np.ndarray:
    """``x0`` moved into the box ``bounds`` (``None`` is no bound).

    Examples
    --------
    >>> clip(np.array([-1.0, 5.0]), [(0.0, None), (None, 2.0)]).tolist()
    [0.0, 2.0]
    """
    return np.array([min(max(v, lo if lo is not None else -np.inf),
                         hi if hi is not None else np.inf)
                     for v, (lo, hi) in zip(x0, bounds, strict=True)])


def minimize_box(fn: Callable[[np.ndarray], float], x0: np.ndarray,
                 bounds: Bounds, value_grad: ValueGrad | None = None
                 ) -> tuple[float, np.ndarray]:
    """Minimize ``fn`` on the box from ``x0``: the minimum and where it is.

    ``value_grad``, where given, returns ``fn`` and its exact gradient together (used
    instead of central differences).

    Examples
    --------
    >>> f, x = minimize_box(lambda x: float((x[0] - 1) ** 2 + x[1] ** 2),
    ...                     np.array([3.0, 3.0]), [(None, None), (0.5, None)])
    >>> round(f, 6), x.round(4).tolist()
    (0.25, [1.0, 0.5])
    """
    if len(x0) == 0:
        return fn(np.zeros(0)), np.zeros(0)
    x0 = clip(x0, bounds)
    lo = np.array([b[0] if b[0] is not None else -np.inf for b in bounds])
    hi = np.array([b[1] if b[1] is not None else np.inf for b in bounds])

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        # central differences of the (cheap, smooth) inner deviance, one-sided at a
        # bound; scipy's own finite differences cost more in Python than fn itself
        f0 = fn(x)
        g = np.empty_like(x)
        for i in range(x.size):
            h = 1e-6 * max(1.0, abs(x[i]))
            up, dn = x.copy(), x.copy()
            up[i] = min(x[i] + h, hi[i])
            dn[i] = max(x[i] - h, lo[i])
            g[i] = (fn(up) - fn(dn)) / (up[i] - dn[i])
        return f0, g

    # restarts from the last solution polish it (at most three runs)
    res = minimize_theta(fg if value_grad is None else value_grad,
                         ParameterSpace.box(bounds), x0, INNER_SEARCH)
    return float(res.criterion), res.theta


def minimize_starts(fn: Callable[[np.ndarray], float], starts: Sequence[np.ndarray],
                    bounds: Bounds, follow_all: bool = False,
                    value_grad: ValueGrad | None = None) -> tuple[float, np.ndarray]:
    """The lowest of the minima from ``starts`` (duplicates skipped).

    The first start is always followed; a later one only where ``fn`` is already
    lower there than the best minimum so far, unless ``follow_all``.  ``value_grad``:
    as in :func:`minimize_box`.

    Examples
    --------
    >>> fn = lambda x: float((x[0] ** 2 - 1) ** 2 + 0.1 * x[0])  # minima near -1 and 1
    >>> f, x = minimize_starts(fn, [np.array([0.9]), np.array([-0.9])], [(None, None)],
    ...                        follow_all=True)
    >>> round(float(x[0]), 3)
    -1.012
    """
    dmin, x = minimize_box(fn, starts[0], bounds, value_grad)
    seen = [clip(starts[0], bounds)]
    for x0 in starts[1:]:
        x0 = clip(x0, bounds)
        if any(np.allclose(x0, y, rtol=1e-8, atol=1e-12) for y in seen):
            continue
        seen.append(x0)
        if follow_all or fn(x0) < dmin:
            d1, x1 = minimize_box(fn, x0, bounds, value_grad)
            if d1 < dmin:
                dmin, x = d1, x1
    return dmin, x
