"""The covariance object of one random-effects term: psi -> template -> theta.

A term with ``p`` coefficients per level has the covariance ``Sigma = sigma^2 T T'``,
``T`` its lower-triangular template (lme4's; theta packs ``T``'s lower triangle column
by column, :mod:`hierlm.covariance.layout`).  A *structure* restricts ``Sigma`` to a
family with its own parameter vector ``psi``, unconstrained for the optimizer:

* relative SDs ``s_j = exp(psi_j) / r_j`` (``r_j`` the root mean square of column ``j``
  of the term's model matrix, so that ``psi = 0`` is lme4's identity start and rescaling
  a predictor only shifts ``psi``); a homogeneous structure has one ``s = exp(psi) / r``
  with ``r`` the geometric mean of the ``r_j``;
* a correlation matrix ``R(psi)`` that is positive definite for every ``psi``;
* the template ``T = diag(s) chol(R)``, so that ``T T' = diag(s) R diag(s) = Sigma /
  sigma^2``.

The Jacobian ``d theta / d psi`` is exact: a log SD scales its rows of ``T``
(``d T / d psi_j = e_j e_j' T``; all rows for a homogeneous SD), and a correlation
parameter moves ``L = chol(R)`` by Murray's formula (2016) from ``dR`` by the complex
step (:mod:`hierlm.covariance.general_path`).  ``psi`` has lower and upper bounds only
to keep the map finite and ``R`` numerically positive definite: a log relative SD of
-25 is an SD of 1e-11 column units (zero for every purpose), and a correlation parameter of +-12
is a correlation within 1e-5 of its limit (``tanh(12) = 1 - 8e-11``).

That general path is the reference (:meth:`Covariance.theta_jacobian_general`);
the optimizer calls :meth:`Covariance.theta_jacobian`, the closed forms of each
structure (``ar1``'s explicit factor, ``cs``'s Schur complements, ``toep``'s
differentiated Durbin-Levinson predictors, ``diag``'s identity) in one pass for theta
and J, the last point kept: as Python code first, as Numba kernels of the same values
once they are worth loading (:mod:`hierlm.covariance.compiled`, where the times are).
"""

from __future__ import annotations

import functools
import math
import time
from typing import ClassVar

import numpy as np

from hierlm.covariance import compiled, general_path
from hierlm.covariance.cholesky import cholesky
from hierlm.covariance.layout import psd_cholesky, tril_colmajor
from hierlm.covariance.nuts_params import NutsCorrelation
from hierlm.covariance.term_layout import TermLayout

#: Bounds of a log relative SD (column units) and of an unconstrained correlation parameter.
LOG_SD_BOUNDS = (-25.0, 25.0)
CORR_BOUNDS = (-12.0, 12.0)


