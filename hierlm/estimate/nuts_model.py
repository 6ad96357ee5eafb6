"""The PyMC model of a NUTS fit, its per-shape cache, start values and samplers.

The model (see :mod:`hierlm.estimate.nuts`) has the Gram blocks and prior parameters
as shared data, so one compiled model serves every dataset of the same shape;
:func:`compiled` keeps the last few.  Priors: ``beta ~ Normal``, ``sigma ~
HalfStudentT``, per-term SDs ``~ HalfNormal``, correlations ``~ LKJ`` (Cholesky
factor); theta is ``diag(sd / sigma) L`` packed as lme4 packs it, and the likelihood
is the unprofiled marginal deviance of :mod:`hierlm.objective.cholesky`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import templates
from hierlm.covariance.names import posterior_name
from hierlm.design.terms import ModelDesign
from hierlm.errors import MethodError
from hierlm.estimate.corr_cholesky import fused_cholesky_corr
from hierlm.estimate.frequentist import fit_profiled
from hierlm.estimate.nuts_posterior import coords_of
from hierlm.estimate.nuts_structured import start_values, term_theta
from hierlm.estimate.priors import Priors
from hierlm.estimate.record import FitRecord
from hierlm.objective.cholesky import GramVars, blocked_cholesky, unprofiled_deviance
from hierlm.objective.profiled import ProfiledObjective, gram_values

if TYPE_CHECKING:  # PyMC is imported only where it is used: nutpie's path needs it
    import pymc as pm  # only when a graph is not on disk

CACHE_SIZE = 4


@dataclass(eq=False)
class _Compiled:
    """A PyMC model whose data (Gram blocks, prior parameters) are shared variables."""

    model: pm.Model
    data: dict[str, Any]
    steps: dict[float, Any] = field(default_factory=dict)  # NUTS steps by target_accept

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


def generic_labels(n_terms: int) -> list[str]:
    """Stand-ins ``"{0}"``, ``"{1}"``, ... for the terms' group labels: a model built
    with them has names that ``str.format(*labels)`` turns into any model's names.

    Examples
    --------
    >>> "sd_{}".format(generic_labels(2)[1]).format("Subject", "Days")
    'sd_Days'
    """
    return [f"{{{i}}}" for i in range(n_terms)]


def generic_dims(design: ModelDesign) -> dict[str, int]:
    """Lengths of the dimensions of a model built with :func:`generic_labels`."""
    dims = {"coef": design.p}
    covs = DesignCovariance.of(design).terms
    for label, t, c in zip(generic_labels(len(design.terms)), design.terms, covs, strict=True):
        dims[posterior_name("term", label)] = t.p
        prior = c.nuts_correlation_prior()  # a structured term's vector of correlations
        if prior is not None and prior[1] > 1:
            dims[posterior_name("lag", label)] = prior[1]
    return dims


def build_model(objective: ProfiledObjective, priors: Priors, generic: bool = False
                ) -> tuple[pm.Model, dict[str, Any]]:
    """The PyMC model (priors, theta from SDs and correlations, marginal likelihood).

    Returns the model and its shared data variables (Gram blocks and prior parameters).
    With ``generic``, the terms are named by :func:`generic_labels` and the dimensions'
    coordinates are positions, so the model holds no name or level of the data.
    """
    import pymc as pm

    design = objective.design
    data = {k: pytensor.shared(v, name=k) for k, v in _data_values(objective, priors).items()}
    if generic:
        priors = dataclasses.replace(priors, labels=generic_labels(len(design.terms)))
        coords: dict[str, Any] = {k: list(range(n)) for k, n in generic_dims(design).items()}
    else:
        coords = coords_of(design)
    # check_bounds=False: the priors' parameters were validated when they were resolved
    with pm.Model(coords=coords, check_bounds=False) as model:
        if design.p:
            beta = pm.Normal("beta", mu=data["beta_mu"], sigma=data["beta_sigma"], dims="coef")
        else:
            beta = pt.zeros((0,))
        sigma = pm.HalfStudentT("sigma", nu=data["sigma_nu"], sigma=data["sigma_scale"])
        parts = []
        covs = DesignCovariance.of(design).terms
        for i, (label, t) in enumerate(zip(priors.labels, design.terms, strict=True)):
            if covs[i].structure != "us":
                parts.append(term_theta(covs[i], label, data[f"sd_scale{i}"], sigma))
                continue
            sd = pm.HalfNormal(posterior_name("sd", label), sigma=data[f"sd_scale{i}"],
                               dims=posterior_name("term", label))
            if t.p == 1:
                parts.append(sd / sigma)
                continue
            L = pm.LKJCorr(posterior_name("chol_corr", label), n=t.p, eta=data[f"lkj_eta{i}"],
                           default_transform=fused_cholesky_corr(t.p))
            parts.append(covs[i].pack((sd / sigma)[:, None] * L))
        theta = pt.concatenate(parts)
        g = GramVars(*[data[f"gram{i}"] for i in range(len(GramVars.__dataclass_fields__))])
        f = blocked_cholesky(theta, g, objective.structure)
        dev = unprofiled_deviance(f, g, beta, sigma, data["n"])
        pm.Potential("loglik", -0.5 * dev)
    return model, data


def compiled(objective: ProfiledObjective, pr: Priors) -> _Compiled:
    """The cached model of this design's shape, its data set to this model's."""
    design = objective.design
    key = (objective.structure, design.p, repr(sorted(coords_of(design).items())),
           tuple(c.structure for c in DesignCovariance.of(design).terms))
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


def initvals(objective: ProfiledObjective, priors: Priors, chains: int,
             rng: np.random.Generator, fit: FitRecord | None = None
              ) -> tuple[list[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Per-chain starting points near the REML estimate, jittered, and rough posterior
    variances of the unconstrained parameters (to start the mass-matrix adaptation).
    ``fit`` is that REML fit where the caller has it (fitted here otherwise)."""
    design = objective.design
    res = fit
    if res is None:
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
    cov = DesignCovariance.of(design)
    psi = cov.split(cov.psi_from_theta(res.theta))
    for label, t, T, sc, c, x in zip(priors.labels, design.terms, templates(design, res.theta),
                                     priors.sd_scale, cov.terms, psi, strict=True):
        if c.structure != "us":
            for start in out:
                start.update(start_values(c, label, x, res.sigma, sc, rng))
            continue
        S = res.sigma**2 * T @ T.T
        sd = np.sqrt(np.clip(np.diag(S), 0.0, None))
        scale[posterior_name("sd", label) + "_log__"] = np.full(t.p,
                                                                0.5 / max(t.n_levels - 1, 1))
        for start in out:
            start[posterior_name("sd", label)] = (np.maximum(sd, 0.05 * sc)
                                                  * np.exp(0.1 * rng.normal(size=t.p)))
        if t.p > 1:
            d = 1 / np.sqrt(np.clip(np.diag(S), 1e-300, None))
            R = 0.8 * np.clip(d[:, None] * S * d[None, :], -1, 1) + 0.2 * np.eye(t.p)
            np.fill_diagonal(R, 1.0)
            scale[posterior_name("chol_corr", label) + "_cholesky_corr__"] = np.full(
                t.p * (t.p - 1) // 2, 1.0 / max(t.n_levels, 2))
            for start in out:
                start[posterior_name("chol_corr", label)] = np.linalg.cholesky(R)
    return out, scale


def pymc_step(c: _Compiled, target_accept: float, points: list[dict[str, np.ndarray]],
              scale: dict[str, np.ndarray], logp: Any) -> Any:
    """A NUTS step (made once per cached model and target_accept) that evaluates the
    cached ``logp`` graph with this fit's data; its mass-matrix adaptation starts at
    the mean of the starting ``points`` (unconstrained values by value-variable name)
    and the rough variances ``scale``.  ``logp`` is the fit's
    :class:`~hierlm.estimate.nuts_compiled.LogpDlogp`."""
    import pymc as pm
    from pymc.blocking import DictToArrayBijection
    from pymc.step_methods.hmc.quadpotential import QuadPotentialDiagAdapt

    model = c.model
    step = c.steps.get(target_accept)
    if step is None:
        with model:
            n = sum(int(np.size(v)) for v in points[0].values())
            pot = QuadPotentialDiagAdapt(n, np.zeros(n), np.ones(n), 10)
            step = pm.NUTS(model=model, potential=pot, target_accept=target_accept,
                           initial_point=points[0], logp_dlogp_func=logp)
        c.steps[target_accept] = step
    else:  # the step's integrator holds its LogpDlogp: give it this fit's data
        step._logp_dlogp_func.args = logp.args
    names = [v.name for v in step.vars]
    if tuple(names) != tuple(points[0]):
        raise RuntimeError(f"PyMC's step variables {names} are not the log density's "
                           f"{list(points[0])}")
    mean = np.mean([DictToArrayBijection.map({k: p[k] for k in names}).data for p in points],
                   axis=0)
    var = DictToArrayBijection.map({k: np.broadcast_to(scale.get(k, 1.0), np.shape(points[0][k]))
                                    for k in names}).data
    pot = step.potential
    if hasattr(pot, "_initial_mean") and hasattr(pot, "_initial_diag"):
        pot._initial_mean[:] = mean
        pot._initial_diag[:] = np.where(np.isfinite(var) & (var > 0), var, 1.0)
    return step


def choose_sampler(sampler: str) -> str:
    if sampler not in ("auto", "nutpie", "pymc"):
        raise MethodError(f"unknown sampler {sampler!r}; use 'auto', 'nutpie' or 'pymc'")
    if sampler == "auto":
        return "nutpie" if importlib.util.find_spec("nutpie") is not None else "pymc"
    return sampler
