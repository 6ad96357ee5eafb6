"""The profiled criterion and its gradient as one hand-written Numba kernel.

The same function as the compiled graph (:mod:`hierlm.objective.profiled`) and the NumPy
evaluation (:mod:`hierlm.objective.numpy_link`): the arguments ``(theta, reml, n, p,
*gram_values)`` and the results ``(criterion, gradient, L1, L_R)``, for every structure
(no argument's shape is baked in, so one compiled function serves every model).

**Factor.**  With ``T`` the first term's ``p1 x p1`` template, ``Lambda_R`` the rest's
relative factor with a unit tail over ``[X y]`` (``m x m``), ``A11[k]`` level ``k``'s
diagonal block and ``A_k = A_R1[:, block k]`` (nonzero in the rows ``nz_row`` of level
``k`` only)::

    L1[k] L1[k]' = T'A11[k] T + I,         P_k = L1[k]^-1,
    Q_k = A_k T P_k'   (m x p1),           U = sum_k Q_k Q_k',
    L_R L_R' = Lambda_R'(A_RR - U) Lambda_R + diag(1 on the rest's q_rest, 0 on [X y])

(``C_k = Lambda_R' Q_k`` is the factor's block below ``L1[k]``, so the Schur complement
``Omega_RR - sum_k C_k C_k'`` is the last line).  With ``r = L_R[-1, -1]``, ``nr = n -
REML p``, the criterion is lme4's::

    f = 2 sum log diag L1 + 2 sum_{i < q_rest} log L_R[i, i]
        + REML 2 sum_{X} log L_R[i, i] + nr (1 + log(2 pi r^2 / nr)).

**Gradient.**  ``log|L_Z|^2``, ``log|L_Z|^2 + log|L_X|^2`` and ``log|L|^2`` are the log
determinants of the leading blocks ``Omega_S`` of ``Omega = Lambda_bar'A Lambda_bar +
D`` (``S`` = ``Z``, ``[Z X]``, all), and ``Omega_S^-1 = sum_{j in S} z_j z_j'`` with
``z_j = L^-T e_j``, so with the weights ``c_j`` = 1 on ``Z``, REML on ``X``, ``nr`` on
``y``::

    df = tr(Psi dOmega),   Psi = L^-T diag(c) L^-1,
    d f / d theta_i = 2 sum_{(r, c): Lambda_bar[r, c] = theta_i} (A Lambda_bar Psi)[r, c].

By the blocks of ``L^-1`` (``V = L_R^-T diag(c_R) L_R^-1``, ``Y = Lambda_R V Lambda_R'``)::

    Psi_kk = P_k'(I + Q_k'Y Q_k) P_k,    Psi_Rk = -V C_k P_k,    Psi_RR = V,
    (A Lambda_bar Psi)_kk = A11[k] T Psi_kk - A_k'Y Q_k P_k              (term 1),
    (A Lambda_bar Psi)_RR = (A_RR - U) Lambda_R V                       (the rest).

Every per-level product runs over level ``k``'s nonzero rows only, and ``Lambda_R``
enters through its entries, so an evaluation costs ``O(sum_k (nnz_k^2 p1 + p1^3) +
m^3)``: for sleepstudy, penicillin and pastes about 1 us of arithmetic, where the
graph's generated code (which allocates each intermediate) took 10-14 us.

Tested against the NumPy evaluation and the graph (value and gradient to 1e-10
relative), and the gradient against central finite differences, in
``tests/objective/test_blocked_kernel.py``.  Importing this module imports Numba (with
its disk cache made safe first, :mod:`hierlm.objective.numba_cache`): only the
background load of a warm process (:mod:`hierlm.estimate.kernel_loop`) does.
"""

from __future__ import annotations

import numpy as np

from hierlm.objective import numba_cache

numba_cache.prepare()

from numba import njit  # noqa: E402

__all__ = ["profiled_eval", "profiled_kernel"]


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _cholesky(a: np.ndarray, n: int) -> bool:  # pragma: no cover - compiled
    """``a``'s leading ``n x n`` block replaced by its lower Cholesky factor (the upper
    triangle zeroed); False where a pivot is not positive (as LAPACK's ``dpotrf``).

    Not :func:`hierlm.objective.jit.lapack.potrf_lower`: the kernel factors one ``p1 x
    p1`` block per level (1-3 columns, tens of calls an evaluation), where that call's
    set-up (its argument arrays, the ctypes call) costs more than the arithmetic, and
    the rest's ``m x m`` block is small wherever the kernel serves
    (:func:`hierlm.estimate.kernel_loop.kernel_work`)."""
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        if not s > 0.0:
            return False
        d = np.sqrt(s)
        a[j, j] = d
        for i in range(j + 1, n):
            t = a[i, j]
            for k in range(j):
                t -= a[i, k] * a[j, k]
            a[i, j] = t / d
        for i in range(j):
            a[i, j] = 0.0
    return True


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _lower_inverse(L: np.ndarray, out: np.ndarray, n: int) -> None:  # pragma: no cover
    """``out``'s leading block set to the inverse of the lower triangular ``L``."""
    for j in range(n):
        for i in range(j):
            out[i, j] = 0.0
        out[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, n):
            s = 0.0
            for k in range(j, i):
                s -= L[i, k] * out[k, j]
            out[i, j] = s / L[i, i]


