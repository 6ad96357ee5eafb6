"""lme4's convergence check: the gradient scaled by the Hessian's Cholesky factor.

At the optimum ``theta*`` of a smooth criterion with Hessian ``H = R'R``, the scaled
gradient ``R'^{-1} g`` measures the remaining decrease: ``||R'^{-1} g||^2 / 2`` is the
gain a Newton step would still make.  lme4 (``checkConv``) warns when its largest
component exceeds 2e-3.  ``H`` is taken by forward differences of the exact autodiff
gradient (one evaluation per free parameter: on large models each costs seconds),
over the parameters that are not at a bound.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LME4_TOL = 2e-3


def scaled_gradient(grad: Callable[[np.ndarray], np.ndarray], theta: np.ndarray,
                    g: np.ndarray, lower: np.ndarray, step: float = 1e-4) -> float | None:
    """Largest component of ``R'^{-1} g`` over the free parameters (``H = R'R``).

    Parameters
    ----------
    grad : callable
        Exact gradient of the criterion.
    theta, g : ndarray
        The point and the gradient there.
    lower : ndarray
        Lower bounds; parameters at their bound are left out.
    step : float
        Relative finite-difference step for the Hessian.

    Returns
    -------
    float or None
        None when the Hessian of the free parameters is not positive definite.

    Examples
    --------
    >>> f_grad = lambda x: np.array([2.0 * x[0], 8.0 * x[1]])   # f = x0^2 + 4 x1^2
    >>> x = np.array([1e-3, 0.0])
    >>> round(scaled_gradient(f_grad, x, f_grad(x), np.array([-np.inf, -np.inf])), 6)
    0.001414
    """
    free = np.flatnonzero(~(theta <= lower))
    if free.size == 0:
        return 0.0
    H = np.empty((free.size, free.size))
    for col, j in enumerate(free):
        h = step * max(1.0, abs(theta[j]))
        up = theta.copy()
        up[j] += h
        H[:, col] = (grad(up) - g)[free] / h
    H = (H + H.T) / 2
    try:
        R = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return None
    return float(np.max(np.abs(np.linalg.solve(R, g[free]))))
