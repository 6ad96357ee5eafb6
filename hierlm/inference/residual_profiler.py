"""Profile likelihood of every parameter of a fit with ``residual=`` / ``sigma=``.

As lme4's ``profile.merMod`` and :mod:`hierlm.inference.profile`: the ML deviance (a
REML fit is refitted by ML first) with one parameter held fixed and all others
minimized over.  With ``z`` the unconstrained residual parameters
(:mod:`hierlm.estimate.residual_fit`) the deviance is the whitened model's plus
``log|R0(z)|`` (:mod:`hierlm.objective.residual_gram`)::

    d(theta, sigma, z) = log|L_theta(z)|^2 + n log(2 pi sigma^2) + r^2(theta, z) / sigma^2
                         + log|R0(z)|,

beta profiled out.  The parameters, in this order: lme4's sd/cor parameters (or a
structure's own, below) and sigma,
the residual parameters (``rho`` = phi or the CS correlation on its own scale, the log
SD ratios), then the fixed effects.  For each the inner minimization runs jointly over
the other variance parameters and ``z``:

* an SD or correlation at ``c``: over the other sd/cor parameters, sigma and ``z``;
* sigma at ``c``: over theta (unbounded, as :mod:`hierlm.inference.profile_inner`
  explains) and ``z``, started from the random effects' SDs of the fit and each term's
  rank-reduced covariance;
* a residual parameter at ``c``: over theta and the other ``z`` (sigma in closed form);
* ``beta_j = b``: over theta and ``z``, the other coefficients and sigma in closed
  form (:meth:`hierlm.inference.profile.Profiler._dev_beta` on the whitened model).

A random term with a structured covariance (``diag``, ``cs``, ``ar1``, ``toep``) is
profiled on its structure's own parameters instead of lme4's sd/cor ones (SDs, ``rho``,
lag correlations, named as :mod:`hierlm.inference.profile` names them), and the inner
minimizations of sigma, the residual parameters and the fixed effects run over the
structures' ``psi`` (bounded as in the fit) instead of theta; sigma's start shifts
their log SDs by ``log(sigma-hat / c)``.  The fit itself is over psi
(:mod:`hierlm.estimate.residual_fit`).

``zeta``, the continuation starts, the several-starts inner minimizations
(:func:`hierlm.inference.profile_inner.minimize_starts`) and the endpoint search
(Brent on a bracket; a parameter's bound where the profile stays below the cutoff) are
:class:`hierlm.inference.profile.Profiler`'s.  A correlation's ``z`` is kept within
``|z| <= Z_MAX - 1`` (phi within 1e-9 of +-1), where ``C`` is still numerically
positive definite.  The inner minimizations use central differences of ``d`` (each a
whitening and a compiled evaluation), so a profile costs more than lme4's; it is
meant for the small and medium data nlme handles.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import theta_lower
from hierlm.covariance.parameters import parameter_names, sdcor_from_theta, theta_from_sdcor
from hierlm.estimate.boundary import face_starts
from hierlm.estimate.residual_fit import (
    Z_MAX,
    ResidualProfile,
    _cs_lower,
    to_unconstrained,
)
from hierlm.inference.profile import Profiler, _bounds, confint_of, ml_fit, table_of
from hierlm.inference.profile_inner import minimize_starts

#: Whitened objectives kept (by ``z``) for repeated points.
_KEEP = 16
#: Largest ``|z|`` of the correlation in the inner minimizations.
Z_INNER = Z_MAX - 1.0


class ResidualProfiler(Profiler):
    """Profiles of one ML fit with a residual structure (module docstring)."""

    def __init__(self, ml: Any) -> None:
        model = ml.model
        self.fit = ml
        self.rd = model.residual
        self.design = model.design
        self.n = self.design.nobs
        self.cov = DesignCovariance.of(self.design)
        self.structured = self.cov.structured
        self.rp = ResidualProfile(self.design, self.rd, reml=False)
        self.rp.backend = "numba"  # thousands of evaluations
        par = ml.residual_parameters.to_numpy(dtype=float)
        self.nc = self.rd.n_corr
        self.z_hat = to_unconstrained(self.rd, float(par[0]) if self.nc else 0.0,
                                      par[self.nc:])
        self.m = len(self.z_hat)
        self.theta_hat = np.asarray(ml.theta, dtype=float)
        if self.structured:
            # the structures' own parameters (as Profiler's), the inner searches over psi
            self.psi_hat = self.cov.psi_from_theta(ml.theta)
            self.s_hat = self._natural(np.append(self.psi_hat, ml.sigma))
            self.bounds = self.cov.natural_bounds() + [(0.0, np.inf)]
            var_names = self.cov.names() + ["sigma"]
        else:
            self.s_hat = sdcor_from_theta(self.design, ml.theta, ml.sigma)
            self.bounds = _bounds(self.design)
            var_names = parameter_names(self.design)
        self.k = len(self.s_hat)
        self.names = (var_names + list(ml.residual_parameters.index)
                      + list(ml.fixef.index))
        self.estimates = np.concatenate([self.s_hat, par, ml.fixef.to_numpy()])
        self._objs: dict[bytes, tuple[Any, float, dict[bytes, Any]]] = {}
        self._memo = {}
        self._use(self.z_hat)
        self.base = self._dev_theta(self.theta_hat, ml.sigma) + self._logdet
        rscale = [0.1] * self.nc + [0.2] * (self.m - self.nc)
        self.scale = np.concatenate([self._wald_se_sdcor(), rscale, ml.fixef_se.to_numpy()])
        self._starts = {}

    # -- the whitened model at z ---------------------------------------------------
    def _use(self, z: np.ndarray) -> bool:
        """Make the whitened model at ``z`` current; False where ``R0(z)`` is singular."""
        z = np.asarray(z, dtype=float)
        key = z.tobytes()
        hit = self._objs.get(key)
        if hit is None:
            if np.any(np.abs(z[:self.nc]) > Z_MAX) or not np.all(np.isfinite(z)):
                return False
            with np.errstate(all="ignore"):
                obj, logdet = self.rp.objective_at(z)
            if not (np.isfinite(logdet) and np.all(np.isfinite(obj.gram.A_RR))):
                return False
            if len(self._objs) >= _KEEP:
                self._objs.pop(next(iter(self._objs)))
            hit = self._objs[key] = (obj, float(logdet), {})
        self.objective, self._logdet, self._memo = hit
        return True

    def _dev(self, theta: np.ndarray, sigma: float, z: np.ndarray) -> float:
        if not self._use(z):
            return 1e300
        val = self._dev_theta(theta, sigma) + self._logdet
        return val if np.isfinite(val) else 1e300

    def _dev_profiled_sigma(self, theta: np.ndarray, z: np.ndarray) -> float:
        if not self._use(z):
            return 1e300
        logdet, r2, _ = self._parts(np.asarray(theta, dtype=float))
        val = logdet + self.n * (1.0 + np.log(2 * np.pi * r2 / self.n)) + self._logdet
        return float(val) if np.isfinite(val) else 1e300

    # -- parameters ----------------------------------------------------------------
    @property
    def sigma_index(self) -> int:
        """The index of sigma in :attr:`names`."""
        return self.k - 1

    def param_bounds(self, w: int) -> tuple[float, float]:
        """The range of parameter ``w``: sd/cor and sigma as lme4's, phi (-1, 1) or
        (0, 1), a CS correlation (-1 / (k_max - 1), 1)."""
        if w < self.k:
            return self.bounds[w]
        j = w - self.k
        if j < self.nc and self.rd.spec is not None:
            lo = {"ar1": -1.0, "car1": 0.0}.get(self.rd.spec.kind)
            return (lo if lo is not None else _cs_lower(self.rd), 1.0)
        return (-np.inf, np.inf)

    def _z_of(self, j: int, c: float) -> float:
        """The unconstrained value of residual parameter ``j`` at ``c``."""
        if j >= self.nc:
            return float(c)
        with np.errstate(all="ignore"):
            z = float(to_unconstrained(self.rd, c, np.zeros(0))[0])
        return float(np.clip(np.nan_to_num(z, nan=0.0), -Z_INNER, Z_INNER))

    def _theta_sigma(self, s: np.ndarray) -> tuple[np.ndarray, float]:
        """``(theta, sigma)`` of the variance parameters ``s`` (ValueError off range)."""
        if self.structured:
            return self.cov.theta_from_natural(s)
        return theta_from_sdcor(self.design, s)

    def _theta_of(self, x: np.ndarray) -> np.ndarray:
        """theta of the inner searches' variance part: the structures' psi, or theta."""
        return self.cov.theta(x) if self.structured else x

    def _free(self, sigma_fixed: bool) -> tuple[np.ndarray, list[tuple[Any, Any]]]:
        """The inner searches' variance part: its estimate and box (psi's bounds; theta
        unbounded where sigma is held, as :mod:`hierlm.inference.profile_inner` says,
        else with lme4's lower bounds)."""
        if self.structured:
            return self.psi_hat, list(self.cov.psi_bounds())
        if sigma_fixed:
            return self.theta_hat, [(None, None)] * len(self.theta_hat)
        return self.theta_hat, [(lo if lo == 0.0 else None, None)
                                for lo in theta_lower(self.design)]

    def zeta(self, w: int, c: float) -> float:
        """zeta of parameter ``w`` (index into :attr:`names`) at value ``c``."""
        k, m = self.k, self.m
        zb: list[tuple[Any, Any]] = [(-Z_INNER, Z_INNER)] * self.nc + [(None, None)] * (
            m - self.nc)
        follow_all = False
        if w < k - 1:
            free = [i for i in range(k) if i != w]
            nf = len(free)
            starts = self._starts_for(w, c, np.concatenate([self.s_hat[free], self.z_hat]))
            bounds = [self.bounds[i] for i in free] + zb

            def fn(x: np.ndarray) -> float:
                s = self.s_hat.copy()
                s[free] = x[:nf]
                s[w] = c
                try:
                    theta, sigma = self._theta_sigma(s)
                except ValueError:
                    return 1e300
                return self._dev(theta, sigma, x[nf:])
        elif w == k - 1:
            v_hat, v_b = self._free(sigma_fixed=True)
            kv = len(v_hat)
            if self.structured:  # the random effects' SDs of the fit
                keep = v_hat + np.where(np.array(self.cov.psi_kinds()) == "log_sd",
                                        np.log(self.fit.sigma / c), 0.0)
                faces: list[np.ndarray] = []
            else:
                keep = v_hat * (self.fit.sigma / c)
                faces = face_starts(self.design, keep)
            starts = [*self._starts_for(w, c, np.concatenate([keep, self.z_hat])),
                      *(np.concatenate([f, self.z_hat]) for f in faces)]
            bounds = v_b + zb
            follow_all = True

            def fn(x: np.ndarray) -> float:
                return self._dev(self._theta_of(x[:kv]), c, x[kv:])
        elif w < k + m:
            j = w - k
            others = [i for i in range(m) if i != j]
            zj = self._z_of(j, c)
            v_hat, v_b = self._free(sigma_fixed=False)
            kv = len(v_hat)
            starts = self._starts_for(w, c, np.concatenate([v_hat, self.z_hat[others]]))
            bounds = v_b + [zb[i] for i in others]

            def fn(x: np.ndarray) -> float:
                z = np.empty(m)
                z[j] = zj
                z[others] = x[kv:]
                return self._dev_profiled_sigma(self._theta_of(x[:kv]), z)
        else:
            j = w - k - m
            v_hat, v_b = self._free(sigma_fixed=False)
            kv = len(v_hat)
            starts = self._starts_for(w, c, np.concatenate([v_hat, self.z_hat]))
            bounds = v_b + zb

            def fn(x: np.ndarray) -> float:
                if not self._use(x[kv:]):
                    return 1e300
                val = self._dev_beta(self._theta_of(x[:kv]), j, c) + self._logdet
                return val if np.isfinite(val) else 1e300

        dmin, x = minimize_starts(fn, starts, bounds, follow_all=follow_all)
        self._starts.setdefault(w, []).append((c, x))
        diff = max(dmin - self.base, 0.0)
        return float(np.sign(c - self.estimates[w]) * np.sqrt(diff))


