"""REML / ML fits with a residual structure: theta profiled inside, the residual
parameters outside.

The criterion of :mod:`hierlm.objective.residual_gram`, ``crit(theta, rho, delta) =
crit_iid(theta; B[Z X y]) + log|R0|``, is minimized over theta for each ``(rho,
delta)`` by the model's own optimizer (:func:`hierlm.estimate.optimize.optimize_theta`,
warm-started; over the structures' psi by
:func:`hierlm.estimate.optimize_structured.optimize_psi` where a random term has a
structured covariance), and that profile ``g(rho, delta) = min_theta crit`` over the
residual parameters by L-BFGS-B (:func:`hierlm.estimate.theta_optimizer.minimize_theta`).  At
each ``(rho, delta)`` the whitened Gram blocks come from the row classes
(:mod:`hierlm.objective.residual_classes`) or, with many classes, ``cs`` or prior
weights, from the rows' combinations (:mod:`hierlm.objective.residual_rows`).  Its
gradient is the partial gradient of ``crit`` in the
residual parameters at ``theta-hat`` (envelope theorem), by central differences with
theta held: no inner fits for it.  The residual
parameters are optimized unconstrained:

* ``ar1``: ``phi = tanh(z)`` in (-1, 1);
* ``car1``: ``phi = 1 / (1 + exp(-z))`` in (0, 1);
* ``cs``: ``rho = lo + (1 - lo) / (1 + exp(-z))`` with ``lo = -1 / (k_max - 1)``
  (``C`` positive definite for every group of at most ``k_max`` rows);
* ``delta``: the log-SD coefficients themselves.

The number of parameters adds the residual ones to lme4's: ``k = p + len(theta) + 1 +
n_rho + n_delta`` in AIC and BIC.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.special

from hierlm.covariance.design import DesignCovariance
from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.errors import ConvergenceWarning, MethodError, SingularFitWarning, warn
from hierlm.estimate.boundary import canonical_signs
from hierlm.estimate.frequentist import result_from_estimates
from hierlm.estimate.kind import ML, REML
from hierlm.estimate.optimize import OptimizerResult, optimize_theta, theta_scale
from hierlm.estimate.optimize_structured import optimize_psi
from hierlm.estimate.record import FitRecord
from hierlm.estimate.stable_pls import stable_estimates
from hierlm.estimate.theta_optimizer import ParameterSpace, SearchOptions, minimize_theta
from hierlm.objective.profiled import ProfiledObjective, compile_objective
from hierlm.objective.residual_classes import ClassGram, class_gram
from hierlm.objective.residual_gram import relative_sd, whitened_design
from hierlm.objective.residual_rows import RowGram, row_gram

#: Central-difference step in the unconstrained residual parameters.
FD_STEP = 1e-5
#: Largest ``|z|`` of the correlation parameter: beyond it ``C`` is numerically singular
#: (``phi = tanh(12) = 1 - 8e-11``; a cs correlation within 6e-6 of its bounds).
Z_MAX = 12.0
#: ``|z|`` beyond which a fit is reported at the edge (``phi > tanh(8) = 1 - 2e-7``;
#: a car1 ``phi > 0.9997``; a cs correlation within 3e-4 of its bounds, relative).
EDGE_Z = 8.0
#: Largest gradient of the profile in the residual parameters after the joint descent
#: that ends the search there.
OUTER_GTOL = 1e-3
#: Iterations of the joint descent; the profile descent finishes where needed.
JOINT_MAXITER = 20
#: Models of at least this many rows are linked with Numba for the inner fits.
NUMBA_NOBS = 5000
#: Starting correlations tried (the best one starts the descent).
RHO_STARTS = (0.0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9)
#: The joint descent in ``(theta / scale, z)`` and the profile's descent in ``z``: the
#: model's optimizer (:func:`hierlm.estimate.theta_optimizer.minimize_theta`) as plain
#: L-BFGS-B (scipy's default line search), L-BFGS-B's own stopping test.
JOINT_SEARCH = SearchOptions(maxiter=JOINT_MAXITER, ftol=1e-12, gtol=1e-6, maxls=20,
                             check_tol=None)
OUTER_SEARCH = SearchOptions(maxiter=200, ftol=1e-13, gtol=1e-7, maxls=20, check_tol=None)


def _cs_lower(rd: ResidualDesign) -> float:
    kmax = int(rd.group_sizes.max())
    return -1.0 / (kmax - 1) if kmax > 1 else -0.999


def to_natural(rd: ResidualDesign, z: np.ndarray) -> tuple[float, np.ndarray]:
    """``(rho, delta)`` from the unconstrained parameters ``z``.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rd = build_residual("ar1(Days | Subject)", None, d, des)
    >>> rho, delta = to_natural(rd, np.array([np.arctanh(0.5)]))
    >>> round(rho, 12), delta.size
    (0.5, 0)
    """
    z = np.asarray(z, dtype=float)
    delta = z[rd.n_corr:]
    if rd.spec is None:
        return 0.0, delta
    if rd.spec.kind == "ar1":
        return float(np.tanh(z[0])), delta
    sig = float(scipy.special.expit(z[0]))
    if rd.spec.kind == "car1":
        return sig, delta
    lo = _cs_lower(rd)
    return lo + (1.0 - lo) * sig, delta


def to_unconstrained(rd: ResidualDesign, rho: float, delta: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_natural`."""
    if rd.spec is None:
        return np.asarray(delta, dtype=float)
    if rd.spec.kind == "ar1":
        z0 = np.arctanh(rho)
    elif rd.spec.kind == "car1":
        z0 = scipy.special.logit(rho)
    else:
        lo = _cs_lower(rd)
        z0 = scipy.special.logit((rho - lo) / (1.0 - lo))
    return np.concatenate([[z0], np.asarray(delta, dtype=float)])


