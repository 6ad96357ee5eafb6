"""Toeplitz correlation: one correlation ``rho_k`` per lag ``k`` (glmmTMB ``toep``).

``R_jk = rho_|j-k|`` with ``rho_0 = 1``.  Such a matrix is positive definite exactly
when it is the correlation of a stationary process, i.e. when its partial
autocorrelations ``a_1, ..., a_{p-1}`` all lie in ``(-1, 1)`` (Ramsey 1974; the
Durbin-Levinson recursion maps one to the other).  The unconstrained parameters are
``z_k`` with ``a_k = tanh(z_k)``; the recursion

    phi_{k,k} = a_k,   phi_{k,j} = phi_{k-1,j} - a_k phi_{k-1,k-j},
    rho_k = sum_{j<k} phi_{k-1,j} rho_{k-j} + a_k (1 - sum_{j<k} phi_{k-1,j} rho_j)

gives the autocorrelations.  ``toep`` has heterogeneous SDs (glmmTMB's ``toep``);
``hom=True`` one SD (``homtoep``).  The reported parameters are the SDs and
``rho_lag1, ..., rho_lag{p-1}``.

theta and its Jacobian come from the Durbin-Levinson predictors
(:func:`toeplitz_factor`), in Python or as the Numba kernel ``toep_kernel``
(:mod:`hierlm.covariance.compiled`): 36.2-37.3 us (Python) and 3.5-3.7 us (kernel) for
p = 5 against 135-137 us by the general path (``python -m benchmarks.structured_eval``).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from hierlm.covariance.base import Covariance


def autocorrelations(pacf: np.ndarray) -> np.ndarray:
    """Autocorrelations ``rho_1..rho_m`` from partial autocorrelations (Durbin-Levinson).

    Examples
    --------
    >>> autocorrelations(np.array([0.5, 0.0])).tolist()   # AR(1) with rho = 0.5
    [0.5, 0.25]
    """
    m = len(pacf)
    rho = [np.ones((), dtype=np.asarray(pacf).dtype)]
    phi: list = []
    for k in range(1, m + 1):
        a = pacf[k - 1]
        num = sum(phi[j] * rho[k - 1 - j] for j in range(k - 1)) if phi else 0.0
        den = 1.0 - (sum(phi[j] * rho[j + 1] for j in range(k - 1)) if phi else 0.0)
        rho.append(num + a * den)
        phi = [phi[j] - a * phi[k - 2 - j] for j in range(k - 1)] + [a]
    return np.array(rho[1:])


@functools.cache
def _predictor_positions(p: int) -> np.ndarray:
    """Flat positions in a ``(p - 1, p, p)`` array of ``d phi_{k,j+1} / d z_i``, placed
    at row ``k``, column ``k - 1 - j`` of direction ``i``, in :func:`toeplitz_factor`'s
    order (``k``, then ``j``, then ``i < k``)."""
    return np.array([(i * p + k) * p + (k - 1 - j)
                     for k in range(1, p) for j in range(k) for i in range(k)], dtype=np.intp)


def toeplitz_factor(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``chol(R)`` of the Toeplitz correlation with ``pacf = tanh(z)``, and its
    derivatives in ``z``, from the Durbin-Levinson predictors.

    The prediction errors ``e_k = x_k - sum_j phi_{k,j} x_{k-j}`` of a stationary
    series with correlation ``R`` are uncorrelated with variances ``v_k = prod_{j<=k}
    (1 - a_j^2)``: ``A x = e`` with ``A`` unit lower triangular (row ``k``: ``-phi_{k,j}``
    at column ``k - j``), so ``chol(R) = B V^1/2`` with ``B = A^-1``, whose rows follow
    from ``x_k = e_k + sum_j phi_{k,j} x_{k-j}``.  The predictors need no
    autocorrelation: ``phi_{k,k} = a_k``, ``phi_{k,j} = phi_{k-1,j} - a_k phi_{k-1,k-j}``,
    differentiated alongside (forward mode, in plain floats).  Then ``d B = -B (d A) B``
    and ``d log sqrt(v_k) / dz_i = -tanh(z_i)`` for ``i < k``; ``1 - a^2 = sech(z)^2`` is
    exact near the limits.  ``A``, ``B`` and the predictors are bounded, so the factor
    and its derivatives keep their accuracy where ``R`` nears singularity (where
    LAPACK's factor and Murray's formula lose digits).

    Returns ``L`` (``p x p``, ``p = len(z) + 1``) and ``dL`` (``(len(z), p, p)``).

    Examples
    --------
    >>> L, dL = toeplitz_factor(np.array([np.arctanh(0.5), 0.0]))
    >>> (L @ L.T).round(12).tolist()[0], dL.shape
    ([1.0, 0.5, 0.25], (2, 3, 3))
    """
    zs = np.asarray(z, dtype=float).tolist()
    m = len(zs)
    p = m + 1
    B = [[1.0] + [0.0] * m]                                 # rows of A^-1
    roots = [1.0]
    phi: list[float] = []
    dphi: list[list[float]] = []                            # dphi[j][i] = d phi_j / d z_i
    dvals: list[float] = []
    for k in range(1, p):
        ak, dak = math.tanh(zs[k - 1]), 1.0 / math.cosh(zs[k - 1]) ** 2   # 1 - a^2
        new_dphi = []
        for j in range(k - 1):
            row = [dphi[j][i] - ak * dphi[k - 2 - j][i] for i in range(k - 1)] + [0.0]
            row[k - 1] -= dak * phi[k - 2 - j]
            new_dphi.append(row)
        new_dphi.append([0.0] * (k - 1) + [dak])
        phi = [phi[j] - ak * phi[k - 2 - j] for j in range(k - 1)] + [ak]
        dphi = new_dphi
        b = [0.0] * p
        b[k] = 1.0
        for j in range(k):
            f, prev = phi[j], B[k - 1 - j]
            for col in range(k - j):
                b[col] += f * prev[col]
            dvals.extend(dphi[j])
        B.append(b)
        roots.append(roots[-1] * math.sqrt(dak))
    minus_dA = np.zeros(m * p * p)
    minus_dA[_predictor_positions(p)] = dvals
    Bm, r = np.array(B), np.array(roots)
    dB = Bm @ minus_dA.reshape(m, p, p) @ Bm
    droot = np.array([[-math.tanh(zs[i]) * r[k] if i < k else 0.0 for k in range(p)]
                      for i in range(m)])
    return Bm * r, dB * r + Bm[None, :, :] * droot[:, None, :]


