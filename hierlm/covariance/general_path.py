"""The general path of ``psi -> (theta, d theta / d psi)``: the closed forms' reference.

For any structure with correlation ``R(psi)`` and relative SDs ``s``: ``L =
chol(R)`` by LAPACK (:func:`hierlm.covariance.cholesky.cholesky`), ``T = diag(s) L``,
and a correlation parameter moves ``L`` by ``d L = L Phi(L^-1 dR L^-T)`` (``Phi``: the
lower triangle with its diagonal halved; Murray 2016, "Differentiation of the
Cholesky decomposition"), with ``dR`` by the complex step ``Im R(psi + i h e_k) / h``,
``h = 1e-30`` (every structure's ``R`` is analytic, so that derivative is exact to
rounding).  A log SD scales its rows of ``T``.  Slower than the closed forms
(:mod:`hierlm.covariance.base`) and sharing no code with them: the reference they are
tested against.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

from hierlm.covariance.cholesky import cholesky

_STEP = 1e-30


def theta_jacobian_general(c: Any, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """theta and ``d theta / d psi`` of the covariance object ``c`` by the general path.

    Examples
    --------
    >>> from hierlm.covariance.ar1 import AR1
    >>> theta, J = theta_jacobian_general(AR1(("a", "b"), "g", np.ones(2)), np.zeros(2))
    >>> theta.tolist(), J.tolist()
    ([1.0, 0.0, 1.0], [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    """
    psi = np.asarray(psi, dtype=float)
    rows, cols = c._rows, c._cols
    s = c.sds(psi)
    L = cholesky(c.correlation(psi))
    t = (s[:, None] * L)[rows, cols]
    J = np.zeros((c.n_theta, c.n_psi))
    n_sd = c._n_sd
    if c.homogeneous:
        J[:, 0] = t
    else:
        J[:, :n_sd] = t[:, None] * c._row_onehot
    if c.n_psi > n_sd:
        Linv = scipy.linalg.solve_triangular(L, c._eye, lower=True)
        dR = np.stack(c.correlation_derivatives(psi))         # (k, p, p)
        X = Linv @ dR @ Linv.T
        Phi = X * c._lower_half                                # tril, diagonal / 2
        dT = s[None, :, None] * (L @ Phi)
        J[:, n_sd:] = dT[:, rows, cols].T
    return t, J


def complex_step_derivatives(c: Any, psi: np.ndarray) -> list[np.ndarray]:
    """``d R / d psi_k`` of ``c`` for each correlation parameter, by the complex step.

    Examples
    --------
    >>> from hierlm.covariance.ar1 import AR1
    >>> complex_step_derivatives(AR1(("a", "b"), "g", np.ones(2)), np.zeros(2))[0].tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    n_sd = 1 if c.homogeneous else c.p
    out = []
    for k in range(n_sd, c.n_psi):
        z = np.asarray(psi, dtype=float).astype(complex)
        z[k] += 1j * _STEP
        out.append(c.correlation(z).imag / _STEP)
    return out