@functools.cache
def _layout_constants(p: int) -> tuple[np.ndarray, ...]:
    """Index arrays of a ``p x p`` template (read-only): rows and columns of theta's
    entries, ``|i - j|`` of the template, the lower half (diagonal 1/2), each entry's
    row as a one-hot row (the SD part of the Jacobian), each entry's lag, whether it is
    in the first column or on the diagonal, and the entries' positions."""
    rows, cols = tril_colmajor(p)
    eye = np.eye(p)
    out = (rows, cols, np.abs(np.subtract.outer(np.arange(p), np.arange(p))),
           np.tril(np.ones((p, p))) - 0.5 * eye,
           (rows[:, None] == np.arange(p)[None, :]).astype(float),
           rows - cols, cols == 0, rows == cols, np.arange(p * (p + 1) // 2))
    for a in out:
        a.setflags(write=False)
    return out


class Covariance(TermLayout, NutsCorrelation):
    """A term's covariance structure: parameters ``psi``, template, names.

    Its theta layout (template positions, pack/unpack, sign flips) is
    :class:`~hierlm.covariance.term_layout.TermLayout`'s, its parameterization for NUTS
    :class:`~hierlm.covariance.nuts_params.NutsCorrelation`'s.  Subclasses set
    :attr:`structure` and implement :meth:`sds`, :meth:`correlation`,
    :meth:`psi_start`, :meth:`psi_bounds`, :meth:`natural` and :meth:`natural_names`.

    Parameters
    ----------
    coef_names : tuple of str
        The term's column names (``p`` of them), in order.
    group : str
        The grouping factor's label (lme4's, ``"Subject"``, ``"Subject.1"``).
    rms : ndarray
        Root mean square of each column of the term's model matrix (positive).
    """

    structure: ClassVar[str] = ""
    #: A homogeneous structure has one SD for all columns.
    homogeneous: ClassVar[bool] = False
    #: The structure's Numba kernel (:mod:`hierlm.covariance.compiled`); "" for none.
    kernel_kind: ClassVar[str] = ""

    def __init__(self, coef_names: tuple[str, ...], group: str, rms: np.ndarray) -> None:
        self.coef_names = tuple(coef_names)
        self.group = group
        self.rms = np.asarray(rms, dtype=float)
        self.p = len(self.coef_names)
        self.n_theta = self.p * (self.p + 1) // 2
        # the index arrays of a p x p template, shared by every term of that size
        # (read-only; 0.015 ms a term to make afresh)
        (self._rows, self._cols, self._lag, self._lower_half, self._row_onehot,
         self._lag_packed, self._first_col, self._diag_packed,
         self._entries) = _layout_constants(self.p)
        self._eye = np.eye(self.p)  # (returned to callers by some structures: not shared)
        self._log_rms = np.log(self.rms)
        # log of the geometric mean (np.mean's own steps, a sum divided by p: the same
        # number without its wrapper, 5-20 us between fits)
        self._log_r = float(np.add.reduce(self._log_rms) / self.p)
        self._n_sd = 1 if self.homogeneous else self.p
        self._rows_list = self._rows.tolist()
        self._log_rms_list = self._log_rms.tolist()
        self._last: tuple[bytes, np.ndarray, np.ndarray] | None = None  # theta_jacobian's
        # the kernels' s_j = exp(psi_sd(j) - log_scale_j), as _log_sd
        self._log_scale = np.ascontiguousarray(
            np.full(self.p, self._log_r) if self.homogeneous else self._log_rms, dtype=float)
        self._kernel: compiled.Kernel | None = None
        self._J_shape = (self.n_theta, 0)          # (n_theta, n_psi) once a kernel is set

    @property
    def kernel_log_scale(self) -> np.ndarray:
        """``log_scale`` of the structure's kernel (:mod:`hierlm.covariance.jit`): the
        log column RMS, or their mean repeated for a homogeneous structure.

        Examples
        --------
        >>> from hierlm.covariance.ar1 import AR1
        >>> AR1(("t1", "t2"), "g", np.array([1.0, np.e ** 2])).kernel_log_scale.tolist()
        [1.0, 1.0]
        """
        return self._log_scale

    # --- to be supplied by a structure -------------------------------------------------
    @property
    def n_psi(self) -> int:
        """Number of parameters of the structure."""
        raise NotImplementedError

    def sds(self, psi: np.ndarray) -> np.ndarray:
        """Relative SDs ``s_j`` (SD of column ``j`` over sigma), shape ``(p,)``."""
        raise NotImplementedError

    def correlation(self, psi: np.ndarray) -> np.ndarray:
        """The correlation matrix ``R(psi)``, ``p x p``."""
        raise NotImplementedError

    def correlation_psi(self, R: np.ndarray) -> np.ndarray:
        """The correlation part of psi that gives the correlation matrix ``R``."""
        raise NotImplementedError

    def natural_bounds(self) -> list[tuple[float, float]]:
        """Bounds of :meth:`natural`: SDs ``[0, inf)``, correlations their structure's range."""
        n_sd = 1 if self.homogeneous else self.p
        return [(0.0, np.inf)] * n_sd + [(-1.0, 1.0)] * (len(self.natural_names()) - n_sd)

    def correlation_from_natural(self, values: np.ndarray) -> np.ndarray:
        """``R`` from the correlation part of :meth:`natural`."""
        raise NotImplementedError

    def theta_from_natural(self, values: np.ndarray, sigma: float) -> np.ndarray:
        """The term's theta from its :meth:`natural` parameters; ValueError if they give no
        positive semi-definite covariance.

        Examples
        --------
        >>> from hierlm.covariance.ar1 import AR1
        >>> c = AR1(("t1", "t2"), "g", np.ones(2))
        >>> c.theta_from_natural(np.array([2.0, 0.6]), 2.0).round(12).tolist()
        [1.0, 0.6, 0.8]
        """
        values = np.asarray(values, dtype=float)
        n_sd = 1 if self.homogeneous else self.p
        sd = np.broadcast_to(values[:n_sd], (self.p,)) / sigma
        if np.any(sd < 0) or not np.all(np.isfinite(values)):
            raise ValueError("standard deviations must be non-negative and finite")
        for v, (lo, hi) in zip(values[n_sd:], self.natural_bounds()[n_sd:], strict=True):
            if not lo <= v <= hi:
                raise ValueError(f"correlation {v} outside [{lo}, {hi}]")
        R = self.correlation_from_natural(values[n_sd:])
        return psd_cholesky(sd[:, None] * R * sd[None, :])[self._rows, self._cols]

    def psi_from_theta(self, theta: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`theta` on the structure's family (clipped to the bounds).

        The SDs are ``sqrt(diag(T T'))`` (their mean for a homogeneous structure: all are
        equal on the family), the correlation parameters are read off ``R``.

        Examples
        --------
        >>> from hierlm.covariance.ar1 import AR1
        >>> c = AR1(("t1", "t2", "t3"), "g", np.ones(3))
        >>> c.psi_from_theta(c.theta(np.array([0.3, -0.4]))).round(12).tolist()
        [0.3, -0.4]
        """
        rows, cols = tril_colmajor(self.p)
        T = np.zeros((self.p, self.p))
        T[rows, cols] = theta
        S = T @ T.T
        sd = np.sqrt(np.clip(np.diag(S), 1e-300, None))
        R = S / np.outer(sd, sd)
        if self.homogeneous:
            r = math.exp(float(np.mean(np.log(self.rms))))
            log_sd = np.array([math.log(float(np.mean(sd)) * r)])
        else:
            log_sd = np.log(sd * self.rms)
        psi = np.concatenate([log_sd, self.correlation_psi(R)])
        bounds = np.array(self.psi_bounds())
        return np.clip(psi, bounds[:, 0], bounds[:, 1])

    def psi_start(self) -> np.ndarray:
        """Starting value: relative SDs ``1 / r_j`` (lme4's identity start), correlations 0."""
        raise NotImplementedError

    def natural(self, psi: np.ndarray, sigma: float) -> np.ndarray:
        """The structure's own parameters on the response scale, in :meth:`natural_names` order."""
        raise NotImplementedError

    def natural_names(self) -> list[str]:
        """Short names of :meth:`natural` (``sd_t1``, ``sd``, ``rho``, ``rho_lag2``)."""
        raise NotImplementedError

    # --- shared ------------------------------------------------------------------------
    def psi_bounds(self) -> list[tuple[float, float]]:
        """Bounds of each psi component (wide: they keep ``exp`` finite)."""
        n_sd = 1 if self.homogeneous else self.p
        return [LOG_SD_BOUNDS] * n_sd + [CORR_BOUNDS] * (self.n_psi - n_sd)

    def psi_kinds(self) -> list[str]:
        """What each psi component is: ``"log_sd"`` or ``"corr"`` (unconstrained)."""
        n_sd = 1 if self.homogeneous else self.p
        return ["log_sd"] * n_sd + ["corr"] * (self.n_psi - n_sd)

    def _log_sd(self, psi: np.ndarray) -> np.ndarray:
        """The log relative SDs of each column from psi's leading SD part."""
        if self.homogeneous:
            return np.full(self.p, psi[0] - self._log_r, dtype=psi.dtype)
        return psi[:self.p] - self._log_rms

    def template(self, psi: np.ndarray) -> np.ndarray:
        """``T = diag(s) chol(R)``."""
        psi = np.asarray(psi, dtype=float)
        return self.sds(psi)[:, None] * cholesky(self.correlation(psi))

    def relative_covariance(self, psi: np.ndarray) -> np.ndarray:
        """``Sigma / sigma^2 = diag(s) R diag(s)``."""
        s = self.sds(np.asarray(psi, dtype=float))
        return s[:, None] * self.correlation(np.asarray(psi, dtype=float)) * s[None, :]

    def theta(self, psi: np.ndarray) -> np.ndarray:
        """The term's slice of theta: ``T``'s lower triangle, column by column.

        Examples
        --------
        >>> from hierlm.covariance.compound import CompoundSymmetry
        >>> c = CompoundSymmetry(("a", "b"), "g", np.ones(2))
        >>> c.theta(np.array([0.0, 0.0, 0.0])).round(6).tolist()
        [1.0, 0.0, 1.0]
        """
        return self.theta_jacobian(psi)[0].copy()

    def jacobian(self, psi: np.ndarray) -> np.ndarray:
        """``d theta / d psi``, shape ``(n_theta, n_psi)`` (exact).

        Examples
        --------
        >>> from hierlm.covariance.diagonal import Diagonal
        >>> Diagonal(("a", "b"), "g", np.ones(2)).jacobian(np.zeros(2)).tolist()
        [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
        """
        return self.theta_jacobian(psi)[1].copy()

    def theta_jacobian(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``theta(psi)`` and ``d theta / d psi`` in one pass, read-only.

        The last point's pair is kept: an optimizer asks for the value and then the
        gradient at the same ``psi``.  A structure with a closed-form Cholesky factor of
        its correlation matrix (:meth:`packed_cholesky`) is computed from it; the others
        take :meth:`theta_jacobian_general`.

        Examples
        --------
        >>> from hierlm.covariance.ar1 import AR1
        >>> theta, J = AR1(("t1", "t2"), "g", np.ones(2)).theta_jacobian(np.zeros(2))
        >>> theta.tolist(), J.tolist()
        ([1.0, 0.0, 1.0], [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
        """
        psi = np.asarray(psi, dtype=float)
        key = psi.tobytes()
        last = self._last
        if last is not None and last[0] == key:
            return last[1], last[2]
        kern = self._kernel
        if kern is None and self.kernel_kind and (kern := compiled.kernel(self.kernel_kind)):
            self._kernel, self._J_shape = kern, (self.n_theta, self.n_psi)
        if kern is not None:
            if psi.shape != self._J_shape[1:]:
                raise ValueError(f"psi must have length {self.n_psi}, got shape {psi.shape}")
            flags = psi.flags
            theta, J = np.empty(self.n_theta), np.empty(self._J_shape)
            kern(psi if flags.c_contiguous and flags.writeable else psi.copy(),
                 self._log_scale, self.homogeneous, theta, J)
        elif self.kernel_kind:
            t0 = time.perf_counter()
            theta, J = self.theta_jacobian_python(psi)
            compiled.charge(self.kernel_kind, time.perf_counter() - t0)
        else:
            theta, J = self.theta_jacobian_python(psi)
        theta.setflags(write=False)
        J.setflags(write=False)
        self._last = (key, theta, J)
        return theta, J

    def theta_jacobian_python(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """theta and J by the structure's NumPy/Python closed form (no Numba, no cache):
        what :meth:`theta_jacobian` runs until the structure's kernel is loaded."""
        psi = np.asarray(psi, dtype=float)
        lists = self.packed_lists(psi)
        if lists is not None:
            return self._from_lists(psi, *lists)
        if (packed := self.packed_cholesky(psi)) is not None:
            return self._from_packed(psi, *packed)
        return self.theta_jacobian_general(psi)

    def packed_cholesky(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``chol(R)``'s lower triangle packed as theta (``l``, shape ``(n_theta,)``) and
        ``d l / d psi`` over the correlation parameters (``(n_theta, n_psi - n_sd)``), in
        closed form; None where the structure has none (then the general path is used)."""
        return None

    def packed_lists(self, psi: np.ndarray) -> tuple[list[float], list[float]] | None:
        """:meth:`packed_cholesky` as Python floats, for a structure with at most one
        correlation parameter (``ar1``, ``cs``): the terms are small, and a few hundred
        float operations cost less than numpy's per-call overhead.  None elsewhere."""
        return None

    def _from_lists(self, psi: np.ndarray, lvec: list[float], dvec: list[float]
                    ) -> tuple[np.ndarray, np.ndarray]:
        """theta and J from :meth:`packed_lists`: ``T = diag(s) L``."""
        if self.homogeneous:
            s = math.exp(float(psi[0]) - self._log_r)
            s_rows = [s] * self.n_theta
        else:
            sd = [math.exp(v - w) for v, w in zip(psi[:self.p].tolist(), self._log_rms_list,
                                                  strict=True)]
            s_rows = [sd[r] for r in self._rows_list]
        theta = np.array([a * b for a, b in zip(s_rows, lvec, strict=True)])
        J = np.zeros((self.n_theta, self.n_psi))
        if self.homogeneous:
            J[:, 0] = theta
        else:
            J[self._entries, self._rows] = theta
        if dvec:
            J[:, self._n_sd] = [a * b for a, b in zip(s_rows, dvec, strict=True)]
        return theta, J

    def _from_packed(self, psi: np.ndarray, lvec: np.ndarray, dl: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """theta and J from the packed correlation factor: ``T = diag(s) L``."""
        s_rows = self.sds(psi)[self._rows]
        theta = s_rows * lvec
        J = np.empty((self.n_theta, self.n_psi))
        if self.homogeneous:
            J[:, 0] = theta
        else:
            np.multiply(theta[:, None], self._row_onehot, out=J[:, :self.p])
        if dl.shape[1]:
            np.multiply(s_rows[:, None], dl, out=J[:, self._n_sd:])
        return theta, J

    def theta_jacobian_general(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """theta and ``d theta / d psi`` by the general path
        (:mod:`hierlm.covariance.general_path`): the closed forms' reference.

        Examples
        --------
        >>> from hierlm.covariance.diagonal import Diagonal
        >>> Diagonal(("a", "b"), "g", np.ones(2)).theta_jacobian_general(np.zeros(2))[1].tolist()
        [[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]
        """
        return general_path.theta_jacobian_general(self, psi)

    def correlation_derivatives(self, psi: np.ndarray) -> list[np.ndarray]:
        """``d R / d psi_k`` for each correlation parameter, by the complex step."""
        return general_path.complex_step_derivatives(self, psi)

    def names(self) -> list[str]:
        """lme4-style names of :meth:`natural`: ``sd_t1|Subject``, ``rho|Subject``."""
        return [f"{n}|{self.group}" for n in self.natural_names()]

    def labels(self) -> list[str]:
        """Names of :meth:`natural` in ``FitResult.covariance_parameters``: ``Subject: rho``."""
        return [f"{self.group}: {n}" for n in self.natural_names()]

    def _sd_names(self) -> list[str]:
        return ["sd"] if self.homogeneous else [f"sd_{c}" for c in self.coef_names]

    def _sd_values(self, psi: np.ndarray, sigma: float) -> list[float]:
        s = sigma * self.sds(np.asarray(psi, dtype=float))
        return [float(s[0])] if self.homogeneous else [float(v) for v in s]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.structure}, p={self.p}, group={self.group!r})"
