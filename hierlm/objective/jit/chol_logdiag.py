"""Numba kernels of :mod:`hierlm.objective.chol_logdiag` (``potrf``, ``trtri``, ``lauum``).

The math is in the Op's module; these loops compute the same values as its NumPy
``perform`` (tested against each other and against dense products) and are
registered with PyTensor's Numba backend, which uses them when it links a graph.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from pytensor.graph.basic import Apply
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from hierlm.objective.chol_logdiag import CholLogDiag, CholLogDiagGrad
from hierlm.objective.jit import lapack
from hierlm.objective.jit.lapack import KERNEL_VERSION


@numba.njit(cache=True)
def chol_kernel(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """``(L, log diag L)``; NaN when ``S`` is not positive definite."""
    L = np.ascontiguousarray(S).copy()
    info = lapack.potrf_lower(L)
    n = L.shape[0]
    g = np.empty(n)
    if info != 0:
        L[:, :] = np.nan
        g[:] = np.nan
        return L, g
    for i in range(n):
        g[i] = np.log(L[i, i])
    return L, g


@numba.njit(cache=True)
def _half_gram(X: np.ndarray, w: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Lower triangle of ``1/2 X' diag(w) X`` for lower-triangular ``X`` and ``w >= 0``."""
    n = X.shape[0]
    Y = np.zeros((n, n))
    for i in range(n):
        s = np.sqrt(0.5 * w[i])
        for j in range(i + 1):
            Y[i, j] = X[i, j] * s
    lapack.lauum_lower(Y)
    return Y


@numba.njit(cache=True)
def chol_grad_kernel(L: np.ndarray, gbar: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``1/2 L^{-T} diag(gbar) L^{-1}`` (full symmetric matrix)."""
    n = L.shape[0]
    X = np.ascontiguousarray(L).copy()
    lapack.trtri_lower(X)
    out = _half_gram(X, np.maximum(gbar, 0.0))
    if np.any(gbar < 0.0):
        out -= _half_gram(X, np.maximum(-gbar, 0.0))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i]
    return out


@register_funcify_default_op_cache_key(CholLogDiag)
def _numba_chol(op: CholLogDiag, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(S):  # type: ignore[no-untyped-def]  # pragma: no cover
        return chol_kernel(S)

    return fn, KERNEL_VERSION


@register_funcify_default_op_cache_key(CholLogDiagGrad)
def _numba_chol_grad(op: CholLogDiagGrad, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(L, gbar):  # type: ignore[no-untyped-def]  # pragma: no cover
        return chol_grad_kernel(L, np.ascontiguousarray(gbar))

    return fn, KERNEL_VERSION
