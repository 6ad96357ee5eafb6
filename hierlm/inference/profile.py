"""Profile likelihood: zeta traces and profile confidence intervals (lme4's ``profile``).

As lme4's ``profile.merMod`` (through ``devfun2``), profiles are of the ML deviance
(a REML fit is refitted by ML first), on the sd/cor scale of
:mod:`hierlm.covariance.parameters` (SDs, correlations, sigma), then the fixed effects.
For a parameter ``phi`` fixed at ``c``::

    zeta(c) = sign(c - phi-hat) sqrt(min_{other parameters} d(c, .) - d-hat),

with ``d(theta, sigma) = log|L_theta|^2 + n log(2 pi sigma^2) + r^2(theta) / sigma^2``
(beta profiled out; ``log|L|^2`` and ``r^2`` read off the compiled profiled
objective).  For a fixed effect ``beta_j = b`` the other coefficients and sigma
have closed forms: with ``V(theta) = (L_XX L_XX')^{-1}``,
``d = log|L|^2 + n (1 + log(2 pi (r^2 + (b - beta-hat_j)^2 / V_jj) / n))``, minimized
over theta; that is the ML criterion of the model without ``x_j`` and with response
``y - b x_j`` (:mod:`hierlm.inference.profile_beta`), whose compiled objective gives
its exact gradient, so the inner minimization needs no finite differences.  For sigma
the other parameters are free on the theta scale (see
:mod:`hierlm.inference.profile_inner`), started from theta-hat sigma-hat / c (the
random effects' SDs of the fit), each term's rank-reduced covariance and the
continuation points, all followed to their minima.  The inner minimizations are
L-BFGS-B, started from the nearest
solution found so far on the estimate's side of ``c`` (continuation from the
estimate), and also from the nearest one beyond ``c`` and from the estimate where
those are lower at ``c``; the smallest minimum is kept.  lme4 samples zeta on a grid
and interpolates a spline; here the interval endpoints are roots of
``zeta(c) = +/- z`` found by Brent's method on a bracket, so they carry only the
inner optimizer's error.  An endpoint that the parameter's bound (SD 0, correlation
+/-1) reaches first is the bound; where zeta passes the target without changing sign
at the bracket's ends again (a non-monotonic profile) the endpoint is NaN with a
warning, as lme4's ``confint`` gives NA.

A model with a structured covariance (:mod:`hierlm.covariance`) is profiled on its
structures' own parameters instead (SDs, ``rho``, lag correlations: the natural
parameters of :class:`~hierlm.covariance.design.DesignCovariance`, bounded by their
ranges), with sigma's and the fixed effects' inner minimizations over the structures'
``psi`` (sigma's start shifts the log SDs by ``log(sigma-hat / c)``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import theta_lower
from hierlm.covariance.parameters import parameter_names, sdcor_from_theta, theta_from_sdcor
from hierlm.design.terms import ModelDesign
from hierlm.errors import ConvergenceWarning, warn
from hierlm.estimate.boundary import face_starts
from hierlm.inference.blas import one_blas_thread
from hierlm.inference.fitted import require_model
from hierlm.inference.profile_beta import fixed_beta_objective
from hierlm.inference.profile_inner import minimize_starts
from hierlm.objective.profiled import ProfiledObjective

#: Evaluations of the profiled objective kept for repeated points (:meth:`Profiler._parts`).
_MEMO = 64


def _bounds(design: ModelDesign) -> list[tuple[float, float]]:
    return DesignCovariance.of(design).natural_bounds() + [(0.0, np.inf)]


class Profiler:
    """Profiles of one ML fit (see the module docstring)."""

    def __init__(self, ml: Any) -> None:
        self.fit = ml
        # thousands of evaluations: machine code pays for itself
        self.objective: ProfiledObjective = ml.model.objective.with_backend("numba")
        self.design: ModelDesign = self.objective.design
        self.n = self.design.nobs
        self.cov = DesignCovariance.of(self.design)
        self.structured = self.cov.structured
        if self.structured:
            self.psi_hat = self.cov.psi_from_theta(ml.theta)
            self.names = self.cov.names() + ["sigma"] + list(ml.fixef.index)
            self.s_hat = self._natural(np.append(self.psi_hat, ml.sigma))
            self.bounds = self.cov.natural_bounds() + [(0.0, np.inf)]
        else:
            self.names = parameter_names(self.design) + list(ml.fixef.index)
            self.s_hat = sdcor_from_theta(self.design, ml.theta, ml.sigma)
            self.bounds = _bounds(self.design)
        self.k = len(self.s_hat)
        self._memo: dict[bytes, tuple[float, float, np.ndarray]] = {}
        self.base = self._dev_theta(ml.theta, ml.sigma)
        self.estimates = np.concatenate([self.s_hat, ml.fixef.to_numpy()])
        self.scale = np.concatenate([self._wald_se_sdcor(), ml.fixef_se.to_numpy()])
        self._starts: dict[int, list[tuple[float, np.ndarray]]] = {}

    def _natural(self, x: np.ndarray) -> np.ndarray:
        """A structured model's natural parameters, then sigma, from ``(psi, sigma)``."""
        return np.append(self.cov.natural(x[:-1], float(x[-1])).to_numpy(), x[-1])

    def _to_sdcor(self, x: np.ndarray) -> np.ndarray:
        if self.structured:
            return self._natural(x)
        return sdcor_from_theta(self.design, x[:-1], x[-1])

    def _wald_se_sdcor(self) -> np.ndarray:
        """Wald SEs of the sd/cor parameters (first guesses of the endpoints):
        ``J A J'`` with ``A`` the autodiff vcov of ``(theta, sigma)`` and ``J`` the
        Jacobian of the closed-form map to sd/cor (central differences of that map)."""
        from hierlm.inference.deviance import varpar_info

        fallback = np.maximum(np.abs(self.s_hat) * 0.2, 1e-3)
        try:
            info = varpar_info(self.objective, self.fit.theta, self.fit.sigma, reml=False)
        except Exception:  # noqa: BLE001 - only a starting guess
            return fallback
        psi = info.psi
        J = np.zeros((self.k, self.k))
        for i in range(self.k):
            h = 1e-6 * max(abs(psi[i]), 1e-3)
            e = np.zeros(self.k)
            e[i] = h
            hi = self._to_sdcor(psi + e)
            lo = self._to_sdcor(psi - e)
            J[:, i] = (hi - lo) / (2 * h)
        se = np.sqrt(np.clip(np.diag(J @ info.vcov_varpar @ J.T), 0.0, None))
        return np.where(np.isfinite(se) & (se > 0), se, fallback)

    # -- deviances -------------------------------------------------------------
    def _parts(self, theta: np.ndarray) -> tuple[float, float, np.ndarray]:
        # the inner minimizations ask again for points they have (a restart's first
        # point, a start's value before its descent): the last few are kept, by value
        key = np.ascontiguousarray(theta, dtype=float).tobytes()
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        f, _, _, L_R = self.objective.evaluate(theta, False)
        r2 = float(L_R[-1, -1] ** 2)
        logdet = f - self.n * (1.0 + np.log(2 * np.pi * r2 / self.n))
        tail = np.array(L_R[self.objective.gram.q_rest:, self.objective.gram.q_rest:])
        if len(self._memo) >= _MEMO:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = (logdet, r2, tail)
        return logdet, r2, tail

    def _dev_theta(self, theta: np.ndarray, sigma: float) -> float:
        logdet, r2, _ = self._parts(np.asarray(theta, dtype=float))
        return float(logdet + self.n * np.log(2 * np.pi * sigma**2) + r2 / sigma**2)

    def _dev_s(self, s: np.ndarray) -> float:
        try:
            theta, sigma = (self.cov.theta_from_natural(s) if self.structured
                            else theta_from_sdcor(self.design, s))
        except ValueError:
            return 1e300
        val = self._dev_theta(theta, sigma)
        return val if np.isfinite(val) else 1e300

    def _dev_beta(self, theta: np.ndarray, j: int, b: float) -> float:
        logdet, r2, L_X = self._parts(np.asarray(theta, dtype=float))  # [X y] block
        g = self.objective.gram
        p = g.p
        L_XX = L_X[:p, :p]
        Li = np.linalg.solve(L_XX, np.eye(p))
        Vjj = float(Li[:, j] @ Li[:, j])
        beta = np.linalg.solve(L_XX.T, L_X[-1, :p]) + g.beta_offset
        rss = r2 + (b - beta[j]) ** 2 / Vjj
        val = logdet + self.n * (1.0 + np.log(2 * np.pi * rss / self.n))
        return float(val) if np.isfinite(val) else 1e300

    # -- zeta ------------------------------------------------------------------
    def _starts_for(self, w: int, c: float, default: np.ndarray) -> list[np.ndarray]:
        """Starting points at ``c``: the solution nearest ``c`` on the estimate's side
        (``default``, the estimate, when none is nearer), then the nearest one beyond
        ``c`` and the estimate, where they differ."""
        est = self.estimates[w]
        pts = [(est, default), *self._starts.get(w, [])]
        inner = [t for t in pts if (t[0] - est) * (c - t[0]) >= 0]
        outer = [t for t in pts if (t[0] - est) * (c - t[0]) < 0]
        out = [min(inner, key=lambda t: abs(t[0] - c))[1]]
        if outer:
            out.append(min(outer, key=lambda t: abs(t[0] - c))[1])
        out.append(default)
        return out

    def zeta(self, w: int, c: float) -> float:
        """zeta of parameter ``w`` (index into :attr:`names`) at value ``c``."""
        est = self.estimates[w]
        follow_all = False
        value_grad = None
        bounds: list[tuple[Any, Any]]
        if w == self.k - 1 and self.structured:
            # sigma: the structures' psi free, started with the SDs of the fit
            shift = np.where(np.array(self.cov.psi_kinds()) == "log_sd",
                             np.log(self.fit.sigma / c), 0.0)
            starts = self._starts_for(w, c, self.psi_hat + shift)
            bounds = list(self.cov.psi_bounds())
            follow_all = True

            def fn(x: np.ndarray) -> float:
                val = self._dev_theta(self.cov.theta(x), c)
                return val if np.isfinite(val) else 1e300
        elif w == self.k - 1:
            # sigma: the others free on the theta scale (see profile_inner); the
            # natural start keeps the random effects' SDs (theta-hat sigma-hat / c),
            # and each term's rank-reduced covariance is a start too
            keep = np.asarray(self.fit.theta, dtype=float) * (self.fit.sigma / c)
            starts = [*self._starts_for(w, c, keep), *face_starts(self.design, keep)]
            bounds = [(None, None)] * (self.k - 1)
            follow_all = True

            def fn(x: np.ndarray) -> float:
                val = self._dev_theta(x, c)
                return val if np.isfinite(val) else 1e300
        elif w < self.k:
            free = [i for i in range(self.k) if i != w]
            starts = self._starts_for(w, c, self.s_hat[free])

            def fn(x: np.ndarray) -> float:
                s = self.s_hat.copy()
                s[free] = x
                s[w] = c
                return self._dev_s(s)

            bounds = [self.bounds[i] for i in free]
        elif self.structured:
            j = w - self.k
            starts = self._starts_for(w, c, self.psi_hat)
            bounds = list(self.cov.psi_bounds())

            def fn(x: np.ndarray) -> float:
                return self._dev_beta(self.cov.theta(x), j, c)
        else:
            j = w - self.k
            starts = self._starts_for(w, c, np.asarray(self.fit.theta, dtype=float))
            lower = [b[0] if b[0] == 0.0 else None for b in self._theta_bounds()]
            bounds = [(lo, None) for lo in lower]
            # beta_j = c as a model of its own: its criterion and exact gradient in one
            # evaluation (profile_beta)
            reduced = fixed_beta_objective(self.objective, j, c)

            def value_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
                f, g, _, _ = reduced.evaluate(x, False)
                if not np.isfinite(f):
                    return 1e300, np.zeros_like(x)
                return float(f), np.asarray(g, dtype=float)

            def fn(x: np.ndarray) -> float:
                return value_grad(x)[0]

        # Continuation from the estimate's side keeps to the branch of minima through
        # the estimate; a solution from beyond c (or the estimate itself) is
        # followed too where it is already lower there.  Starting from the nearest
        # solution alone let one at a bound (an SD of 0, where the correlation has no
        # effect) capture points whose minimum is elsewhere: a kink in the trace.
        dmin, x = minimize_starts(fn, starts, bounds, follow_all=follow_all,
                                  value_grad=value_grad)
        self._starts.setdefault(w, []).append((c, x))
        diff = max(dmin - self.base, 0.0)
        return float(np.sign(c - est) * np.sqrt(diff))

    def _theta_bounds(self) -> list[tuple[float, float]]:
        return [(float(lo), np.inf) for lo in theta_lower(self.design)]

    # -- endpoints -------------------------------------------------------------
    @property
    def sigma_index(self) -> int:
        """The index of sigma in :attr:`names`."""
        return self.k - 1

    def param_bounds(self, w: int) -> tuple[float, float]:
        """The range of parameter ``w`` (the fixed effects have none)."""
        return self.bounds[w] if w < self.k else (-np.inf, np.inf)

    def endpoint(self, w: int, target: float) -> float:
        """The value where zeta crosses ``target`` (the bound if it is reached first)."""
        est = self.estimates[w]
        lo, hi = self.param_bounds(w)
        direction = 1.0 if target > 0 else -1.0
        bound = hi if direction > 0 else lo
        prev, zprev = est, 0.0
        c = est + direction * self.scale[w] * abs(target)  # the Wald endpoint
        for _ in range(80):
            if w == self.sigma_index and c <= 0:
                # sigma, where the Wald step lands at or below 0 (sigma poorly
                # determined beside a structure that can take up the residual
                # variance): the criterion is not defined at 0 itself, so it is read
                # at 1e-3 sigma-hat (further down the relative scale theta / sigma
                # loses precision); if zeta stays short of the target there, the
                # bound 0 is the endpoint
                c = 1e-3 * est
                if abs(self.zeta(w, c)) < abs(target):
                    return 0.0
            if direction * (c - bound) >= 0:  # the bound comes first
                c = float(bound)
                if abs(self.zeta(w, c)) < abs(target):
                    return c
                break
            z = self.zeta(w, c)
            if abs(z) >= abs(target):
                break
            slope = (z - zprev) / (c - prev)
            nxt = c + 1.2 * (target - z) / slope if slope * direction > 0 else c + 2 * (c - est)
            prev, zprev, c = c, z, nxt
        else:
            return float("nan")
        try:
            return float(scipy.optimize.brentq(lambda x: self.zeta(w, x) - target,
                                               min(prev, c), max(prev, c), xtol=1e-12,
                                               rtol=1e-8))
        except ValueError:
            # zeta crossed the target between two points but not at their ends again
            # (a profile with a plateau or a dip: a poorly determined parameter); as
            # lme4's confint, the end is NA with a warning
            warn(f"non-monotonic profile for {self.names[w]}: the data determine it "
                 f"poorly, and its interval end on this side is NaN", ConvergenceWarning)
            return float("nan")


