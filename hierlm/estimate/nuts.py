"""Bayesian fit by NUTS on the marginal likelihood, random effects drawn exactly afterwards.

NUTS samples only ``beta``, ``sigma`` and, for each term ``i``, the SDs ``sd_i`` of its
coefficients and (for ``p_i > 1``) the Cholesky factor ``L_i`` of their correlation
matrix.  The relative factor is then ``T_i = diag(sd_i / sigma) L_i``, packed into theta
as lme4 packs it, and the likelihood is the exact marginal one (random effects
integrated out), built from the same blocked-Cholesky graph the REML/ML fits use::

    -2 log p(y | beta, theta, sigma) = log|L_theta|^2 + n log(2 pi sigma^2)
                                       + r^2(beta, theta) / sigma^2

with the Gram blocks of ``[Z X y]`` as data, so one gradient costs nothing in ``n``.
A structured term (``ar1``, ``cs``, ``toep``, ``diag``) is sampled in its own
parameters instead (SDs and ``rho`` / partial autocorrelations) and mapped to theta
inside the density (:mod:`hierlm.estimate.nuts_structured`); its structure is part of
the compiled density's key (:mod:`hierlm.estimate.nuts_compiled`), so such models take
the same compiled path, nutpie's included.
After sampling, each posterior draw gets one exact draw of the random effects from
``b | y, beta, theta, sigma`` (:mod:`hierlm.estimate.conditional`).  The PyMC model
and its compiled NUTS step are kept per model shape, so refitting the same design
with a new response (``Model.with_response``) does not recompile.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.names import posterior_name
from hierlm.errors import MethodError, warn
from hierlm.estimate.assemble import build_record
from hierlm.estimate.conditional import (
    log_likelihood_dataset,
    marginal_deviance,
    ranef_posterior,
)
from hierlm.estimate.diagnostics import diagnostics_table, loo_summary
from hierlm.estimate.frequentist import fitted_values, ranef_frame
from hierlm.estimate.kind import NUTS
from hierlm.estimate.nuts_compiled import (
    LogpDlogp,
    call_args,
    data_values,
    density_graphs,
    to_unconstrained,
)
from hierlm.estimate.nuts_info import NutsInfo
from hierlm.estimate.nuts_model import choose_sampler, compiled, initvals, pymc_step
from hierlm.estimate.nuts_nutpie import nutpie_sample
from hierlm.estimate.nuts_posterior import (
    coords_of,
    derived_variables,
    diagnostic_messages,
    display_layout,
    flat_draws,
    point_estimates,
)
from hierlm.estimate.nuts_structured import variable_names
from hierlm.estimate.priors import Priors, resolve_priors
from hierlm.estimate.pymc_progress import progress_bar_without_matplotlib
from hierlm.estimate.record import FitRecord
from hierlm.objective.profiled import ProfiledObjective
from hierlm.objective.varcorr import varcorr_table

if TYPE_CHECKING:
    from hierlm.estimate.residual_posterior import ResidualPosterior


def sample(objective: ProfiledObjective, *, draws: int = 1000, tune: int = 1000,
           chains: int = 4, random_seed: int | None = None, progressbar: bool = True,
           priors: dict[str, Any] | None = None, target_accept: float = 0.9,
           init: str = "reml", ranef_draws: bool | int = True,
           sampler: str = "auto", cores: int | None = None) -> FitRecord:
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
    :mod:`hierlm.estimate.priors`.  A structured term samples its SDs with the same
    ``HalfNormal`` prior (one SD, the geometric mean of the scales, when homogeneous)
    and its correlation parameters ``Uniform`` over their valid range: ``rho_<group>``
    for ``ar1`` (in (-1, 1)) and ``cs`` (in (-1/(p-1), 1)), ``pacf_<group>[<group>_lag]``
    (partial autocorrelations, each in (-1, 1)) for ``toep``, whose lag correlations
    are reported as ``rho_<group>[<group>_lag]``.

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
        Chains run in parallel (default: ``min(chains, CPUs)``; one thread when nutpie
        samples the NumPy log density, whose Python calls hold the interpreter lock:
        :mod:`hierlm.estimate.nuts_first`).

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
        ``r_<group>[<group>_term, <factor>_level]``; a one-coefficient term's ``sd`` is a
        scalar and its ``r`` has no term dimension), ``sample_stats``,
        ``observed_data`` (``y``) and, when one grouping factor splits the data into
        independent blocks, ``log_likelihood`` (``y[<factor>_level]``:
        ``log p(y_g | beta, theta, sigma)`` per level, for ``arviz.loo``).  ``nuts``
        (a :class:`~hierlm.estimate.nuts_info.NutsInfo`) holds the diagnostics table,
        divergences, the priors and the sampler settings.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy(),
    ...                  method="nuts", random_seed=1)  # doctest: +SKIP
    >>> res.fixef.round(0).to_dict()  # doctest: +SKIP
    {'(Intercept)': 251.0, 'Days': 10.0}
    """
    max_ranef = check_arguments(draws, tune, chains, target_accept, init, ranef_draws)
    which = choose_sampler(sampler)
    pr = resolve_priors(objective.design, priors)
    s_init, s_pm, s_ranef = np.random.SeedSequence(random_seed).spawn(3)
    starts, scale = (initvals(objective, pr, chains, np.random.default_rng(s_init))
                     if init == "reml" else (None, {}))
    t0 = time.perf_counter()
    seed = int(s_pm.generate_state(1)[0])
    if which == "nutpie":
        idata = nutpie_sample(objective, pr, starts, seed, draws, tune, chains, cores,
                              progressbar, target_accept)
    else:
        import hierlm.objective.jit  # noqa: F401 - PyMC links the model with Numba

        c = compiled(objective, pr)
        kwargs: dict[str, Any] = {"cores": cores or min(chains, os.cpu_count() or 1)}
        if starts:
            graphs = density_graphs(objective, pr)
            values = data_values(objective, pr)
            points = [graphs.unravel(x) for x in to_unconstrained(graphs, values, starts)]
            logp = LogpDlogp(graphs.logp, call_args(graphs.logp, values, 1))
            kwargs.update(step=pymc_step(c, target_accept, points, scale, logp),
                          initvals=starts)
        else:
            kwargs.update(init="jitter+adapt_diag", target_accept=target_accept)
        idata = run_pymc(c.model, draws, tune, chains, seed, progressbar, kwargs)
    settings = {"sampler": which, "draws": draws, "tune": tune, "chains": chains,
                "target_accept": target_accept, "init": init, "random_seed": random_seed,
                "sampling_time": time.perf_counter() - t0}
    return assemble(objective, pr, idata, settings, max_ranef, np.random.default_rng(s_ranef))