class ResidualProfile:
    """``g(z) = min_theta crit(theta, z)``, with the last minimizer kept as a warm start."""

    def __init__(self, design: ModelDesign, rd: ResidualDesign, reml: bool,
                 options: dict[str, Any] | None = None) -> None:
        self.design, self.rd, self.reml, self.options = design, rd, reml, options
        # a few row classes: their Gram matrices; else the rows' combinations, summed
        # in compiled code (None only without random terms: whitened row by row)
        self.classes: ClassGram | RowGram | None = class_gram(design, rd)
        if self.classes is None:
            self.classes = row_gram(design, rd)
        # many inner fits: link large models with Numba from the start
        self.backend = "numba" if design.nobs >= NUMBA_NOBS else "auto"
        self.theta: np.ndarray | None = None
        # a structured term's fit is over its psi (warm-started from the last one)
        self.structured = DesignCovariance.of(design).structured
        self.psi: np.ndarray | None = None
        self.n_evals = 0
        self.trace: list[tuple[list[float], float]] = []

    def objective_at(self, z: np.ndarray, rows: bool = False
                     ) -> tuple[ProfiledObjective, float]:
        """The whitened model's compiled objective at ``z`` and ``log|R0|``; with
        ``rows`` (or without classes) its design holds the whitened rows."""
        rho, delta = to_natural(self.rd, z)
        if self.classes is not None and not rows:
            gram, logdet = self.classes.gram(rho, delta)
            return compile_objective(self.design, gram, backend=self.backend), logdet
        wd, logdet = whitened_design(self.design, self.rd, rho, delta)
        return compile_objective(wd, backend=self.backend), logdet

    def fit_at(self, obj: ProfiledObjective) -> OptimizerResult:
        """The whitened model's fit (over psi where a term is structured, else theta),
        warm-started from the last one."""
        if self.structured:
            opt = optimize_psi(obj, self.reml, options=self.options)
            if self.psi is not None:
                # the warm start too: the fit's own starts alone may end elsewhere,
                # and the warm start alone stays at an SD of 0 (log_sd at its bound)
                # once a step has reached one
                warm = optimize_psi(obj, self.reml, start=self.psi, options=self.options)
                if warm.objective < opt.objective:
                    opt = warm
            self.psi = opt.psi
            return opt
        return optimize_theta(obj, self.reml, start=self.theta, options=self.options)

    def __call__(self, z: np.ndarray) -> float:
        rho, delta = to_natural(self.rd, z)
        if np.any(np.abs(z[:self.rd.n_corr]) > Z_MAX) or not np.all(np.isfinite(delta)):
            return np.inf  # a correlation at the edge of its range: C is singular
        with np.errstate(all="ignore"):
            obj, logdet = self.objective_at(z)
            if not (np.isfinite(logdet) and np.all(np.isfinite(obj.gram.A_RR))):
                return np.inf
            opt = self.fit_at(obj)
        self.n_evals += opt.n_evals
        val = float(opt.objective) + logdet
        if not np.isfinite(val):
            return np.inf
        self.theta = opt.theta
        self.trace.append(([float(v) for v in z], val))
        return val

    def value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """``g(z)`` and its gradient.  At the inner minimizer ``theta-hat(z)`` the
        gradient of the profile is the partial gradient of ``crit`` in ``z`` (envelope
        theorem), so the central differences hold theta at ``theta-hat(z)``: two
        evaluations per parameter, no inner fits."""
        f0 = self(z)
        theta = self.theta
        g = np.zeros(len(z))
        if not np.isfinite(f0) or theta is None:
            return f0, g
        for i in range(len(z)):
            e = np.zeros(len(z))
            e[i] = FD_STEP
            vals = []
            for zz in (z + e, z - e):
                if np.any(np.abs(zz[:self.rd.n_corr]) > Z_MAX):
                    vals.append(f0)
                    continue
                with np.errstate(all="ignore"):
                    obj, logdet = self.objective_at(zz)
                    vals.append(obj(theta, self.reml) + logdet)
            g[i] = (vals[0] - vals[1]) / (2 * FD_STEP)
        return f0, g


