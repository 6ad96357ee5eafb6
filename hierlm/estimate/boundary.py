"""The boundary of lme4's parameter space: sign symmetry and second-order checks.

The profiled criterion depends on a template ``T`` only through ``T T'``, unchanged when
a column of ``T`` changes sign; lme4's bound ``T_jj >= 0`` picks one of the equivalent
points (:func:`canonical_signs`).  Where ``T_jj = 0`` and the rest of column ``j`` is
zero the criterion is even in ``T_jj``, so its derivative vanishes there whether the
point is a minimum or a maximum along it: :func:`escape_boundary` checks the second
order by trying steps into the interior.  On small samples a singular local optimum
can coexist with an interior one: :func:`face_starts` gives the nearest boundary point
of each term (its covariance's smallest eigenvalue set to 0) to descend from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import psd_cholesky
from hierlm.design.terms import ModelDesign

# The second-order check at zero template diagonals: which |phi_j| count as zero, the
# steps tried into the interior, the gain that counts as lower, and how often to escape.
ZERO_DIAG = 1e-4
ESCAPE_STEPS = (1e-2, 0.1, 1.0)
ESCAPE_TOL = 1e-10
MAX_ESCAPES = 3

def escape_boundary(fval: Any, phi: np.ndarray, f: float, diag: np.ndarray
                     ) -> np.ndarray | None:
    """A lower point next to ``phi`` along its (near-)zero template diagonals, or None.

    At a template diagonal ``phi_j = 0`` whose column is otherwise zero the criterion
    is even in ``phi_j``, so its derivative there vanishes whether the point is a
    minimum or a maximum along ``phi_j``.  This is the second-order check: try
    ``phi_j = h`` for ``h`` in :data:`ESCAPE_STEPS`, for each such coordinate alone
    and for all of them together, and return the lowest point that beats ``f``.
    """
    near = diag[np.abs(phi[diag]) < ZERO_DIAG]
    if near.size == 0:
        return None
    tol = ESCAPE_TOL * max(1.0, abs(f))
    best_f, best_x = f - tol, None
    groups = [np.array([j]) for j in near] + ([near] if near.size > 1 else [])
    for idx in groups:
        for h in ESCAPE_STEPS:
            x = phi.copy()
            x[idx] = h
            fx = fval(x)
            if fx < best_f:
                best_f, best_x = fx, x
    return best_x


def face_starts(design: ModelDesign, theta: np.ndarray) -> list[np.ndarray]:
    """For each term not already singular, theta with its covariance's smallest
    eigenvalue set to zero (the nearest point of the boundary face), others unchanged."""
    starts = []
    cov = DesignCovariance.of(design)
    theta = np.asarray(theta, dtype=float)
    for c, part in zip(cov.terms, cov.theta_slices(), strict=True):
        T = c.unpack(theta[part])  # (cov.templates' values, without its split and checks)
        w, V = np.linalg.eigh(T @ T.T)
        if w[0] > ZERO_DIAG**2 * max(float(w[-1]), 1.0):
            w[0] = 0.0
            x = np.array(theta, dtype=float)
            x[part] = c.pack(psd_cholesky((V * w) @ V.T))
            starts.append(x)
    return starts


def canonical_signs(design: ModelDesign, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip template columns with a negative diagonal (``T T'`` is unchanged).

    Returns the flipped parameters and a mask of the entries whose sign changed.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> canonical_signs(d, np.array([-1.0, 0.5, 2.0]))[0].tolist()
    [1.0, -0.5, 2.0]
    """
    return DesignCovariance.of(design).canonical_signs(phi)