def partial_autocorrelations(rho: np.ndarray) -> np.ndarray:
    """Inverse of :func:`autocorrelations`: the last coefficient of each Yule-Walker system.

    Examples
    --------
    >>> partial_autocorrelations(np.array([0.5, 0.25])).round(12).tolist()
    [0.5, 0.0]
    """
    full = np.concatenate([[1.0], np.asarray(rho, dtype=float)])
    out = []
    for k in range(1, len(full)):
        R = full[np.abs(np.subtract.outer(np.arange(k), np.arange(k)))]
        out.append(float(np.linalg.solve(R, full[1:k + 1])[-1]))
    return np.array(out)


class Toeplitz(Covariance):
    """``toep(0 + f | g)``: heterogeneous SDs, one correlation per lag.

    Examples
    --------
    >>> c = Toeplitz(("t1", "t2", "t3"), "g", np.ones(3))
    >>> psi = np.array([0.0, 0.0, 0.0, np.arctanh(0.5), 0.0])
    >>> c.correlation(psi).round(6).tolist()[0]
    [1.0, 0.5, 0.25]
    >>> c.natural_names()
    ['sd_t1', 'sd_t2', 'sd_t3', 'rho_lag1', 'rho_lag2']
    """

    structure = "toep"
    kernel_kind = "toep"

    @property
    def n_psi(self) -> int:
        return (1 if self.homogeneous else self.p) + self.p - 1

    def lag_correlations(self, psi: np.ndarray) -> np.ndarray:
        """``rho_1, ..., rho_{p-1}``."""
        n_sd = 1 if self.homogeneous else self.p
        return autocorrelations(np.tanh(np.asarray(psi)[n_sd:]))

    def packed_cholesky(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``chol(R)`` and its derivatives from the Durbin-Levinson predictors
        (:func:`toeplitz_factor`): no LAPACK call, no complex step."""
        if self.p == 1:
            return np.ones(1), np.zeros((1, 0))
        L, dL = toeplitz_factor(np.asarray(psi, dtype=float)[self._n_sd:])
        rows, cols = self._rows, self._cols
        return L[rows, cols], dL[:, rows, cols].T

    def correlation_derivatives(self, psi: np.ndarray) -> list[np.ndarray]:
        """All ``d R / d z_k`` in one pass: the recursion runs on a batch of complex steps."""
        n_sd = 1 if self.homogeneous else self.p
        m = self.p - 1
        z = np.asarray(psi, dtype=float)[n_sd:, None] + 1e-30j * np.eye(m)  # (lag, step)
        drho = autocorrelations(np.tanh(z)).imag / 1e-30                     # (lag, step)
        full = np.vstack([np.zeros((1, m)), drho])
        return [full[self._lag, k] for k in range(m)]

    def sds(self, psi: np.ndarray) -> np.ndarray:
        return np.exp(self._log_sd(psi))

    def correlation(self, psi: np.ndarray) -> np.ndarray:
        rho = np.concatenate([np.ones(1, dtype=np.asarray(psi).dtype),
                              self.lag_correlations(psi)])
        return rho[self._lag]

    def correlation_from_natural(self, values: np.ndarray) -> np.ndarray:
        return np.concatenate([[1.0], np.asarray(values, dtype=float)])[self._lag]

    def correlation_psi(self, R: np.ndarray) -> np.ndarray:
        rho = np.array([np.mean(np.diag(R, -k)) for k in range(1, self.p)])
        return np.arctanh(np.clip(partial_autocorrelations(rho), -1 + 1e-16, 1 - 1e-16))

    def psi_start(self) -> np.ndarray:
        return np.zeros(self.n_psi)

    def natural(self, psi: np.ndarray, sigma: float) -> np.ndarray:
        lags = self.lag_correlations(np.asarray(psi, dtype=float))
        return np.array(self._sd_values(psi, sigma) + [float(v) for v in lags])

    def natural_names(self) -> list[str]:
        return self._sd_names() + [f"rho_lag{k}" for k in range(1, self.p)]

    def nuts_correlation_prior(self) -> tuple[str, int, float, float] | None:
        """Partial autocorrelations ``pacf ~ Uniform(-1, 1)``, independent: every
        ``pacf`` in ``(-1, 1)^(p-1)`` is a positive definite Toeplitz ``R`` and the box
        covers them all (the lag correlations are derived by Durbin-Levinson)."""
        return ("pacf", self.p - 1, -1.0, 1.0) if self.p > 1 else None

    def correlation_from_nuts(self, values: np.ndarray) -> np.ndarray:
        if self.p == 1:
            return self._eye.copy()
        return self.correlation_from_natural(autocorrelations(np.atleast_1d(
            np.asarray(values, dtype=float))))

    def nuts_correlation_start(self, psi: np.ndarray) -> np.ndarray:
        n_sd = 1 if self.homogeneous else self.p
        return np.tanh(np.asarray(psi, dtype=float)[n_sd:])


class HomToeplitz(Toeplitz):
    """``toep(0 + f | g, hom=True)``: one SD, one correlation per lag (glmmTMB ``homtoep``).

    Examples
    --------
    >>> HomToeplitz(("t1", "t2"), "g", np.ones(2)).n_psi
    2
    """

    structure = "homtoep"
    homogeneous = True