def _start(profile: ResidualProfile) -> np.ndarray:
    """The best of :data:`RHO_STARTS`: theta is fitted at the first (independent errors)
    and the others are compared at that theta, one evaluation each."""
    rd = profile.rd
    delta0 = np.zeros(rd.V.shape[1])
    if rd.spec is None:
        return delta0
    lowest = 0.01 if rd.spec.kind == "car1" else 0.0  # car1's phi = 0 is z = -inf
    starts = [to_unconstrained(rd, max(r, lowest), delta0) for r in RHO_STARTS]
    best, best_val = starts[0], profile(starts[0])
    theta0 = profile.theta
    if theta0 is None:
        return best
    for z in starts[1:]:
        with np.errstate(all="ignore"):
            obj, logdet = profile.objective_at(z)
            val = obj(theta0, profile.reml) + logdet
        if val < best_val:
            best, best_val = z, val
    return best


def _joint(profile: ResidualProfile, z0: np.ndarray) -> np.ndarray:
    """A first descent in ``(theta, z)`` together (theta's exact gradient, z's by central
    differences): far fewer evaluations than a profile step each; the profile descent
    then starts near its end (and decides)."""
    theta0 = profile.theta
    if theta0 is None or len(z0) == 0 or profile.structured:
        # (a structured term's theta must stay on its family: its fit is over psi,
        # and the profile descent alone starts from z0)
        return z0
    design, reml, nc = profile.design, profile.reml, profile.rd.n_corr
    scale = theta_scale(design)
    k = len(theta0)

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        theta, z = x[:k] * scale, x[k:]
        with np.errstate(all="ignore"):
            obj, logdet = profile.objective_at(z)
            f, g_theta = obj.value_and_grad(theta, reml)
            g = np.zeros(len(x))
            g[:k] = g_theta * scale
            for i in range(len(z)):
                e = np.zeros(len(z))
                e[i] = FD_STEP
                fp = profile.objective_at(z + e)
                fm = profile.objective_at(z - e)
                g[k + i] = (fp[0](theta, reml) + fp[1] - fm[0](theta, reml) - fm[1]) / (
                    2 * FD_STEP)
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return 1e300, np.zeros(len(x))
        profile.n_evals += 1 + 2 * len(z)
        return f + logdet, g

    bounds = [(None, None)] * k + [(-Z_MAX + 1, Z_MAX - 1)] * nc + [(None, None)] * (
        len(z0) - nc)
    res = minimize_theta(fg, ParameterSpace.box(bounds), np.concatenate([theta0 / scale, z0]),
                         JOINT_SEARCH)
    if not np.isfinite(res.criterion) or res.criterion >= 1e299:
        return z0
    profile.theta = canonical_signs(design, res.theta[:k])[0] * scale
    return np.asarray(res.theta[k:])


