"""NUTS fit of a model with ``residual=`` / ``sigma=``: sampling and the fit's record.

The density is :mod:`hierlm.estimate.nuts_residual`'s (PyMC's own NUTS on it, as for
structured random-effect terms); the record is made by
:func:`hierlm.estimate.nuts.assemble`, as every NUTS fit's, with the residual
parameters' draws (:class:`~hierlm.estimate.nuts_residual.ResidualPosterior`):

* ``residual_parameters``: posterior means of ``rho`` (the ``ar1`` / ``car1`` phi, the
  ``cs`` correlation) and
  of each ``log_sd_ratio:<column>``, named as in a REML fit;
* ``residual_sd()``: ``sigma`` (posterior median, as every NUTS fit's) times each
  row's ``exp(v' delta)`` at the posterior means of ``delta``;
* the random effects: one exact draw from ``b | y, beta, theta, sigma, phi, delta``
  per posterior draw, on that draw's whitened model.

``init="reml"`` starts the chains at the jittered REML estimate of the same model
(:func:`hierlm.estimate.residual_fit.fit_residual`), residual parameters included.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np
import scipy.special

from hierlm.design.residual_design import ResidualDesign
from hierlm.errors import MethodError
from hierlm.estimate.nuts import assemble, check_arguments, run_pymc
from hierlm.estimate.nuts_model import initvals
from hierlm.estimate.nuts_residual import (
    ResidualPosterior,
    build_residual_model,
    correlation_name,
    correlation_range,
    residual_classes,
)
from hierlm.estimate.priors import resolve_priors
from hierlm.estimate.record import FitRecord
from hierlm.estimate.residual_fit import fit_residual
from hierlm.objective.profiled import ProfiledObjective, compile_objective

#: Jitter of the starting points: SD of the correlation on the logit scale of its
#: prior's range, and of each log SD ratio.
JITTER = 0.1


def _starts(objective: ProfiledObjective, rd: ResidualDesign, pr: Any, chains: int,
            rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    """Per-chain starting points at the jittered REML estimate (module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = fit_residual(objective.design, rd, reml=True)
    starts, _ = initvals(objective, pr, chains, rng, fit=rec)
    par = rec.residual_parameters.to_numpy(dtype=float)
    delta = par[rd.n_corr:]
    name = correlation_name(rd)
    lower, upper = correlation_range(rd)
    for start in starts:
        if name is not None:  # jittered on the logit scale of the prior's range
            u = np.clip((par[0] - lower) / (upper - lower), 1e-3, 1 - 1e-3)
            z = scipy.special.logit(u) + JITTER * rng.normal()
            start[name] = np.asarray(lower + (upper - lower) * scipy.special.expit(z))
        if delta.size:
            start["log_sd_ratio"] = delta + JITTER * rng.standard_normal(delta.size)
    return starts


def sample_with_residual(objective: ProfiledObjective, rd: ResidualDesign, *,
                         draws: int = 1000, tune: int = 1000, chains: int = 4,
                         random_seed: int | None = None, progressbar: bool = True,
                         priors: dict[str, Any] | None = None, target_accept: float = 0.9,
                         init: str = "reml", ranef_draws: bool | int = True,
                         sampler: str = "auto", cores: int | None = None) -> FitRecord:
    """Sample the posterior of a model with residual structure by NUTS.

    The arguments are :func:`hierlm.estimate.nuts.sample`'s; ``sampler`` is PyMC's
    (``"auto"`` or ``"pymc"``).  The priors of the residual parameters are fixed
    (:mod:`hierlm.estimate.nuts_residual`); ``priors`` sets the others.

    Parameters
    ----------
    objective : ProfiledObjective
        The compiled model without its residual structure (its REML fit is not used;
        its design is).
    rd : ResidualDesign
        The residual structure (:func:`hierlm.design.residual_design.build_residual`).

    Returns
    -------
    FitRecord
        As :func:`hierlm.estimate.nuts.sample`'s, with ``residual_parameters``,
        ``residual_scale``, ``residual`` and ``sigma_formula`` (module docstring); the
        posterior holds ``ar1_phi`` (``car1_phi``, ``cs_rho``) and
        ``log_sd_ratio[sigma_term]``,
        and there is no ``log_likelihood`` group.

    Raises
    ------
    MethodError
        For a structure NUTS does not take (``cs`` with rows in too many classes, as
        with a numeric ``sigma=`` column; prior weights), ``sampler="nutpie"``, or a
        bad sampler argument.  ``ar1`` / ``car1`` (real times included) and ``sigma=``
        alone take any number of row classes.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, method="nuts",
    ...                  residual="ar1(Days | Subject)", draws=200, tune=200, chains=2,
    ...                  random_seed=1, progressbar=False)  # doctest: +SKIP
    >>> res.residual_parameters.index.tolist()  # doctest: +SKIP
    ['rho']
    """
    max_ranef = check_arguments(draws, tune, chains, target_accept, init, ranef_draws)
    if sampler == "nutpie":
        raise MethodError("sampler='nutpie' does not take residual= / sigma= yet; use "
                          "sampler='pymc' or 'auto'")
    if sampler not in ("auto", "pymc"):
        raise MethodError(f"unknown sampler {sampler!r}; use 'auto', 'nutpie' or 'pymc'")
    design = objective.design
    cg = residual_classes(design, rd)  # a MethodError naming what NUTS cannot take
    pr = resolve_priors(design, priors)
    s_init, s_pm, s_ranef = np.random.SeedSequence(random_seed).spawn(3)
    model = build_residual_model(design, rd, priors)
    kwargs: dict[str, Any] = {"cores": cores or min(chains, os.cpu_count() or 1),
                              "target_accept": target_accept}
    if init == "reml":
        kwargs.update(initvals=_starts(objective, rd, pr, chains,
                                       np.random.default_rng(s_init)), init="adapt_diag")
    else:
        kwargs.update(init="jitter+adapt_diag")
    import hierlm.objective.jit  # noqa: F401 - PyMC links the model with Numba

    t0 = time.perf_counter()
    idata = run_pymc(model, draws, tune, chains, int(s_pm.generate_state(1)[0]),
                     progressbar, kwargs)
    settings = {"sampler": "pymc", "draws": draws, "tune": tune, "chains": chains,
                "target_accept": target_accept, "init": init, "random_seed": random_seed,
                "sampling_time": time.perf_counter() - t0}
    residual = ResidualPosterior.from_posterior(design, rd, cg,
                                                idata["posterior"].to_dataset())
    whitened = compile_objective(design, cg.gram(0.0, np.zeros(rd.V.shape[1]))[0])
    return assemble(whitened, pr, idata, settings, max_ranef,
                    np.random.default_rng(s_ranef), residual=residual)