def residual_profiler(res: Any) -> ResidualProfiler:
    """A :class:`ResidualProfiler` of the ML refit of ``res`` (needs ``res.model``)."""
    return ResidualProfiler(ml_fit(res, residual_ok=True))


def residual_confint(res: Any, level: float = 0.95) -> pd.DataFrame:
    """Profile intervals ``lower, upper`` of every parameter of a fit with
    ``residual=`` / ``sigma=`` (module docstring).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy(),
    ...                  residual="ar1(Days | Subject)")
    >>> ci = residual_confint(res)
    >>> ci.index.tolist()
    ['sd_(Intercept)|Subject', 'sigma', 'rho', '(Intercept)', 'Days']
    >>> bool((ci["lower"] < ci["upper"]).all())
    True
    """
    return confint_of(residual_profiler(res), level)


def residual_profile_table(res: Any, alphamax: float = 0.01, points: int = 11
                           ) -> pd.DataFrame:
    """zeta traces ``parameter, value, zeta`` of a fit with ``residual=`` / ``sigma=``
    (as :func:`hierlm.inference.profile.profile_table`).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy(),
    ...                  residual="ar1(Days | Subject)")
    >>> tab = residual_profile_table(res, points=2)
    >>> sorted(tab["parameter"].unique())
    ['(Intercept)', 'Days', 'rho', 'sd_(Intercept)|Subject', 'sigma']
    """
    return table_of(residual_profiler(res), alphamax, points)