@njit(cache=True, nogil=True, error_model="numpy")
def profiled_kernel(theta, reml, n, p, A11, nz_val, nz_level, nz_row, level_ptr,
                    row_order, row_ptr, A_R1_dense, A_RR, lam_row, lam_col, lam_theta,
                    q_rest, beta_offset):  # pragma: no cover - compiled
    """Criterion, gradient, ``L1`` and ``L_R`` (module docstring); the criterion is inf
    and the gradient NaN where a factor is not positive definite."""
    n_theta = theta.shape[0]
    l1, p1 = A11.shape[0], A11.shape[1]
    m = A_RR.shape[0]
    qr = q_rest.item()
    reml_f = reml.item()
    nr = n.item() - reml_f * p.item()
    # the first term's template, theta's leading entries by column
    T = np.zeros((p1, p1))
    at = 0
    for b in range(p1):
        for a in range(b, p1):
            T[a, b] = theta[at]
            at += 1
    k1 = at
    lam = np.zeros((m, m))
    for e in range(lam_row.shape[0]):
        t = lam_theta[e]
        lam[lam_row[e], lam_col[e]] = theta[t] if t < n_theta else 1.0
    L1 = np.zeros((l1, p1, p1))
    P = np.zeros((l1, p1, p1))
    F = np.zeros((l1, p1, p1))
    Q = np.zeros((nz_val.shape[0], p1))
    U = np.zeros((m, m))
    G = np.empty((p1, p1))
    ok = True
    logdet = 0.0
    prod = 1.0
    for k in range(l1):
        Fk, Lk, Pk = F[k], L1[k], P[k]
        for i in range(p1):  # F_k = A11[k] T
            for j in range(p1):
                s = 0.0
                for a in range(j, p1):
                    s += A11[k, i, a] * T[a, j]
                Fk[i, j] = s
        for i in range(p1):  # T'F_k + I (lower triangle)
            for j in range(i + 1):
                s = 1.0 if i == j else 0.0
                for a in range(i, p1):
                    s += T[a, i] * Fk[a, j]
                Lk[i, j] = s
        if not _cholesky(Lk, p1):
            ok = False
            break
        for i in range(p1):  # sum log diag as one log of a product, kept in range
            prod *= Lk[i, i]
        if prod > 1e100 or prod < 1e-100:
            logdet += 2.0 * np.log(prod)
            prod = 1.0
        _lower_inverse(Lk, Pk, p1)
        for i in range(p1):  # G = T P_k'
            for j in range(p1):
                s = 0.0
                for a in range(j + 1):
                    s += T[i, a] * Pk[j, a]
                G[i, j] = s
        e0, e1 = level_ptr[k], level_ptr[k + 1]
        for e in range(e0, e1):  # Q_k's rows
            for j in range(p1):
                s = 0.0
                for a in range(p1):
                    s += nz_val[e, a] * G[a, j]
                Q[e, j] = s
        for e in range(e0, e1):  # U += Q_k Q_k' (symmetric: each pair once)
            r = nz_row[e]
            for e2 in range(e0, e + 1):
                s = 0.0
                for j in range(p1):
                    s += Q[e, j] * Q[e2, j]
                c = nz_row[e2]
                U[r, c] += s
                if c != r:
                    U[c, r] += s
    if not ok:
        return np.inf, np.full(n_theta, np.nan), L1, np.full((m, m), np.nan)
    logdet += 2.0 * np.log(prod)
    # Z = (A_RR - U) Lambda_R, then L_R from Lambda_R'Z + D
    Z = np.zeros((m, m))
    for e in range(lam_row.shape[0]):
        r, c = lam_row[e], lam_col[e]
        v = lam[r, c]
        for i in range(m):
            Z[i, c] += (A_RR[i, r] - U[i, r]) * v
    LR = np.zeros((m, m))
    for e in range(lam_row.shape[0]):
        r, c = lam_row[e], lam_col[e]
        v = lam[r, c]
        for j in range(m):
            LR[c, j] += v * Z[r, j]
    for i in range(qr):
        LR[i, i] += 1.0
    if not _cholesky(LR, m):
        return np.inf, np.full(n_theta, np.nan), L1, np.full((m, m), np.nan)
    n_x = m - 1 - qr
    for i in range(qr):
        logdet += 2.0 * np.log(LR[i, i])
    if reml_f != 0.0:
        for i in range(qr, qr + n_x):
            logdet += reml_f * 2.0 * np.log(LR[i, i])
    r2 = LR[m - 1, m - 1] ** 2
    f = logdet + nr * (1.0 + np.log(2.0 * np.pi * r2 / nr))
    # gradient: V = L_R^-T diag(c) L_R^-1, Y = Lambda_R V Lambda_R'
    Li = np.empty((m, m))
    _lower_inverse(LR, Li, m)
    V = np.zeros((m, m))
    for j in range(m):
        c = 1.0 if j < qr else (reml_f if j < m - 1 else nr)
        if c == 0.0:
            continue
        for s_ in range(j + 1):  # V's lower triangle, mirrored below
            w = c * Li[j, s_]
            for t in range(s_ + 1):
                V[s_, t] += w * Li[j, t]
    for s_ in range(m):
        for t in range(s_):
            V[t, s_] = V[s_, t]
    W = np.zeros((m, m))  # Lambda_R V
    for e in range(lam_row.shape[0]):
        r, c = lam_row[e], lam_col[e]
        v = lam[r, c]
        for j in range(m):
            W[r, j] += v * V[c, j]
    Y = np.zeros((m, m))
    for e in range(lam_row.shape[0]):
        r, c = lam_row[e], lam_col[e]
        v = lam[r, c]
        for i in range(m):
            Y[i, r] += W[i, c] * v
    grad = np.zeros(n_theta)
    YQ = np.empty((Q.shape[0], p1))
    H = np.empty((p1, p1))
    K = np.empty((p1, p1))
    B = np.empty((p1, p1))
    for k in range(l1):
        e0, e1 = level_ptr[k], level_ptr[k + 1]
        for e in range(e0, e1):
            r = nz_row[e]
            for j in range(p1):
                s = 0.0
                for e2 in range(e0, e1):
                    s += Y[r, nz_row[e2]] * Q[e2, j]
                YQ[e, j] = s
        Pk, Fk = P[k], F[k]
        for a in range(p1):  # H = I + Q_k'Y Q_k, K = A_k'Y Q_k
            for b in range(p1):
                s = 1.0 if a == b else 0.0
                t = 0.0
                for e in range(e0, e1):
                    s += Q[e, a] * YQ[e, b]
                    t += nz_val[e, a] * YQ[e, b]
                H[a, b] = s
                K[a, b] = t
        for a in range(p1):  # B = H P_k
            for b in range(p1):
                s = 0.0
                for j in range(b, p1):
                    s += H[a, j] * Pk[j, b]
                B[a, b] = s
        for a in range(p1):  # Psi_kk = P_k'B into H
            for b in range(p1):
                s = 0.0
                for j in range(a, p1):
                    s += Pk[j, a] * B[j, b]
                H[a, b] = s
        at = 0
        for b in range(p1):  # 2 (F_k Psi_kk - K P_k) at the template's entries
            for a in range(b, p1):
                s = 0.0
                for j in range(p1):
                    s += Fk[a, j] * H[j, b]
                for j in range(b, p1):
                    s -= K[a, j] * Pk[j, b]
                grad[at] += 2.0 * s
                at += 1
    for e in range(lam_row.shape[0]):  # the rest: 2 ((A_RR - U) Lambda_R V)[r, c]
        t = lam_theta[e]
        if t < n_theta and t >= k1:
            r, c = lam_row[e], lam_col[e]
            s = 0.0
            for j in range(m):
                s += Z[r, j] * V[j, c]
            grad[t] += 2.0 * s
    return f, grad, L1, LR


