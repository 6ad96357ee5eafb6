"""Unstructured covariance (lme4's ``(1 + x | g)``, glmmTMB ``us``): ``psi = theta``.

Every positive semi-definite ``Sigma = sigma^2 T T'`` is allowed; the parameters are
the template's lower triangle itself, column by column, so an unstructured term keeps
lme4's parameterization and hierlm's theta optimizer exactly.  The natural parameters
are the SDs ``sd_j = sigma sqrt((T T')_jj)`` and correlations ``cor_jk``, in the packing
order of theta (lme4's ``confint`` order).
"""

from __future__ import annotations

import functools

import numpy as np

from hierlm.covariance.base import Covariance
from hierlm.covariance.layout import psd_cholesky, tril_colmajor


@functools.cache
def _identity(k: int) -> np.ndarray:
    """The read-only ``k x k`` identity (the Jacobian of every unstructured term of size k)."""
    eye = np.eye(k)
    eye.setflags(write=False)
    return eye


class Unstructured(Covariance):
    """``us(1 + x | g)`` or ``(1 + x | g)``.

    Examples
    --------
    >>> c = Unstructured(("(Intercept)", "Days"), "Subject", np.ones(2))
    >>> c.theta(np.array([1.0, 0.5, 2.0])).tolist(), c.n_psi
    ([1.0, 0.5, 2.0], 3)
    >>> c.natural(np.array([1.0, 0.0, 0.5]), 2.0).tolist()
    [2.0, 0.0, 1.0]
    >>> c.labels()
    ['Subject: sd_(Intercept)', 'Subject: cor_Days.(Intercept)', 'Subject: sd_Days']
    """

    structure = "us"

    def __init__(self, coef_names: tuple[str, ...], group: str, rms: np.ndarray) -> None:
        super().__init__(coef_names, group, rms)
        self._identity = _identity(self.n_theta)

    @property
    def n_psi(self) -> int:
        return self.n_theta

    def template(self, psi: np.ndarray) -> np.ndarray:
        psi = np.asarray(psi)
        rows, cols = tril_colmajor(self.p)
        T = np.zeros((self.p, self.p), dtype=psi.dtype)
        T[rows, cols] = psi
        return T

    def theta(self, psi: np.ndarray) -> np.ndarray:
        return np.array(psi, copy=True)

    def jacobian(self, psi: np.ndarray) -> np.ndarray:
        return np.eye(self.n_theta)

    def theta_jacobian(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta = np.array(psi, dtype=float, copy=True)
        theta.setflags(write=False)
        return theta, self._identity

    def theta_jacobian_general(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.theta_jacobian(psi)

    def sds(self, psi: np.ndarray) -> np.ndarray:
        T = self.template(np.asarray(psi, dtype=float))
        return np.sqrt(np.sum(T * T, axis=1))

    def correlation(self, psi: np.ndarray) -> np.ndarray:
        T = self.template(np.asarray(psi, dtype=float))
        S = T @ T.T
        sd = np.sqrt(np.diag(S))
        with np.errstate(invalid="ignore", divide="ignore"):
            R = S / np.outer(sd, sd)
        np.fill_diagonal(R, 1.0)
        return R

    def natural_bounds(self) -> list[tuple[float, float]]:
        return [(0.0, np.inf) if r == c else (-1.0, 1.0)
                for r, c in zip(self._rows, self._cols, strict=True)]

    def theta_from_natural(self, values: np.ndarray, sigma: float) -> np.ndarray:
        sd = np.zeros(self.p)
        R = np.eye(self.p)
        for (r, c), v in zip(zip(self._rows, self._cols, strict=True), values, strict=True):
            if r == c:
                sd[r] = v / sigma
            else:
                R[r, c] = R[c, r] = v
        if np.any(sd < 0):
            raise ValueError("standard deviations must be non-negative")
        return psd_cholesky(sd[:, None] * R * sd[None, :])[self._rows, self._cols]

    def psi_from_theta(self, theta: np.ndarray) -> np.ndarray:
        return np.array(theta, dtype=float, copy=True)

    def psi_start(self) -> np.ndarray:
        rows, cols = tril_colmajor(self.p)
        return np.where(rows == cols, 1.0 / self.rms[rows], 0.0)

    def psi_kinds(self) -> list[str]:
        return ["theta"] * self.n_psi

    def psi_bounds(self) -> list[tuple[float, float]]:
        return [(-np.inf, np.inf)] * self.n_psi

    def natural(self, psi: np.ndarray, sigma: float) -> np.ndarray:
        sd = self.sds(psi)
        R = self.correlation(psi)
        rows, cols = tril_colmajor(self.p)
        return np.array([sigma * sd[r] if r == c else (R[r, c] if sd[r] * sd[c] > 0 else np.nan)
                         for r, c in zip(rows, cols, strict=True)])

    def natural_names(self) -> list[str]:
        rows, cols = tril_colmajor(self.p)
        return [f"sd_{self.coef_names[r]}" if r == c
                else f"cor_{self.coef_names[r]}.{self.coef_names[c]}"
                for r, c in zip(rows, cols, strict=True)]
