"""Numba kernels of the structures' closed forms ``psi -> (theta, d theta / d psi)``.

The math is in each structure's module: ``diag``'s identity
(:mod:`hierlm.covariance.diagonal`), ``ar1``'s explicit factor
(:meth:`hierlm.covariance.ar1.AR1.packed_cholesky`), ``cs``'s Schur complements
(:meth:`hierlm.covariance.compound.CompoundSymmetry.packed_cholesky`) and ``toep``'s
differentiated Durbin-Levinson predictors (:func:`hierlm.covariance.toeplitz.toeplitz_factor`);
the template is ``T = diag(s) L`` (:mod:`hierlm.covariance.base`).  These loops compute
the same values as those NumPy/Python forms, in the same order of operations where it
is a closed form (tested against them, against the general path and against finite
differences in ``tests/covariance/test_compiled_maps.py``).

Every kernel has the signature ``kernel(psi, log_scale, hom, theta, J)``:

* ``psi``: the term's parameters (C-contiguous float64, writable);
* ``log_scale``: ``log r_j`` per column, or the log geometric mean ``log r`` repeated
  for a homogeneous structure, so that ``s_j = exp(psi_sd(j) - log_scale_j)`` as in
  :meth:`Covariance._log_sd`;
* ``hom``: whether one SD (``psi[0]``) serves all columns;
* ``theta`` (``n_theta``) and ``J`` (``n_theta x n_psi``): written in full.

Each kernel has that one signature for every ``p``, so it is compiled once per
install and then loaded from Numba's disk cache (``cache=True``): no per-model compile.
The module imports Numba; only :mod:`hierlm.covariance.compiled` imports it, when
loading a kernel is worth its cost (and :mod:`hierlm.estimate.psi_call`, which calls
the kernels from its compiled evaluation).

``toep``'s derivative loops skip the zeros of its unit lower triangular ``B`` and the
upper triangle of ``dL`` that :func:`_pack` never reads (the same values: the skipped
terms added exact zeros): 1.55 -> 1.45 us a call from Python at p = 5, 3.66 -> 3.20 at
p = 8 (best of 7 x 20,000 calls, CPU clock, load 3).
"""

from __future__ import annotations

import math

import numba
import numpy as np


@numba.njit(cache=True)
def _pack(L: np.ndarray, dL: np.ndarray, psi: np.ndarray, log_scale: np.ndarray,
          hom: bool, theta: np.ndarray, J: np.ndarray) -> None:  # pragma: no cover
    """theta and J from ``L = chol(R)`` and ``dL`` (``(m, p, p)``, one per correlation
    parameter): ``T = diag(s) L``, packed column by column."""
    p = L.shape[0]
    m = dL.shape[0]
    n_sd = 1 if hom else p
    s = np.empty(p)
    for r in range(p):
        s[r] = math.exp(psi[0 if hom else r] - log_scale[r])
    J[:, :] = 0.0
    k = 0
    for c in range(p):
        for r in range(c, p):
            t = s[r] * L[r, c]
            theta[k] = t
            J[k, 0 if hom else r] = t
            for i in range(m):
                J[k, n_sd + i] = s[r] * dL[i, r, c]
            k += 1


@numba.njit(cache=True)
def diag_kernel(psi: np.ndarray, log_scale: np.ndarray, hom: bool, theta: np.ndarray,
                J: np.ndarray) -> None:  # pragma: no cover
    """``diag``: ``R = I``."""
    p = log_scale.shape[0]
    _pack(np.eye(p), np.zeros((0, p, p)), psi, log_scale, hom, theta, J)


@numba.njit(cache=True)
def ar1_kernel(psi: np.ndarray, log_scale: np.ndarray, hom: bool, theta: np.ndarray,
               J: np.ndarray) -> None:  # pragma: no cover
    """``ar1``: ``L_i0 = rho^i``, ``L_ij = rho^(i-j) c`` (``c = sech z``) and their
    derivatives in ``z`` (:meth:`AR1.packed_cholesky`)."""
    p = log_scale.shape[0]
    m = 1 if p > 1 else 0
    L = np.zeros((p, p))
    dL = np.zeros((m, p, p))
    if p == 1:
        L[0, 0] = 1.0
    else:
        z = psi[psi.shape[0] - 1]
        rho = math.tanh(z)
        c = 1.0 / math.cosh(z)
        c2 = c * c
        pw = np.empty(p)
        kpm = np.empty(p)
        pw[0] = 1.0
        kpm[0] = 0.0
        for k in range(1, p):
            pw[k] = pw[k - 1] * rho                  # rho^k
            kpm[k] = k * pw[k - 1]                   # k rho^(k-1)
        for j in range(p):
            for i in range(j, p):
                k = i - j
                if j == 0:
                    L[i, 0] = pw[k]
                    dL[0, i, 0] = kpm[k] * c2
                else:
                    L[i, j] = pw[k] * c
                    dL[0, i, j] = c * (kpm[k] * c2 - pw[k] * rho)
    _pack(L, dL, psi, log_scale, hom, theta, J)


