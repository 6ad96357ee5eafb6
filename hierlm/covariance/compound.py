"""Compound symmetry: one common correlation ``rho`` between all columns (glmmTMB ``cs``).

``Sigma = sigma^2 diag(s) R diag(s)`` with ``R = (1 - rho) I + rho 1 1'``, whose
eigenvalues are ``1 - rho`` (``p - 1`` times) and ``1 + (p - 1) rho``: ``R`` is positive
definite exactly for ``rho`` in ``(-1 / (p - 1), 1)``.  The unconstrained parameter is
``z`` with ``rho = lo + (1 - lo) / (1 + exp(-z))``, ``lo = -1 / (p - 1)``; ``z = -log(p -
1)`` is ``rho = 0``.  SDs as in :mod:`hierlm.covariance.base` (``hom=True``: one SD,
glmmTMB's ``homcs``).  A term with one column has no correlation parameter.

theta and its Jacobian come from ``chol(R)``'s closed form
(:meth:`CompoundSymmetry.packed_cholesky`), in Python or as the Numba kernel
``cs_kernel`` (:mod:`hierlm.covariance.compiled`): 11.1-12.9 us (Python) and 2.8 us
(kernel) for p = 5 against 70-71 us by the general path
(``python -m benchmarks.structured_eval``).
"""

from __future__ import annotations

import math

import numpy as np

from hierlm.covariance.base import LOG_SD_BOUNDS, Covariance

#: Bounds of ``z``: ``1 - sigmoid(24) = 4e-11``, as close to the limits as ``tanh(12)``.
CS_BOUNDS = (-24.0, 24.0)