def ml_fit(res: Any, residual_ok: bool = False) -> Any:
    """``res`` if it is an ML fit, else its ML refit (lme4 profiles the ML deviance;
    needs ``res.model``)."""
    model = require_model(res, "profile", residual_ok=residual_ok)
    if res.is_ml:
        return res
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit("ml")


def profiler(res: Any) -> Profiler:
    """A :class:`Profiler` of the ML refit of ``res`` (needs ``res.model``)."""
    return Profiler(ml_fit(res))


def profile_confint(res: Any, level: float = 0.95) -> pd.DataFrame:
    """Profile-likelihood intervals ``lower, upper`` (lme4's ``confint``, method profile).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> profile_confint(res).loc["sigma"].round(2).tolist()
    [22.9, 28.86]
    """

    return confint_of(profiler(res), level)


def confint_of(pr: Profiler, level: float = 0.95) -> pd.DataFrame:
    """The profile intervals of every parameter of the profiler ``pr``
    (:func:`profile_confint`)."""
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    # one BLAS thread, as in a fit: L-BFGS-B's small BLAS calls are slower threaded
    with one_blas_thread():
        rows = [(pr.endpoint(w, -z), pr.endpoint(w, z)) for w in range(len(pr.names))]
    return pd.DataFrame(rows, index=pr.names, columns=["lower", "upper"])