@numba.njit(cache=True)
def cs_kernel(psi: np.ndarray, log_scale: np.ndarray, hom: bool, theta: np.ndarray,
              J: np.ndarray) -> None:  # pragma: no cover
    """``cs``: the compound-symmetric Schur complements
    (:meth:`CompoundSymmetry.packed_cholesky`)."""
    p = log_scale.shape[0]
    m = 1 if p > 1 else 0
    L = np.zeros((p, p))
    dL = np.zeros((m, p, p))
    if p == 1:
        L[0, 0] = 1.0
    else:
        z = psi[psi.shape[0] - 1]
        if z >= 0:
            ez = math.exp(-z)
            sig, sig_c = 1.0 / (1.0 + ez), ez / (1.0 + ez)
        else:
            ez = math.exp(z)
            sig, sig_c = ez / (1.0 + ez), 1.0 / (1.0 + ez)
        lo = -1.0 / (p - 1)
        width = 1.0 - lo
        u, q = width * sig, width * sig_c            # rho - lo, 1 - rho
        rho = lo + u if sig < 0.5 else 1.0 - q
        w = width * sig * sig_c                      # d rho / dz
        diag_l, off_l = np.empty(p), np.empty(p)
        diag_d, off_d = np.empty(p), np.empty(p)
        diag_l[0], off_l[0], diag_d[0], off_d[0] = 1.0, rho, 0.0, w
        e_prev = 1.0
        for j in range(1, p):
            e = (1.0 - j / (p - 1)) + j * u          # 1 + j rho
            root = math.sqrt(q * e / e_prev)
            dlog_a = -sig + j * w / e - (j - 1.0) * w / e_prev
            b = rho * q / e_prev
            db = w * ((q - rho) - rho * q * (j - 1.0) / e_prev) / e_prev
            diag_l[j] = root
            off_l[j] = b / root
            diag_d[j] = 0.5 * root * dlog_a
            off_d[j] = db / root - 0.5 * (b / root) * dlog_a
            e_prev = e
        for c in range(p):
            L[c, c] = diag_l[c]
            dL[0, c, c] = diag_d[c]
            for r in range(c + 1, p):
                L[r, c] = off_l[c]
                dL[0, r, c] = off_d[c]
    _pack(L, dL, psi, log_scale, hom, theta, J)


@numba.njit(cache=True)
def toep_kernel(psi: np.ndarray, log_scale: np.ndarray, hom: bool, theta: np.ndarray,
                J: np.ndarray) -> None:  # pragma: no cover
    """``toep``: ``chol(R) = B V^1/2`` from the Durbin-Levinson predictors, ``dB = -B
    (dA) B`` (:func:`toeplitz_factor`)."""
    p = log_scale.shape[0]
    m = p - 1
    n_sd = 1 if hom else p
    B = np.zeros((p, p))
    B[0, 0] = 1.0
    roots = np.empty(p)
    roots[0] = 1.0
    phi = np.zeros(p)
    dphi = np.zeros((p, p))                          # dphi[j, i] = d phi_j / d z_i
    new_phi = np.zeros(p)
    new_dphi = np.zeros((p, p))
    minus_dA = np.zeros((max(m, 0), p, p))
    for k in range(1, p):
        zk = psi[n_sd + k - 1]
        ak = math.tanh(zk)
        dak = 1.0 / math.cosh(zk) ** 2               # 1 - a_k^2
        for j in range(k - 1):
            for i in range(k - 1):
                new_dphi[j, i] = dphi[j, i] - ak * dphi[k - 2 - j, i]
            new_dphi[j, k - 1] = 0.0 - dak * phi[k - 2 - j]
            new_phi[j] = phi[j] - ak * phi[k - 2 - j]
        for i in range(k - 1):
            new_dphi[k - 1, i] = 0.0
        new_dphi[k - 1, k - 1] = dak
        new_phi[k - 1] = ak
        for j in range(k):
            phi[j] = new_phi[j]
            for i in range(k):
                dphi[j, i] = new_dphi[j, i]
        B[k, k] = 1.0
        for j in range(k):
            f = phi[j]
            for col in range(k - j):
                B[k, col] += f * B[k - 1 - j, col]
            for i in range(k):
                minus_dA[i, k, k - 1 - j] = dphi[j, i]
        roots[k] = roots[k - 1] * math.sqrt(dak)
    L = np.empty((p, p))
    for r in range(p):
        for c in range(p):
            L[r, c] = B[r, c] * roots[c]
    dL = np.zeros((max(m, 0), p, p))
    tmp = np.empty((p, p))
    # B is unit lower triangular and _pack reads dL's lower triangle only: the loops
    # below skip B's zeros above its diagonal (terms that added exactly 0) and dL's
    # upper triangle (left 0)
    for i in range(m):
        tmp[:, :] = 0.0                              # (-dA_i) B
        for r in range(p):
            for t in range(p):
                a = minus_dA[i, r, t]
                if a != 0.0:
                    for c in range(t + 1):
                        tmp[r, c] += a * B[t, c]
        t_i = math.tanh(psi[n_sd + i])
        for c in range(p):
            droot = -t_i * roots[c] if i < c else 0.0
            for r in range(c, p):
                acc = 0.0
                for t in range(r + 1):
                    acc += B[r, t] * tmp[t, c]
                dL[i, r, c] = acc * roots[c] + B[r, c] * droot
    _pack(L, dL, psi, log_scale, hom, theta, J)