@njit(cache=True, nogil=True, error_model="numpy")
def profiled_eval(theta, layout, log_scale, reml, n, p, A11, nz_val, nz_level, nz_row,
                  level_ptr, row_order, row_ptr, A_R1_dense, A_RR, lam_row, lam_col,
                  lam_theta, q_rest, beta_offset):  # pragma: no cover - compiled
    """:func:`profiled_kernel` with the results of
    :mod:`hierlm.estimate.psi_call`'s function for an unstructured model (``psi =
    theta``; ``layout`` and ``log_scale`` unused): ``(status, f, grad, theta, L1, L_R)``,
    status 0 where ``f`` and ``grad`` are finite, 1 where not, 2 where theta is not."""
    for k in range(theta.shape[0]):
        if not np.isfinite(theta[k]):
            return (2, np.inf, np.zeros(theta.shape[0]), theta, np.zeros((0, 0, 0)),
                    np.zeros((0, 0)))
    f, g, L1, LR = profiled_kernel(theta, reml, n, p, A11, nz_val, nz_level, nz_row,
                                   level_ptr, row_order, row_ptr, A_R1_dense, A_RR,
                                   lam_row, lam_col, lam_theta, q_rest, beta_offset)
    status = 0 if np.isfinite(f) else 1
    for k in range(g.shape[0]):
        if not np.isfinite(g[k]):
            status = 1
    return status, f, g, theta, L1, LR