def fit_residual(design: ModelDesign, rd: ResidualDesign, reml: bool,
                 start: np.ndarray | None = None,
                 options: dict[str, Any] | None = None) -> FitRecord:
    """Fit a model with residual structure by REML or ML.

    Parameters
    ----------
    design : ModelDesign
        The model design.
    rd : ResidualDesign
        Its residual structure (:func:`hierlm.design.residual_design.build_residual`).
    reml : bool
        REML (True) or ML (False).
    start : ndarray, optional
        Starting theta.
    options : dict, optional
        Options of the inner theta optimizer.

    Returns
    -------
    FitRecord
        With ``residual_parameters``, ``residual_scale`` (each row's SD over sigma),
        ``residual`` and ``sigma_formula`` set.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rec = fit_residual(des, build_residual("ar1(Days | Subject)", None, d, des), True)
    >>> rec.residual_parameters.round(3).to_dict(), round(rec.objective, 4)
    ({'rho': 0.653}, 1736.1911)
    """
    if design.nobs != len(design.y):
        raise MethodError("residual= needs the data in memory")
    profile = ResidualProfile(design, rd, reml, options)
    start = None if start is None else np.asarray(start, dtype=float)
    if profile.structured:
        profile.psi = start  # a structured model's start is its psi (as fit_profiled's)
    else:
        profile.theta = start
    z0 = _joint(profile, _start(profile))
    f0, g0 = profile.value_and_grad(z0)
    jac, message, success = g0, "joint descent", True
    if not (np.isfinite(f0) and np.max(np.abs(g0), initial=0.0) <= OUTER_GTOL):
        res = minimize_theta(profile.value_and_grad, ParameterSpace.box([(None, None)] * len(z0)),
                             z0, OUTER_SEARCH)
        jac, message, success = res.gradient, res.messages[-1], res.converged
    # the best point evaluated (a line search that met a singular C may stop short)
    best = min(profile.trace, key=lambda tr: tr[1]) if profile.trace else None
    z = np.asarray(best[0]) if best is not None else z0
    if best is not None and not np.allclose(z, profile.trace[-1][0], rtol=0, atol=0):
        profile(z)  # theta at z
    rho, delta = to_natural(rd, z)
    obj, logdet = profile.objective_at(z, rows=True)
    opt = profile.fit_at(obj)
    L1, L_R = opt.factor if opt.factor is not None else obj.evaluate(opt.theta, reml)[2:]
    est, criterion = stable_estimates(obj, opt.theta, L1, L_R, reml)
    messages: list[str] = []
    grad = float(np.max(np.abs(jac), initial=0.0))
    converged = bool(opt.converged and (success or grad < 1e-3))
    if not converged:
        msg = (f"optimizer did not converge: residual parameters {message}, largest "
               f"gradient {grad:.2g}")
        warn(msg, ConvergenceWarning)
        messages.append(msg)
    if rd.n_corr and abs(z[0]) > EDGE_Z:
        msg = (f"boundary fit: the residual correlation is at the edge of its range "
               f"(rho = {rho:.6g}); the residual structure may not be identifiable beside "
               f"the random effects (e.g. cs() on the group of a random intercept)")
        warn(msg, SingularFitWarning)
        messages.append(msg)
    names = list(rd.param_names)
    values = ([rho] if rd.spec is not None else []) + list(delta)
    optimizer = {"method": "L-BFGS-B(residual) / " + opt.method, "message": message,
                 "gradient": [float(v) for v in jac],
                 "phases": [["residual", len(profile.trace)]],
                 "trace": [z_ + [f] for z_, f in profile.trace]}
    return result_from_estimates(
        design, est, opt.theta, criterion + logdet, (REML if reml else ML).label,
        psi=opt.psi, converged=converged, n_evals=profile.n_evals + opt.n_evals,
        optimizer=optimizer, messages=tuple(messages),
        residual_parameters=pd.Series(values, index=names, name="residual_parameters",
                                      dtype=float),
        residual_scale=relative_sd(rd, delta, design.weights),
        residual=None if rd.spec is None else rd.spec.text, sigma_formula=rd.sigma_formula)
