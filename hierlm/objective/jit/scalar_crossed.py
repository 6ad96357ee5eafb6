"""Numba kernels of :mod:`hierlm.objective.scalar_crossed`: the fused evaluation, in passes.

The math is in that module.  Each pass over the dense ``m x m`` arrays touches their
lower triangles only (C order: row ``r`` holds columns ``0 .. r``), and the two row
passes work on a range of rows, so that the caller can run ranges on several threads
(the kernels release the GIL): the rows of ``U`` are independent, and the backward
pass adds into a per-range vector.
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def level_weights(t: float, a11: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                      float, float]:  # pragma: no cover
    """Per level ``k`` of the first term, ``M_k = a_k t^2 + 1``: ``w_k = t^2 / M_k``,
    ``dw_k = 2 t / M_k^2``, ``sqrt(M_k)``; and ``sum_k log M_k`` with its derivative
    ``sum_k 2 a_k t / M_k`` (the arithmetic of :func:`first_block_kernel` for ``p1 = 1``)."""
    l1 = a11.shape[0]
    w = np.empty(l1)
    dw = np.empty(l1)
    d = np.empty(l1)
    logdet = 0.0
    dlogdet = 0.0
    for k in range(l1):
        a = a11[k]
        s = 1.0 + t * (a * t)
        dk = math.sqrt(s) if s > 0.0 else math.nan
        d[k] = dk
        logdet += 2.0 * math.log(dk)
        v = t / dk
        w[k] = v * v
        dw[k] = 2.0 * t / (s * s)
        dlogdet += 2.0 * a * t / s
    return w, dw, d, logdet, dlogdet


@numba.njit(cache=True, nogil=True)
def row_work(nz_level: np.ndarray, level_ptr: np.ndarray, row_order: np.ndarray,
             row_ptr: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Cumulative work of the forward pass by row: its level pairs plus its ``r + 1``
    entries (length ``m + 1``), to split the rows into ranges of equal work."""
    m = row_ptr.shape[0] - 1
    out = np.zeros(m + 1)
    for r in range(m):
        acc = float(r + 1)
        for i in range(row_ptr[r], row_ptr[r + 1]):
            a = row_order[i]
            acc += a - level_ptr[nz_level[a]] + 1
        out[r + 1] = out[r] + acc
    return out


@numba.njit(cache=True, nogil=True)
def unit_levels(v: np.ndarray, nz_row: np.ndarray, level_ptr: np.ndarray,
                q_rest: int) -> np.ndarray:  # pragma: no cover
    """Per level: whether every value ``v_b`` of the level on a random-effect row of the
    rest (``nz_row < q_rest``) is exactly 1 (unweighted data, each pair of levels once)."""
    l1 = level_ptr.shape[0] - 1
    out = np.ones(l1, dtype=np.bool_)
    for k in range(l1):
        for b in range(level_ptr[k], level_ptr[k + 1]):
            if nz_row[b] < q_rest and v[b] != 1.0:
                out[k] = False
                break
    return out


