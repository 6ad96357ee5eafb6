"""Bayesian fit by NUTS on the marginal likelihood, random effects drawn exactly afterwards.

NUTS samples only ``beta``, ``sigma`` and, for each term ``i``, the SDs ``sd_i`` of its
coefficients and (for ``p_i > 1``) the Cholesky factor ``L_i`` of their correlation
matrix.  The relative factor is then ``T_i = diag(sd_i / sigma) L_i``, packed into theta
as lme4 packs it, and the likelihood is the exact marginal one (random effects
integrated out), built from the same blocked-Cholesky graph the REML/ML fits use::

    -2 log p(y | beta, theta, sigma) = log|L_theta|^2 + n log(2 pi sigma^2)
                                       + (r^2(theta) + ||L_XX'(beta - beta-hat)||^2) / sigma^2

with the Gram blocks of ``[Z X y]`` as data, so one gradient costs nothing in ``n``.
After sampling, each posterior draw gets one exact draw of the random effects from
``b | y, beta, theta, sigma`` (:mod:`hierlm.estimate.conditional`).  The PyMC model
and its compiled NUTS step are kept per model shape, so refitting the same design
with a new response (``Model.with_response``) does not recompile.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr
from pymc.blocking import DictToArrayBijection
from pymc.step_methods.hmc.quadpotential import QuadPotentialDiagAdapt

from hierlm.errors import MethodError
from hierlm.estimate.conditional import (
    log_likelihood_dataset,
    marginal_deviance,
    ranef_posterior,
)
from hierlm.estimate.frequentist import fit_profiled, fitted_values, ranef_frame
from hierlm.estimate.priors import Priors, resolve_priors
from hierlm.objective.cholesky import GramVars, blocked_cholesky, unprofiled_deviance
from hierlm.objective.profiled import ProfiledObjective, gram_values
from hierlm.objective.theta import templates, tril_colmajor
from hierlm.results.nuts_summary import (
    coords_of,
    derived_variables,
    diagnostic_messages,
    diagnostics_table,
    flat_draws,
    point_estimates,
)
from hierlm.results.result import FitResult
from hierlm.results.varcorr import varcorr_table

CACHE_SIZE = 4


@dataclass(eq=False)
class _Compiled:
    """A PyMC model whose data (Gram blocks, prior parameters) are shared variables."""

    model: pm.Model
    data: dict[str, Any]
    steps: dict[float | str, Any] = field(default_factory=dict)  # NUTS steps, nutpie model

    def set_data(self, objective: ProfiledObjective, pr: Priors) -> None:
        values = _data_values(objective, pr)
        for name, var in self.data.items():
            var.set_value(values[name])


_CACHE: OrderedDict[tuple, _Compiled] = OrderedDict()


def _data_values(objective: ProfiledObjective, pr: Priors) -> dict[str, np.ndarray]:
    vals = {f"gram{i}": np.asarray(v) for i, v in enumerate(gram_values(objective.gram))}
    vals.update(beta_mu=pr.beta_mu, beta_sigma=pr.beta_sigma, n=np.asarray(float(objective.gram.n)),
                sigma_nu=np.asarray(pr.sigma_nu), sigma_scale=np.asarray(pr.sigma_scale))
    for i, (scale, eta) in enumerate(zip(pr.sd_scale, pr.lkj_eta, strict=True)):
        vals[f"sd_scale{i}"] = np.asarray(scale, dtype=float)
        vals[f"lkj_eta{i}"] = np.asarray(float(eta))
    return {k: np.asarray(v, dtype=np.int64 if v.dtype.kind in "iu" else np.float64)
            for k, v in vals.items()}


def build_model(objective: ProfiledObjective, priors: Priors) -> tuple[pm.Model, dict[str, Any]]:
    """The PyMC model (priors, theta from SDs and correlations, marginal likelihood).

    Returns the model and its shared data variables (Gram blocks and prior parameters).
    """
    design = objective.design
    data = {k: pytensor.shared(v, name=k) for k, v in _data_values(objective, priors).items()}
    with pm.Model(coords=coords_of(design)) as model:
        if design.p:
            beta = pm.Normal("beta", mu=data["beta_mu"], sigma=data["beta_sigma"], dims="coef")
        else:
            beta = pt.zeros((0,))
        sigma = pm.HalfStudentT("sigma", nu=data["sigma_nu"], sigma=data["sigma_scale"])
        parts = []
        for i, (label, t) in enumerate(zip(priors.labels, design.terms, strict=True)):
            sd = pm.HalfNormal(f"sd_{label}", sigma=data[f"sd_scale{i}"], dims=f"{label}_term")
            if t.p == 1:
                parts.append(sd / sigma)
                continue
            L = pm.LKJCorr(f"chol_corr_{label}", n=t.p, eta=data[f"lkj_eta{i}"])
            rows, cols = tril_colmajor(t.p)
            parts.append(((sd / sigma)[:, None] * L)[rows, cols])
        theta = pt.concatenate(parts)
        g = GramVars(*[data[f"gram{i}"] for i in range(len(GramVars.__dataclass_fields__))])
        f = blocked_cholesky(theta, g, objective.structure)
        dev = unprofiled_deviance(f, g, beta, sigma, data["n"])
        pm.Potential("loglik", -0.5 * dev)
    return model, data


def _compiled(objective: ProfiledObjective, pr: Priors) -> _Compiled:
    """The cached model of this design's shape, its data set to this model's."""
    design = objective.design
    key = (objective.structure, design.p, repr(sorted(coords_of(design).items())))
    c = _CACHE.get(key)
    if c is None:
        c = _Compiled(*build_model(objective, pr))
        _CACHE[key] = c
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
        c.set_data(objective, pr)
    return c


def _initvals(objective: ProfiledObjective, priors: Priors, chains: int,
              rng: np.random.Generator
              ) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Per-chain starting points near the REML estimate, jittered, and rough posterior
    variances of the unconstrained parameters (to start the mass-matrix adaptation)."""
    design = objective.design
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fit_profiled(objective, reml=True)
    sig = max(res.sigma, 1e-3 * priors.sigma_scale)
    se = np.where(np.isfinite(res.fixef_se.to_numpy()), res.fixef_se.to_numpy(), 1.0)
    scale = {"beta": se**2, "sigma_log__": np.asarray(0.5 / max(design.nobs - design.p, 1))}
    out: list[dict[str, np.ndarray]] = [
        {"sigma": np.asarray(sig * np.exp(0.05 * rng.normal()))} for _ in range(chains)]
    for start in out:
        if design.p:
            start["beta"] = res.fixef.to_numpy() + 0.2 * se * rng.standard_normal(design.p)
    for label, t, T, sc in zip(priors.labels, design.terms, templates(design, res.theta),
                               priors.sd_scale, strict=True):
        S = res.sigma**2 * T @ T.T
        sd = np.sqrt(np.clip(np.diag(S), 0.0, None))
        scale[f"sd_{label}_log__"] = np.full(t.p, 0.5 / max(t.n_levels - 1, 1))
        for start in out:
            start[f"sd_{label}"] = np.maximum(sd, 0.05 * sc) * np.exp(0.1 * rng.normal(size=t.p))
        if t.p > 1:
            d = 1 / np.sqrt(np.clip(np.diag(S), 1e-300, None))
            R = 0.8 * np.clip(d[:, None] * S * d[None, :], -1, 1) + 0.2 * np.eye(t.p)
            np.fill_diagonal(R, 1.0)
            scale[f"chol_corr_{label}_cholesky_corr__"] = np.full(
                t.p * (t.p - 1) // 2, 1.0 / max(t.n_levels, 2))
            for start in out:
                start[f"chol_corr_{label}"] = np.linalg.cholesky(R)
    return out, scale


def _pymc_step(c: _Compiled, target_accept: float, starts: list[dict[str, np.ndarray]],
               scale: dict[str, np.ndarray]) -> Any:
    """A NUTS step (compiled once per cached model and target_accept); its mass-matrix
    adaptation starts at the starting points' mean and the rough variances ``scale``."""
    model = c.model
    ipfns = pm.initial_point.make_initial_point_fns_per_chain(
        model=model, overrides=starts, jitter_rvs=set(), chains=len(starts))
    points = [fn(0) for fn in ipfns]
    step = c.steps.get(target_accept)
    if step is None:
        with model:
            n = sum(int(np.size(v)) for v in points[0].values())
            pot = QuadPotentialDiagAdapt(n, np.zeros(n), np.ones(n), 10)
            step = pm.NUTS(model=model, potential=pot, target_accept=target_accept,
                           initial_point=points[0])
        c.steps[target_accept] = step
    names = [v.name for v in step.vars]
    mean = np.mean([DictToArrayBijection.map({k: p[k] for k in names}).data for p in points],
                   axis=0)
    var = DictToArrayBijection.map({k: np.broadcast_to(scale.get(k, 1.0), np.shape(points[0][k]))
                                    for k in names}).data
    pot = step.potential
    if hasattr(pot, "_initial_mean") and hasattr(pot, "_initial_diag"):
        pot._initial_mean[:] = mean
        pot._initial_diag[:] = np.where(np.isfinite(var) & (var > 0), var, 1.0)
    return step


def _nutpie_sample(c: _Compiled, starts: list[dict[str, np.ndarray]] | None, seed: int,
                   draws: int, tune: int, chains: int, cores: int | None, progressbar: bool,
                   target_accept: float) -> Any:
    """Sample with nutpie; its compiled model is kept with the cached PyMC model."""
    import nutpie

    comp = c.steps.get("nutpie")
    if comp is None:
        comp = c.steps["nutpie"] = nutpie.compile_pymc_model(c.model)
    used = {v.name for v in comp.shared_var_keys}
    comp = comp.with_data(**{k: v.get_value() for k, v in c.data.items() if k in used})
    if starts:
        fns = pm.initial_point.make_initial_point_fns_per_chain(
            model=c.model, overrides=starts, jitter_rvs=set(), chains=len(starts))
        order = [v.name for v in c.model.value_vars]
        vecs = [np.concatenate([np.ravel(p[k]) for k in order]) for p in (f(0) for f in fns)]
        center = np.mean(vecs, axis=0)
        spread = np.std(vecs, axis=0) if len(vecs) > 1 else np.zeros_like(center)

        def init(s: Any) -> np.ndarray:  # nutpie calls this with one seed per chain
            rng = np.random.default_rng(np.random.SeedSequence([seed, int(s) % 2**32]))
            return center + spread * rng.standard_normal(len(spread))

        comp = dataclasses.replace(comp, initial_point_func=init)
    return nutpie.sample(comp, draws=draws, tune=tune, chains=chains, seed=seed,
                         cores=cores, save_warmup=True, progress_bar=progressbar,
                         target_accept=target_accept)


def _choose_sampler(sampler: str) -> str:
    if sampler not in ("auto", "nutpie", "pymc"):
        raise MethodError(f"unknown sampler {sampler!r}; use 'auto', 'nutpie' or 'pymc'")
    if sampler == "auto":
        return "nutpie" if importlib.util.find_spec("nutpie") is not None else "pymc"
    return sampler


def sample(objective: ProfiledObjective, *, draws: int = 1000, tune: int = 1000,
           chains: int = 4, random_seed: int | None = None, progressbar: bool = True,
           priors: dict[str, Any] | None = None, target_accept: float = 0.9,
           init: str = "reml", ranef_draws: bool | int = True,
           sampler: str = "auto", cores: int | None = None) -> FitResult:
    """Sample the posterior of a linear mixed model with NUTS.

    NUTS runs on ``beta``, ``sigma``, the random-effect SDs and correlations only, with
    the random effects integrated out of the likelihood; the random effects are then
    drawn exactly from their Gaussian conditional, one draw per posterior draw.

    Default priors (weakly informative, scaled by the data; ``s_y = sd(y)``,
    ``s_x = sd(x)`` of a column, 1 for an intercept): slopes ``Normal(0, 2.5 s_y / s_x)``;
    intercept ``Normal(mean(y), 2.5 s_y)`` on the scale of centered predictors
    (its SD widened by ``sqrt(1 + sum (mean(x) / s_x)^2)`` for the uncentered
    intercept); ``sigma ~ HalfStudentT(nu=3, s_y)``; each random-effect SD
    ``HalfNormal(s_y / s_x)``; correlations ``LKJ(eta=2)``.  Override with ``priors``,
    e.g. ``{"beta": {"Days": {"mu": 0, "sigma": 5}}, "sigma": {"scale": 10, "nu": 4},
    "sd": {"Subject": {"scale": 20, "Days": {"scale": 5}}, "lkj_eta": 4}`` (``sd`` and a
    dict-valued ``lkj_eta`` are keyed by ``varcorr``'s group labels); see
    :mod:`hierlm.estimate.priors`.

    Parameters
    ----------
    objective : ProfiledObjective
        The compiled model.
    draws, tune, chains : int
        Kept draws and tuning steps per chain, and the number of chains.
    random_seed : int, optional
        Makes the run reproducible (sampling, starting points and random-effect draws).
    progressbar : bool
        Show the sampler's progress bar.
    priors : dict, optional
        Prior overrides (keys ``beta``, ``sigma``, ``sd``, ``lkj_eta``).
    target_accept : float
        NUTS target acceptance rate, in (0, 1).
    init : {"reml", "prior"}
        Start the chains at the jittered REML estimate, or at PyMC's default
        (jittered prior-based point).
    ranef_draws : bool or int
        Draw the random effects for every posterior draw (True), none (False: ``ranef``
        then holds the conditional mean and SD at the point estimates), or at most this
        many draws, evenly thinned (then stored in the ``posterior_ranef`` group).
    sampler : {"auto", "nutpie", "pymc"}
        nutpie when installed (``auto``), else PyMC's NUTS.
    cores : int, optional
        Chains run in parallel (default: ``min(chains, CPUs)``).

    Returns
    -------
    FitResult
        ``method == "NUTS"``.  ``fixef``, ``fixef_se``, ``vcov``: posterior mean, SD and
        covariance of beta.  ``sigma``, ``varcorr``: posterior medians of sigma, of each
        SD and of each correlation; ``theta`` is the template of those medians.
        ``ranef()``: posterior mean (``value``) and SD (``cond_sd``) per level and term.
        ``loglik``, ``aic``, ``bic``, ``objective`` (deviance) are evaluated at these
        point estimates (posterior-mean beta, posterior-median sigma and components).
        ``converged``: no divergences and every r_hat <= 1.01.  ``n_evals``: gradient
        evaluations, tuning included.  ``idata``: an ArviZ DataTree with groups
        ``posterior`` (``beta[coef]``, ``sigma``, ``sd_<group>[<group>_term]``,
        ``corr_<group>[<group>_pair]``, ``theta[theta_index]``,
        ``r_<group>[<factor>_level, <group>_term]``), ``sample_stats``,
        ``observed_data`` (``y``) and, when one grouping factor splits the data into
        independent blocks, ``log_likelihood`` (``y[<factor>_level]``:
        ``log p(y_g | beta, theta, sigma)`` per level, for ``arviz.loo``).  ``extra``
        holds the diagnostics table, divergences, the priors and the sampler settings.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy(),
    ...                  method="nuts", random_seed=1)  # doctest: +SKIP
    >>> res.fixef.round(0).to_dict()  # doctest: +SKIP
    {'(Intercept)': 251.0, 'Days': 10.0}
    """
    for name, val in (("draws", draws), ("tune", tune), ("chains", chains)):
        if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < (
                0 if name == "tune" else 1):
            raise MethodError(f"{name} must be a positive integer, got {val!r}")
    if not 0 < target_accept < 1:
        raise MethodError(f"target_accept must be in (0, 1), got {target_accept!r}")
    if init not in ("reml", "prior"):
        raise MethodError(f"unknown init {init!r}; use 'reml' or 'prior'")
    if isinstance(ranef_draws, bool):
        max_ranef = (draws * chains) if ranef_draws else 0
    elif isinstance(ranef_draws, int | np.integer) and ranef_draws >= 0:
        max_ranef = int(ranef_draws)
    else:
        raise MethodError(f"ranef_draws must be True, False or a count, got {ranef_draws!r}")
    which = _choose_sampler(sampler)
    pr = resolve_priors(objective.design, priors)
    s_init, s_pm, s_ranef = np.random.SeedSequence(random_seed).spawn(3)
    c = _compiled(objective, pr)
    starts, scale = (_initvals(objective, pr, chains, np.random.default_rng(s_init))
                     if init == "reml" else (None, {}))
    t0 = time.perf_counter()
    seed = int(s_pm.generate_state(1)[0])
    if which == "nutpie":
        idata = _nutpie_sample(c, starts, seed, draws, tune, chains, cores, progressbar,
                               target_accept)
    else:
        kwargs: dict[str, Any] = {"cores": cores or min(chains, os.cpu_count() or 1)}
        if starts:
            kwargs.update(step=_pymc_step(c, target_accept, starts, scale), initvals=starts)
        else:
            kwargs.update(init="jitter+adapt_diag", target_accept=target_accept)
        with c.model, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*initvals.*")
            idata = pm.sample(draws=draws, tune=tune, chains=chains, progressbar=progressbar,
                              random_seed=seed, discard_tuned_samples=False,
                              compute_convergence_checks=False, quiet=not progressbar,
                              **kwargs)
    settings = {"sampler": which, "draws": draws, "tune": tune, "chains": chains,
                "target_accept": target_accept, "init": init, "random_seed": random_seed,
                "sampling_time": time.perf_counter() - t0}
    return _assemble(objective, pr, idata, settings, max_ranef, np.random.default_rng(s_ranef))


def _assemble(objective: ProfiledObjective, pr: Priors, idata: Any, settings: dict[str, Any],
              max_ranef: int, rng: np.random.Generator) -> FitResult:
    design, labels = objective.design, pr.labels
    stats = idata["sample_stats"].to_dataset()
    n_evals = 0
    for grp in ("warmup_sample_stats", "sample_stats"):
        if grp in idata.children and "n_steps" in idata[grp].data_vars:
            n_evals += int(np.nansum(idata[grp]["n_steps"].values))
    post = derived_variables(design, idata["posterior"].to_dataset())
    theta = flat_draws(post["theta"])
    beta = flat_draws(post["beta"]) if design.p else np.zeros((theta.shape[0], 0))
    sigma = flat_draws(post["sigma"])
    sig_hat, covs, theta_hat = point_estimates(design, post, theta)
    beta_mean = beta.mean(axis=0)
    b_mean, b_sd, r_ds, n_ranef = ranef_posterior(
        objective, coords_of(design), post, (theta, beta, sigma),
        (theta_hat, beta_mean, sig_hat), max_ranef, rng)
    ll_ds, ll_note = log_likelihood_dataset(design, post, theta, beta, sigma)
    extra_groups: dict[str, xr.Dataset] = {}
    if r_ds is not None and r_ds.sizes["draw"] == post.sizes["draw"]:
        post = xr.merge([post, r_ds], combine_attrs="override")
    elif r_ds is not None:
        extra_groups["posterior_ranef"] = r_ds
    groups = {"posterior": post, "sample_stats": stats, **extra_groups,
              "observed_data": xr.Dataset({"y": (("obs",), design.y.copy())},
                                          coords={"obs": np.arange(design.nobs)})}
    if ll_ds is not None:
        groups["log_likelihood"] = ll_ds
    dt = xr.DataTree.from_dict(groups)
    names = ["beta"] * bool(design.p) + ["sigma"] + [
        f"{k}_{lab}" for lab, t in zip(labels, design.terms, strict=True)
        for k in (("sd", "corr") if t.p > 1 else ("sd",))]
    diag = diagnostics_table(dt, names)
    divergences = int(np.asarray(stats["diverging"].values).sum()) if "diverging" in stats else 0
    extra = {**settings, "priors": pr.as_dict(design), "prior_lines": pr.describe(design),
             "diagnostics": diag, "divergences": divergences,
             "max_rhat": float(diag["r_hat"].max()), "min_ess_bulk": float(diag["ess_bulk"].min()),
             "ranef_draws": n_ranef, "log_likelihood_note": ll_note}
    messages = tuple(diagnostic_messages(extra))
    for msg in messages:
        warnings.warn(f"NUTS: {msg}", UserWarning, stacklevel=4)
    dev = marginal_deviance(objective, theta_hat, beta_mean, sig_hat)
    k = design.p + design.n_theta + 1
    fe = list(design.fixef_names)
    vcov = np.atleast_2d(np.cov(beta, rowvar=False)) if design.p else np.zeros((0, 0))
    n_groups: dict[str, int] = {}
    for t in design.terms:
        n_groups.setdefault(t.group, t.n_levels)
    return FitResult(
        formula=design.formula, method="NUTS",
        fixef=pd.Series(beta_mean, index=fe, name="fixef"),
        fixef_se=pd.Series(beta.std(axis=0, ddof=1), index=fe, name="fixef_se"),
        vcov=pd.DataFrame(vcov, index=fe, columns=fe),
        sigma=sig_hat, theta=theta_hat, varcorr=varcorr_table(design, covs, sig_hat),
        loglik=-dev / 2, aic=dev + 2 * k, bic=dev + k * np.log(design.nobs), objective=dev,
        nobs=design.nobs, n_dropped=design.n_dropped, is_singular=False,
        converged=divergences == 0 and extra["max_rhat"] <= 1.01,
        ranef_table=ranef_frame(design, b_mean, b_sd), y=design.y.copy(),
        fitted_values=fitted_values(design, beta_mean, b_mean), groups=n_groups,
        n_evals=n_evals, optimizer={"method": f"NUTS ({settings['sampler']})"},
        messages=messages, idata=dt, extra=extra)
