"""First-order autoregressive correlation over the columns in order (glmmTMB ``ar1``).

``R_jk = rho^|j - k|`` with ``rho = tanh(z)`` in ``(-1, 1)``, for which ``R`` is positive
definite (the correlation of a stationary AR(1) process).  ``ar1`` has one SD for all
columns (glmmTMB's ``ar1``); ``het=True`` gives each column its own (``hetar1``).  SDs
as in :mod:`hierlm.covariance.base`.  A term with one column has no ``rho``.

theta and its Jacobian come from ``chol(R)``'s closed form (:meth:`AR1.packed_cholesky`),
in Python or as the Numba kernel ``ar1_kernel`` (:mod:`hierlm.covariance.compiled`):
10.0-11.7 us (Python) and 2.7 us (kernel) for p = 5 against 68-70 us by the general
path (``python -m benchmarks.structured_eval``).
"""

from __future__ import annotations

import math

import numpy as np

from hierlm.covariance.base import Covariance


class AR1(Covariance):
    """``ar1(0 + f | g)``: one variance, correlation ``rho^|i-j|``.

    Examples
    --------
    >>> c = AR1(("t1", "t2", "t3"), "g", np.ones(3))
    >>> c.correlation(np.array([0.0, np.arctanh(0.5)])).round(6).tolist()[0]
    [1.0, 0.5, 0.25]
    >>> c.names()
    ['sd|g', 'rho|g']
    """

    structure = "ar1"
    kernel_kind = "ar1"
    homogeneous = True

    def __init__(self, coef_names: tuple[str, ...], group: str, rms: np.ndarray) -> None:
        super().__init__(coef_names, group, rms)
        self._lag_first = list(zip(self._lag_packed.tolist(), self._first_col.tolist(),
                                   strict=True))

    @property
    def n_psi(self) -> int:
        return (1 if self.homogeneous else self.p) + (1 if self.p > 1 else 0)

    def rho(self, psi: np.ndarray) -> np.ndarray:
        """The lag-1 correlation (0 for a one-column term)."""
        if self.p == 1:
            return np.zeros((), dtype=np.asarray(psi).dtype)
        return np.tanh(psi[-1])

    def sds(self, psi: np.ndarray) -> np.ndarray:
        return np.exp(self._log_sd(psi))

    def correlation(self, psi: np.ndarray) -> np.ndarray:
        rho = self.rho(psi)
        powers = rho ** np.arange(self.p)  # integer powers: analytic for the complex step
        return powers[self._lag]

    def packed_cholesky(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``chol(R)`` in closed form: ``L_i0 = rho^i``, ``L_ij = rho^(i-j) c`` for
        ``j >= 1``, with ``c = sqrt(1 - rho^2) = sech(z)``; by ``d rho / dz = c^2`` and
        ``d c / dz = -rho c``, ``d L_i0 / dz = i rho^(i-1) c^2`` and ``d L_ij / dz =
        c (k rho^(k-1) c^2 - rho^(k+1))`` (``k = i - j``)."""
        lvec, dvec = self.packed_lists(psi)
        return np.array(lvec), np.array(dvec).reshape(self.n_theta, -1)

    def packed_lists(self, psi: np.ndarray) -> tuple[list[float], list[float]]:
        if self.p == 1:
            return [1.0], []
        z = float(psi[-1])
        rho, c = math.tanh(z), 1.0 / math.cosh(z)
        c2 = c * c
        pw = [1.0]
        for _ in range(1, self.p):
            pw.append(pw[-1] * rho)                    # rho^0 .. rho^(p-1)
        kpm = [0.0] + [k * pw[k - 1] for k in range(1, self.p)]   # k rho^(k-1)
        lvec, dvec = [], []
        for k, first in self._lag_first:
            if first:
                lvec.append(pw[k])
                dvec.append(kpm[k] * c2)
            else:
                lvec.append(pw[k] * c)
                dvec.append(c * (kpm[k] * c2 - pw[k] * rho))
        return lvec, dvec

    def correlation_from_natural(self, values: np.ndarray) -> np.ndarray:
        rho = float(values[0]) if self.p > 1 else 0.0
        return (rho ** np.arange(self.p))[self._lag]

    def correlation_psi(self, R: np.ndarray) -> np.ndarray:
        if self.p == 1:
            return np.zeros(0)
        return np.array([np.arctanh(np.clip(float(np.mean(np.diag(R, -1))), -1 + 1e-16,
                                            1 - 1e-16))])

    def psi_start(self) -> np.ndarray:
        return np.zeros(self.n_psi)

    def natural(self, psi: np.ndarray, sigma: float) -> np.ndarray:
        out = self._sd_values(psi, sigma)
        if self.p > 1:
            out.append(float(self.rho(np.asarray(psi, dtype=float))))
        return np.array(out)

    def natural_names(self) -> list[str]:
        return self._sd_names() + (["rho"] if self.p > 1 else [])

    def nuts_correlation_prior(self) -> tuple[str, int, float, float] | None:
        """``rho ~ Uniform(-1, 1)``: every lag-1 correlation of a stationary AR(1)."""
        return ("rho", 1, -1.0, 1.0) if self.p > 1 else None


class HetAR1(AR1):
    """``ar1(0 + f | g, het=True)``: heterogeneous SDs, ``rho^|i-j|`` (glmmTMB ``hetar1``).

    Examples
    --------
    >>> HetAR1(("t1", "t2"), "g", np.ones(2)).natural_names()
    ['sd_t1', 'sd_t2', 'rho']
    """

    structure = "hetar1"
    homogeneous = False