class CompoundSymmetry(Covariance):
    """``cs(0 + f | g)``: heterogeneous SDs, one common correlation.

    Examples
    --------
    >>> c = CompoundSymmetry(("a", "b", "c"), "g", np.ones(3))
    >>> psi = np.array([0.0, 0.0, 0.0, 0.0])   # z = 0: rho = -1/2 + 3/2 * 1/2
    >>> c.correlation(psi).round(6).tolist()[0]
    [1.0, 0.25, 0.25]
    >>> c.natural_names(), c.natural(psi, 2.0).round(6).tolist()
    (['sd_a', 'sd_b', 'sd_c', 'rho'], [2.0, 2.0, 2.0, 0.25])
    """

    structure = "cs"
    kernel_kind = "cs"

    def __init__(self, coef_names: tuple[str, ...], group: str, rms: np.ndarray) -> None:
        super().__init__(coef_names, group, rms)
        self._col_diag = list(zip(self._cols.tolist(), self._diag_packed.tolist(), strict=True))

    def packed_cholesky(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``chol(R)`` in closed form.  Eliminating ``j`` columns of ``R`` leaves a
        compound-symmetric Schur complement with diagonal ``a_j = q e_j / e_{j-1}`` and
        off-diagonal ``b_j = rho q / e_{j-1}`` (``a_0 = 1``, ``b_0 = rho``), where
        ``q = 1 - rho`` and ``e_j = 1 + j rho``; so ``L_jj = sqrt(a_j)`` and ``L_ij =
        b_j / sqrt(a_j)`` (``i > j``).  ``e_j = (1 + j lo) + j (rho - lo)`` and ``q`` are
        formed from the sigmoid without cancellation.  With ``w = d rho / dz``:
        ``d log a_j = -w / q + j w / e_j - (j - 1) w / e_{j-1}`` and ``d b_j = w (q - rho
        - rho q (j - 1) / e_{j-1}) / e_{j-1}``."""
        lvec, dvec = self.packed_lists(psi)
        return np.array(lvec), np.array(dvec).reshape(self.n_theta, -1)

    def packed_lists(self, psi: np.ndarray) -> tuple[list[float], list[float]]:
        p = self.p
        if p == 1:
            return [1.0], []
        z = float(psi[-1])
        if z >= 0:
            ez = math.exp(-z)
            sig, sig_c = 1.0 / (1.0 + ez), ez / (1.0 + ez)      # sigmoid and 1 - sigmoid
        else:
            ez = math.exp(z)
            sig, sig_c = ez / (1.0 + ez), 1.0 / (1.0 + ez)
        width = 1.0 - self._lo
        u, q = width * sig, width * sig_c                     # rho - lo, 1 - rho
        rho = self._lo + u if sig < 0.5 else 1.0 - q
        w = width * sig * sig_c
        diag_l, off_l, diag_d, off_d = [1.0], [rho], [0.0], [w]
        e_prev = 1.0                                          # e_0 = 1 + 0 rho
        for j in range(1, p):
            e = (1.0 - j / (p - 1)) + j * u                   # e_j = 1 + j rho
            root = math.sqrt(q * e / e_prev)                  # sqrt(a_j)
            dlog_a = -sig + j * w / e - (j - 1.0) * w / e_prev   # w / q = sigmoid
            b = rho * q / e_prev
            db = w * ((q - rho) - rho * q * (j - 1.0) / e_prev) / e_prev
            diag_l.append(root)
            off_l.append(b / root)
            diag_d.append(0.5 * root * dlog_a)
            off_d.append(db / root - 0.5 * (b / root) * dlog_a)
            e_prev = e
        lvec = [diag_l[j] if on else off_l[j] for j, on in self._col_diag]
        dvec = [diag_d[j] if on else off_d[j] for j, on in self._col_diag]
        return lvec, dvec

    @property
    def _lo(self) -> float:
        return -1.0 / (self.p - 1)

    @property
    def n_psi(self) -> int:
        return (1 if self.homogeneous else self.p) + (1 if self.p > 1 else 0)

    def rho(self, psi: np.ndarray) -> np.ndarray:
        """The common correlation (0 for a one-column term)."""
        if self.p == 1:
            return np.zeros((), dtype=np.asarray(psi).dtype)
        lo = self._lo
        return lo + (1.0 - lo) / (1.0 + np.exp(-psi[-1]))

    def sds(self, psi: np.ndarray) -> np.ndarray:
        return np.exp(self._log_sd(psi))

    def correlation(self, psi: np.ndarray) -> np.ndarray:
        return self._eye + (1.0 - self._eye) * self.rho(psi)

    def psi_bounds(self) -> list[tuple[float, float]]:
        n_sd = 1 if self.homogeneous else self.p
        return [LOG_SD_BOUNDS] * n_sd + [CS_BOUNDS] * (self.n_psi - n_sd)

    def natural_bounds(self) -> list[tuple[float, float]]:
        n_sd = 1 if self.homogeneous else self.p
        return [(0.0, np.inf)] * n_sd + ([(self._lo, 1.0)] if self.p > 1 else [])

    def nuts_correlation_prior(self) -> tuple[str, int, float, float] | None:
        """``rho ~ Uniform(-1 / (p - 1), 1)``: the whole positive definite range."""
        return ("rho", 1, self._lo, 1.0) if self.p > 1 else None

    def correlation_from_natural(self, values: np.ndarray) -> np.ndarray:
        rho = float(values[0]) if self.p > 1 else 0.0
        return self._eye + (1.0 - self._eye) * rho

    def correlation_psi(self, R: np.ndarray) -> np.ndarray:
        if self.p == 1:
            return np.zeros(0)
        lo = self._lo
        rho = float(np.mean(R[np.tril_indices(self.p, -1)]))
        u = np.clip((rho - lo) / (1.0 - lo), 1e-300, 1.0 - 1e-16)
        return np.array([math.log(u) - math.log1p(-u)])

    def psi_start(self) -> np.ndarray:
        start = np.zeros(self.n_psi)
        if self.p > 1:
            start[-1] = -math.log(self.p - 1)
        return start

    def natural(self, psi: np.ndarray, sigma: float) -> np.ndarray:
        out = self._sd_values(psi, sigma)
        if self.p > 1:
            out.append(float(self.rho(np.asarray(psi, dtype=float))))
        return np.array(out)

    def natural_names(self) -> list[str]:
        return self._sd_names() + (["rho"] if self.p > 1 else [])


class HomCompoundSymmetry(CompoundSymmetry):
    """``cs(0 + f | g, hom=True)``: one SD, one common correlation (glmmTMB ``homcs``).

    Examples
    --------
    >>> c = HomCompoundSymmetry(("a", "b"), "g", np.ones(2))
    >>> c.relative_covariance(np.array([np.log(2.0), 0.0])).round(6).tolist()
    [[4.0, 0.0], [0.0, 4.0]]
    """

    structure = "homcs"
    homogeneous = True
