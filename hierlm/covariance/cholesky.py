"""Cholesky factors of small correlation matrices (the general path of
:mod:`hierlm.covariance.base`).

``cholesky`` is LAPACK's factor, or, where LAPACK finds the matrix not positive
definite (a correlation matrix within rounding of singular), the textbook
column-by-column factorization with its pivots floored at ``PIVOT_FLOOR``, which is
also complex-step safe (numpy's Cholesky conjugates complex input).
"""

from __future__ import annotations

import numpy as np

#: Smallest pivot of the Cholesky factorization of a correlation matrix.
PIVOT_FLOOR = 1e-14


def cholesky_analytic(R: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a small positive definite matrix, complex-step safe.

    numpy's Cholesky conjugates complex input (it factors Hermitian matrices), which
    breaks the complex-step derivative; this textbook column-by-column form (Golub &
    Van Loan, Alg. 4.2.1) uses only arithmetic and square roots.  A pivot below
    ``PIVOT_FLOOR`` (a correlation matrix within rounding of singular, as at the far
    ends of the correlation parameters' bounds) is raised to it, so that the template
    stays finite and the optimizer's line search can step back from there.

    Examples
    --------
    >>> cholesky_analytic(np.array([[4.0, 2.0], [2.0, 5.0]])).tolist()
    [[2.0, 0.0], [1.0, 2.0]]
    """
    p = R.shape[0]
    L = np.zeros_like(R)
    for j in range(p):
        d = R[j, j] - np.sum(L[j, :j] * L[j, :j])
        d = np.where(np.real(d) > PIVOT_FLOOR, d, PIVOT_FLOOR)
        L[j, j] = np.sqrt(d)
        for i in range(j + 1, p):
            L[i, j] = (R[i, j] - np.sum(L[i, :j] * L[j, :j])) / L[j, j]
    return L


def cholesky(R: np.ndarray) -> np.ndarray:
    """LAPACK's Cholesky factor of a real correlation matrix; the floored
    :func:`cholesky_analytic` where LAPACK finds it not positive definite.

    Examples
    --------
    >>> cholesky(np.array([[1.0, 1.0], [1.0, 1.0]])).tolist()
    [[1.0, 0.0], [1.0, 1e-07]]
    """
    try:
        return np.linalg.cholesky(R)
    except np.linalg.LinAlgError:
        return cholesky_analytic(R)
