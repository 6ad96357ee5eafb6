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
"""

from __future__ import annotations

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

    @property
    def n_psi(self) -> int:
        return (1 if self.homogeneous else self.p) + self.p - 1

    def lag_correlations(self, psi: np.ndarray) -> np.ndarray:
        """``rho_1, ..., rho_{p-1}``."""
        n_sd = 1 if self.homogeneous else self.p
        return autocorrelations(np.tanh(np.asarray(psi)[n_sd:]))

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