def profile_table(res: Any, alphamax: float = 0.01, points: int = 11) -> pd.DataFrame:
    """zeta against each parameter in long form: ``parameter, value, zeta``.

    Each parameter's trace runs between the values where ``|zeta|`` reaches lme4's
    cutoff ``sqrt(chi2_{1 - alphamax}(number of parameters))``, ``points`` on each side.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> tab = profile_table(res, points=3)
    >>> sorted(tab["parameter"].unique())[:2]
    ['(Intercept)', 'Days']
    """

    return table_of(profiler(res), alphamax, points)


def table_of(pr: Profiler, alphamax: float = 0.01, points: int = 11) -> pd.DataFrame:
    """The zeta traces of the profiler ``pr`` (:func:`profile_table`)."""
    cutoff = float(np.sqrt(scipy.stats.chi2.ppf(1 - alphamax, len(pr.names))))
    out = []
    with one_blas_thread():
        out = _traces(pr, cutoff, points)
    return pd.DataFrame(out, columns=["parameter", "value", "zeta"])


def _traces(pr: Profiler, cutoff: float, points: int) -> list[dict[str, Any]]:
    out = []
    for w, name in enumerate(pr.names):
        lo, hi = pr.endpoint(w, -cutoff), pr.endpoint(w, cutoff)
        est = pr.estimates[w]
        vals = np.unique(np.concatenate([np.linspace(lo, est, points + 1),
                                         np.linspace(est, hi, points + 1)]))
        vals = vals[np.isfinite(vals)]
        for c in vals:
            out.append({"parameter": name, "value": float(c),
                        "zeta": 0.0 if c == est else pr.zeta(w, float(c))})
    return out