def check_arguments(draws: int, tune: int, chains: int, target_accept: float, init: str,
                    ranef_draws: bool | int) -> int:
    """The sampler arguments checked (one :class:`MethodError` naming the bad one); returns
    how many posterior draws get a draw of the random effects.

    Examples
    --------
    >>> check_arguments(100, 100, 2, 0.9, "reml", True)
    200
    >>> check_arguments(100, 100, 2, 1.5, "reml", True)
    Traceback (most recent call last):
    ...
    hierlm.errors.MethodError: target_accept must be in (0, 1), got 1.5
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
        return (draws * chains) if ranef_draws else 0
    if isinstance(ranef_draws, int | np.integer) and ranef_draws >= 0:
        return int(ranef_draws)
    raise MethodError(f"ranef_draws must be True, False or a count, got {ranef_draws!r}")


def run_pymc(model: Any, draws: int, tune: int, chains: int, seed: int, progressbar: bool,
             kwargs: dict[str, Any]) -> Any:
    """PyMC's ``pm.sample`` on ``model``, tuning draws kept (their step counts are
    evaluations), quiet unless ``progressbar``."""
    import pymc as pm

    with model, warnings.catch_warnings(), progress_bar_without_matplotlib():
        warnings.filterwarnings("ignore", message=".*initvals.*")
        return pm.sample(draws=draws, tune=tune, chains=chains, progressbar=progressbar,
                         random_seed=seed, discard_tuned_samples=False,
                         compute_convergence_checks=False, quiet=not progressbar, **kwargs)


def assemble(objective: ProfiledObjective, pr: Priors, idata: Any, settings: dict[str, Any],
             max_ranef: int, rng: np.random.Generator,
             residual: ResidualPosterior | None = None) -> FitRecord:
    """The record of a NUTS fit from its draws (see :func:`sample`'s Returns).

    With ``residual`` (a fit with ``residual=`` / ``sigma=``) ``objective`` is the
    whitened model's (:mod:`hierlm.estimate.nuts_residual`): each random-effect draw is
    made on the whitened model of its own posterior draw, the deviance at the point
    estimates adds ``log|R0|``, and there is no ``log_likelihood`` group.
    """
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
    point, logdet, gram_at = objective, 0.0, None
    if residual is not None:
        point, logdet = residual.point_objective(objective)
        gram_at = residual.gram_at
    b_mean, b_sd, r_ds, n_ranef = ranef_posterior(
        point, coords_of(design), post, (theta, beta, sigma),
        (theta_hat, beta_mean, sig_hat), max_ranef, rng, gram_at=gram_at)
    if residual is None:
        ll_ds, ll_note = log_likelihood_dataset(design, post, theta, beta, sigma)
    else:
        ll_ds, ll_note = None, residual.log_likelihood_note
    extra_groups: dict[str, xr.Dataset] = {}
    if r_ds is not None and r_ds.sizes["draw"] == post.sizes["draw"]:
        post = xr.merge([post, r_ds], combine_attrs="override")
    elif r_ds is not None:
        extra_groups["posterior_ranef"] = display_layout(r_ds, design)
    post = display_layout(post, design)
    groups = {"posterior": post, "sample_stats": stats, **extra_groups,
              "observed_data": xr.Dataset({"y": (("obs",), design.y.copy())},
                                          coords={"obs": np.arange(design.nobs)})}
    if ll_ds is not None:
        groups["log_likelihood"] = ll_ds
    dt = xr.DataTree.from_dict(groups)
    cov = DesignCovariance.of(design)
    names = ["beta"] * bool(design.p) + ["sigma"] + [
        name for lab, t, c in zip(labels, design.terms, cov.terms, strict=True)
        for name in (variable_names(c, lab) if c.structure != "us" else
                     [posterior_name(k, lab) for k in (("sd", "corr") if t.p > 1 else ("sd",))])]
    prior_dict, prior_lines = pr.as_dict(design), tuple(pr.describe(design))
    if residual is not None:
        names += residual.names
        prior_dict = {**prior_dict, **residual.priors}
        prior_lines += residual.prior_lines
    diag = diagnostics_table(dt, names)
    divergences = int(np.asarray(stats["diverging"].values).sum()) if "diverging" in stats else 0
    info = NutsInfo(**settings, priors=prior_dict, prior_lines=prior_lines, diagnostics=diag,
                    divergences=divergences, max_rhat=float(diag["r_hat"].max()),
                    min_ess_bulk=float(diag["ess_bulk"].min()), ranef_draws=n_ranef,
                    log_likelihood_note=ll_note, loo=loo_summary(dt))
    messages = tuple(diagnostic_messages(info))
    for msg in messages:
        warn(f"NUTS: {msg}", UserWarning)
    dev = marginal_deviance(point, theta_hat, beta_mean, sig_hat) + logdet
    vcov = np.atleast_2d(np.cov(beta, rowvar=False)) if design.p else np.zeros((0, 0))
    return build_record(
        design, method=NUTS.label, beta=beta_mean, vcov=vcov, sigma=sig_hat, theta=theta_hat,
        varcorr=varcorr_table(design, covs, sig_hat),
        ranef_table=ranef_frame(design, b_mean, b_sd),
        fitted_values=fitted_values(design, beta_mean, b_mean), objective=dev,
        is_singular=False, converged=divergences == 0 and info.max_rhat <= 1.01,
        n_evals=n_evals, optimizer={"method": f"NUTS ({settings['sampler']})"},
        messages=messages, idata=dt, nuts=info,
        **({} if residual is None else residual.record_fields()))
