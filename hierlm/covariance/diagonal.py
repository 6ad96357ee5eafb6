"""Independent random effects: ``Sigma = sigma^2 diag(s_1^2, ..., s_p^2)`` (glmmTMB ``diag``).

``psi_j = log(s_j r_j)`` (``r_j`` the column's root mean square, see
:mod:`hierlm.covariance.base`); with ``hom=True`` one SD for all columns,
``psi = log(s r)`` (glmmTMB's ``homdiag``).  ``R = I``, so ``T = diag(s)``: 6.0-7.8 us
(Python) and 2.6 us (the Numba kernel ``diag_kernel``, :mod:`hierlm.covariance.compiled`)
for p = 5 (``python -m benchmarks.structured_eval``).
"""

from __future__ import annotations

import numpy as np

from hierlm.covariance.base import Covariance


class Diagonal(Covariance):
    """``diag(0 + f | g)``: heterogeneous variances, no correlation.

    Examples
    --------
    >>> c = Diagonal(("a", "b"), "g", np.ones(2))
    >>> c.relative_covariance(np.log([2.0, 3.0])).round(12).tolist()
    [[4.0, 0.0], [0.0, 9.0]]
    >>> c.natural(np.log([2.0, 3.0]), 1.5).round(12).tolist(), c.labels()
    ([3.0, 4.5], ['g: sd_a', 'g: sd_b'])
    """

    structure = "diag"
    kernel_kind = "diag"

    def packed_cholesky(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``R = I``: ones on the diagonal, no correlation parameter."""
        return self._diag_packed.astype(float), np.zeros((self.n_theta, 0))

    def packed_lists(self, psi: np.ndarray) -> tuple[list[float], list[float]]:
        return self._diag_packed.astype(float).tolist(), []

    @property
    def n_psi(self) -> int:
        return 1 if self.homogeneous else self.p

    def sds(self, psi: np.ndarray) -> np.ndarray:
        return np.exp(self._log_sd(psi))

    def correlation(self, psi: np.ndarray) -> np.ndarray:
        return np.eye(self.p, dtype=np.asarray(psi).dtype)

    def correlation_from_natural(self, values: np.ndarray) -> np.ndarray:
        return self._eye

    def correlation_psi(self, R: np.ndarray) -> np.ndarray:
        return np.zeros(0)

    def psi_start(self) -> np.ndarray:
        return np.zeros(self.n_psi)

    def natural(self, psi: np.ndarray, sigma: float) -> np.ndarray:
        return np.array(self._sd_values(psi, sigma))

    def natural_names(self) -> list[str]:
        return self._sd_names()


class HomDiagonal(Diagonal):
    """``diag(0 + f | g, hom=True)``: one variance, no correlation (glmmTMB ``homdiag``).

    Examples
    --------
    >>> c = HomDiagonal(("a", "b"), "g", np.ones(2))
    >>> c.theta(np.array([np.log(2.0)])).tolist(), c.natural_names()
    ([2.0, 0.0, 2.0], ['sd'])
    """

    structure = "homdiag"
    homogeneous = True
