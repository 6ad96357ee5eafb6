"""The triangular factor ``R`` of a model matrix, for the design's rank and exact-fit tests.

``X = Q R`` (Householder QR, LAPACK's ``dgeqrf``) with ``R`` upper triangular, ``p x p``
for an ``n x p`` matrix with ``n >= p``: ``R`` has the column relations of ``X`` (a
column is a combination of earlier ones exactly where its residual ``|R_jj|`` vanishes
against its norm), and for ``[X y]`` the last diagonal entry is the norm of ``y``'s
least-squares residual on ``X``.

Why not ``scipy.linalg.qr(X, mode="r")``: its argument checks, workspace query and
``triu`` cost 5-10 us a call between fits, a third of these small factorizations.  For at
most :data:`DIRECT_MAX_P` columns ``dgeqrf`` factors unblocked whatever its workspace,
so the direct call gives SciPy's ``R`` to the bit (checked on the 24 designs of
``python -m benchmarks.peers`` and 300 random matrices, up to 200 x 40); wider or
non-finite matrices go to SciPy.  The design's two tests (:mod:`hierlm.design.matrices`),
mean thread CPU time within 1,000 warm sleepstudy REML fits, old and new code
alternately three times: the rank test 46 / 42 / 50 -> 31 / 33 / 28 us, the exact-fit
test 29 / 27 / 31 -> 18 / 17 / 15 us.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg

__all__ = ["DIRECT_MAX_P", "triangular_factor"]

#: Widest matrix factored by the direct call (LAPACK's block size for ``dgeqrf``: fewer
#: columns are factored unblocked, whatever the workspace).
DIRECT_MAX_P = 32

_dgeqrf = scipy.linalg.get_lapack_funcs("geqrf", dtype=np.float64)


@functools.cache
def _strictly_lower(p: int) -> np.ndarray:
    """Mask of the entries below the diagonal of a ``p x p`` array (made once per size,
    read-only)."""
    mask = np.tri(p, p, -1, dtype=bool)
    mask.setflags(write=False)
    return mask


def triangular_factor(X: np.ndarray, finite: bool = False) -> np.ndarray:
    """``scipy.linalg.qr(X, mode="r")[0][:p]`` of an ``n x p`` matrix (module docstring).

    ``finite=True``: the caller has checked that ``X`` is finite (not checked again;
    otherwise a non-finite ``X`` is SciPy's ValueError).

    Examples
    --------
    >>> X = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    >>> R = triangular_factor(X)
    >>> bool(np.array_equal(R, scipy.linalg.qr(X, mode="r")[0][:2]))
    True
    >>> bool(np.allclose(R.T @ R, X.T @ X))
    True
    """
    n, p = X.shape
    if (p > DIRECT_MAX_P or n < p or X.dtype != np.float64
            or (not finite and not np.isfinite(X).all())):
        return scipy.linalg.qr(X, mode="r", check_finite=not finite)[0][:p]
    R = np.ascontiguousarray(_dgeqrf(X)[0][:p])  # (C order, as SciPy's R)
    R[_strictly_lower(p)] = 0.0  # (the reflectors below the diagonal)
    return R