@numba.njit(cache=True, nogil=True)
def forward_rows(r0: int, r1: int, w: np.ndarray, dw: np.ndarray, v: np.ndarray,
                 unit: np.ndarray, nz_row: np.ndarray, nz_level: np.ndarray, level_ptr: np.ndarray,
                 row_order: np.ndarray, row_ptr: np.ndarray, A: np.ndarray, lam: np.ndarray,
                 q_rest: int, X: np.ndarray, S: np.ndarray,
                 dU: np.ndarray) -> None:  # pragma: no cover
    """Rows ``r0 .. r1 - 1`` (lower triangles) of ``U = A_R1 diag(w) A_R1'`` and
    ``dU = A_R1 diag(dw) A_R1'`` by the pair loop of
    :func:`hierlm.objective.jit.schur_update._schur_update_scalar`, then, while the
    row is in cache, ``X = A_RR - U`` (over ``U``) and ``S = X o lam lam' + D_Z``.

    A row's ``U`` and ``dU`` entries are summed side by side in one ``(m, 2)`` buffer,
    so that each pair updates one cache line (20% less time than two row buffers on
    the 1M-row crossed design; ``nz_row`` as int32 saves another 7%).  In the levels
    flagged by ``unit`` (:func:`unit_levels`) the rows of the random effects skip the
    value loads (another 20% there, where every user rates an item once; the same
    sums bit for bit).
    """
    m = A.shape[0]
    acc = np.zeros((m, 2))
    for r in range(r0, r1):
        for i in range(row_ptr[r], row_ptr[r + 1]):
            a = row_order[i]
            k = nz_level[a]
            wa = w[k] * v[a]
            da = dw[k] * v[a]
            if r < q_rest and unit[k]:  # every v_b here is 1: wa * 1.0 == wa, no load
                for b in range(level_ptr[k], a + 1):
                    c = nz_row[b]  # <= r: the lower triangle
                    acc[c, 0] += wa
                    acc[c, 1] += da
            else:
                for b in range(level_ptr[k], a + 1):
                    c = nz_row[b]
                    vb = v[b]
                    acc[c, 0] += wa * vb
                    acc[c, 1] += da * vb
        Ar = A[r]
        Xr = X[r]
        Sr = S[r]
        Dr = dU[r]
        lr = lam[r]
        for c in range(r + 1):
            x = Ar[c] - acc[c, 0]
            Xr[c] = x
            Dr[c] = acc[c, 1]
            Sr[c] = x * (lr * lam[c])
            acc[c, 0] = 0.0
            acc[c, 1] = 0.0
        if r < q_rest:
            Sr[r] += 1.0


@numba.njit(cache=True, nogil=True)
def finish_factor(L: np.ndarray, info: int) -> np.ndarray:  # pragma: no cover
    """Zero the upper triangle of the factor ``L`` and return ``log diag L``; all NaN when
    the factorization failed (``info != 0``), as
    :func:`hierlm.objective.jit.chol_logdiag.chol_kernel`."""
    m = L.shape[0]
    g = np.empty(m)
    if info != 0:
        L[:, :] = np.nan
        g[:] = np.nan
        return g
    for i in range(m):
        for j in range(i + 1, m):
            L[i, j] = 0.0
        g[i] = math.log(L[i, i])
    return g


@numba.njit(cache=True, nogil=True)
def lower_copy(L: np.ndarray) -> np.ndarray:  # pragma: no cover
    """A copy of the lower triangle of ``L``, zeros above."""
    m = L.shape[0]
    Y = np.empty((m, m))
    for i in range(m):
        for j in range(i + 1):
            Y[i, j] = L[i, j]
        for j in range(i + 1, m):
            Y[i, j] = 0.0
    return Y


@numba.njit(cache=True, nogil=True)
def scale_rows(Y: np.ndarray, s: np.ndarray) -> None:  # pragma: no cover
    """Lower triangle of ``Y <- diag(s) Y``."""
    for i in range(Y.shape[0]):
        si = s[i]
        for j in range(i + 1):
            Y[i, j] *= si


@numba.njit(cache=True, nogil=True)
def backward_rows(r0: int, r1: int, Sbar: np.ndarray, X: np.ndarray, dU: np.ndarray,
                  lam: np.ndarray, h: np.ndarray) -> float:  # pragma: no cover
    """Over rows ``r0 .. r1 - 1`` of the lower triangles, add ``sum_j Sbar_lj X_lj lam_j``
    into ``h_l`` (full symmetric sums) and return this range's part of
    ``sum_ij Sbar_ij lam_i lam_j dU_ij``."""
    acc = 0.0
    for r in range(r0, r1):
        lr = lam[r]
        Sr = Sbar[r]
        Xr = X[r]
        Dr = dU[r]
        hr = 0.0
        off = 0.0
        for c in range(r):
            s = Sr[c]
            f = s * Xr[c]
            hr += f * lam[c]
            h[c] += f * lr
            off += s * lam[c] * Dr[c]
        s = Sr[r]
        h[r] += hr + s * Xr[r] * lr
        acc += lr * (2.0 * off + s * lr * Dr[r])
    return acc
