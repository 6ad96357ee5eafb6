"""Numba kernels of :mod:`hierlm.objective.first_block`: one loop over the levels each way.

The math is in the Op's module; these loops compute the same values as its NumPy
``perform`` (tested against each other and against dense products) and are
registered with PyTensor's Numba backend, which uses them when it links a graph.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from pytensor.graph.basic import Apply
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from hierlm.objective.first_block import FirstBlock, FirstBlockGrad
from hierlm.objective.jit.lapack import KERNEL_VERSION


@numba.njit(cache=True)
def first_block_kernel(T: np.ndarray, A: np.ndarray
                       ) -> tuple[np.ndarray, float, np.ndarray]:  # pragma: no cover
    """``(L, logdet, W)`` (see the module docstring); NaN where ``M_k`` is not
    positive definite."""
    l1, p = A.shape[0], A.shape[1]
    L = np.zeros((l1, p, p))
    W = np.empty((l1, p, p))
    B = np.empty((p, p))
    V = np.empty((p, p))
    logdet = 0.0
    for k in range(l1):
        for a in range(p):  # B = A_k T (T lower: column j has rows j..p-1)
            for j in range(p):
                s = 0.0
                for b in range(j, p):
                    s += A[k, a, b] * T[b, j]
                B[a, j] = s
        Lk = L[k]
        for j in range(p):  # M = T'B + I, factored column by column (lower triangle only)
            for i in range(j, p):
                s = 1.0 if i == j else 0.0
                for a in range(i, p):
                    s += T[a, i] * B[a, j]
                for q in range(j):
                    s -= Lk[i, q] * Lk[j, q]
                if i == j:
                    d = math.sqrt(s) if s > 0.0 else math.nan
                    Lk[j, j] = d
                    logdet += 2.0 * math.log(d)
                else:
                    Lk[i, j] = s / Lk[j, j]
        for i in range(p):  # V = L^{-1} T' by forward substitution
            for c in range(p):
                s = T[c, i]
                for j in range(i):
                    s -= Lk[i, j] * V[j, c]
                V[i, c] = s / Lk[i, i]
        for a in range(p):  # W = V'V
            for b in range(a, p):
                s = 0.0
                for i in range(p):
                    s += V[i, a] * V[i, b]
                W[k, a, b] = s
                W[k, b, a] = s
    return L, logdet, W


@numba.njit(cache=True)
def first_block_grad_kernel(T: np.ndarray, A: np.ndarray, L: np.ndarray, W: np.ndarray,
                            g: float, Wbar: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``df/dT = 2 sum_k [(I - A_k W_k) G_k + g A_k] T M_k^{-1}``, ``G_k = sym(Wbar_k)``;
    ``O(p1^3)`` per level."""
    l1, p = A.shape[0], A.shape[1]
    dT = np.zeros((p, p))
    Li = np.empty((p, p))
    TLt = np.empty((p, p))
    TMi = np.empty((p, p))
    AW = np.empty((p, p))
    X = np.empty((p, p))
    for k in range(l1):
        Lk = L[k]
        for c in range(p):  # Li = L_k^{-1}, lower triangular
            for i in range(p):
                if i < c:
                    Li[i, c] = 0.0
                    continue
                s = 1.0 if i == c else 0.0
                for j in range(c, i):
                    s -= Lk[i, j] * Li[j, c]
                Li[i, c] = s / Lk[i, i]
        for a in range(p):  # TLt = T Li' (both lower triangular)
            for i in range(p):
                s = 0.0
                for j in range(min(a, i) + 1):
                    s += T[a, j] * Li[i, j]
                TLt[a, i] = s
        for a in range(p):  # TMi = T M^{-1} = TLt Li
            for b in range(p):
                s = 0.0
                for i in range(b, p):
                    s += TLt[a, i] * Li[i, b]
                TMi[a, b] = s
        for a in range(p):  # AW = A_k W_k
            for c in range(p):
                s = 0.0
                for d in range(p):
                    s += A[k, a, d] * W[k, d, c]
                AW[a, c] = s
        for a in range(p):  # X = G - AW G + g A, G = sym(Wbar_k)
            for b in range(p):
                s = 0.5 * (Wbar[k, a, b] + Wbar[k, b, a]) + g * A[k, a, b]
                for c in range(p):
                    s -= AW[a, c] * 0.5 * (Wbar[k, c, b] + Wbar[k, b, c])
                X[a, b] = s
        for a in range(p):
            for b in range(p):
                s = 0.0
                for c in range(p):
                    s += X[a, c] * TMi[c, b]
                dT[a, b] += 2.0 * s
    return dT


@register_funcify_default_op_cache_key(FirstBlock)
def _numba_first_block(op: FirstBlock, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(T, A):  # type: ignore[no-untyped-def]  # pragma: no cover
        L, logdet, W = first_block_kernel(T, A)
        return L, np.asarray(logdet), W

    return fn, KERNEL_VERSION


@register_funcify_default_op_cache_key(FirstBlockGrad)
def _numba_first_block_grad(op: FirstBlockGrad, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(T, A, L, W, g, Wbar):  # type: ignore[no-untyped-def]  # pragma: no cover
        return first_block_grad_kernel(T, A, L, W, g.item(), Wbar)

    return fn, KERNEL_VERSION
