"""NUTS with a residual structure (``ar1``, ``car1``, ``cs`` and/or ``sigma=`` factors).

The model is that of :mod:`hierlm.estimate.nuts_model` (``beta ~ Normal``, ``sigma ~
HalfStudentT``, per-term SDs ``~ HalfNormal``, LKJ correlations or the structured
terms' own parameters) with the residual covariance ``sigma^2 R0``, ``R0 = S C S``,
and two more groups of parameters:

* ``ar1_phi ~ Uniform(-1, 1)``: the AR(1) correlation of observations one visit apart,
  flat over its whole valid range (as the structured random-effect correlations of
  :mod:`~hierlm.estimate.nuts_structured`); for ``car1`` ``car1_phi ~ Uniform(0, 1)``,
  the correlation of observations one time unit apart (nlme's range); for ``cs``
  ``cs_rho ~ Uniform(-1 / (k_max - 1), 1)``, the correlation of any two observations
  of a group, over its valid range (``k_max`` rows in the largest group);
* ``log_sd_ratio[sigma_term] ~ Normal(0, 1)``, one per column of the ``sigma=`` model:
  the log of a level's residual SD over the reference level's.  A unit-scale prior on the log ratio
  keeps ratios between about 1/7 and 7 within two prior SDs, weak for the ratios seen
  in practice, yet proper, so a level with few rows cannot send its SD to 0 or infinity.

The likelihood is the Gaussian marginal of ``y`` by whitening
(:mod:`hierlm.objective.residual_gram`)::

    -2 log p(y) = dev_iid(beta, theta, sigma; B[Z X y]) + log|R0|,

``dev_iid`` the unprofiled deviance of :mod:`hierlm.objective.cholesky` on the whitened
Gram blocks.  Those are formed inside the PyTensor graph as the class-weighted sum of
the constant class Gram matrices of :mod:`hierlm.objective.residual_classes`,
``sum_c alpha_c^2 G1_c - alpha_c beta_c (G2_c + G2_c') + beta_c^2 G3_c``, with that
module's ``alpha_c``, ``beta_c`` and ``log|R0| = sum_c n_c (2 log s_c + log(1 - a_c^2))``;
for ``cs`` the sums of :mod:`hierlm.objective.residual_cs_classes`.  With more than
:data:`~hierlm.objective.residual_classes.MAX_CLASSES` classes (``car1`` with real
times, a numeric ``sigma=`` column) the class matrices are sparse, ``O(n w^2)`` entries
for ``w`` stored entries per row of ``[Z X y]``, and the sum is one sparse-by-dense
product (``pytensor.sparse.structured_dot``, differentiated in the dense weights).
For ``cs`` with many (group size, SD level) classes (a numeric ``sigma=`` column) the
sum is over rows and pairs of rows of a group, again one sparse-by-dense product
(:mod:`hierlm.objective.residual_cs_pairs`).  Prior weights raise :class:`MethodError`.

The names are those of the REML/ML fit's DataTree (:mod:`hierlm.results.residual_datatree`).
After sampling, :class:`ResidualPosterior` holds the draws of ``(phi, delta)``: the
fit's ``residual_parameters`` are their posterior means, and each posterior draw's
whitened Gram matrix serves its random-effect draw (:mod:`hierlm.estimate.conditional`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.sparse as ps
import pytensor.tensor as pt
import scipy.sparse as sp

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.names import posterior_name
from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.errors import MethodError
from hierlm.estimate.nuts_posterior import coords_of
from hierlm.estimate.nuts_structured import term_theta
from hierlm.estimate.priors import resolve_priors
from hierlm.estimate.residual_posterior import (  # noqa: F401  (re-exported)
    CORRELATION,
    LOG_RATIO_SD,
    ResidualPosterior,
    correlation_name,
    correlation_range,
)
from hierlm.objective.cholesky import GramVars, blocked_cholesky, unprofiled_deviance
from hierlm.objective.profiled import gram_values, structure_of
from hierlm.objective.residual_classes import ClassGram, class_gram
from hierlm.objective.residual_cs_classes import CSClassGram, cs_class_gram
from hierlm.objective.residual_cs_pairs import CSPairGram, cs_pair_gram


def residual_classes(design: ModelDesign, rd: ResidualDesign
                     ) -> ClassGram | CSClassGram | CSPairGram:
    """The class Gram matrices NUTS needs, or a :class:`MethodError` naming why not.

    ``ar1`` / ``car1`` / ``sigma=`` alone take any number of row classes (sparse class
    matrices above :data:`~hierlm.objective.residual_classes.MAX_CLASSES`, as with real
    ``car1`` times or a numeric ``sigma=`` column); ``cs`` with too many (group size,
    SD level) classes and prior weights are refused.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> residual_classes(des, build_residual("ar1(Days | Subject)", None, d, des)).count.tolist()
    [18.0, 162.0]
    >>> d["x"] = np.random.default_rng(0).uniform(size=len(d))  # an SD level per row
    >>> residual_classes(des, build_residual("car1(Days | Subject)", "~ x", d, des)).sparse
    True
    >>> type(residual_classes(des, build_residual("cs(1 | Subject)", "~ x", d, des))).__name__
    'CSPairGram'
    """
    if design.weights is not None:
        raise MethodError("method='nuts' does not take prior weights with residual= or "
                          "sigma= yet; fit by 'reml' or 'ml'")
    cs = rd.spec is not None and rd.spec.kind == "cs"
    cg = ((cs_class_gram(design, rd) or cs_pair_gram(design, rd)) if cs
          else class_gram(design, rd, storage="any"))
    if cg is None:
        raise MethodError("method='nuts' with cs(...) takes groups of at most "
                          "2,000,000 pairs of rows in all: fit by 'reml' or 'ml'")
    return cg


def _filled(layout: Any, values: Any) -> list[Any]:
    """The Gram blocks (:class:`GramVars` order) with the pattern's ``values`` put in."""
    t = layout.template
    e, lv, ia, ib = layout.a11
    A11 = pt.set_subtensor(pt.zeros(t.A11.shape)[lv, ia, ib], values[e])
    nz = pt.set_subtensor(pt.zeros(t.nz_val.size)[layout.nz[0]], values[layout.nz[1]])
    dense = pt.set_subtensor(pt.zeros(t.A_R1_dense.size)[layout.dense[0]],
                             values[layout.dense[1]])
    rr = pt.set_subtensor(pt.zeros(t.A_RR.size)[layout.rr[0]], values[layout.rr[1]])
    if t.dense_r1:
        dense = dense.reshape(t.A_R1_dense.shape)
    else:  # the smooth graph reads A_R1 densely: scatter the per-level nonzeros
        p1 = t.A11.shape[1]
        rows = np.repeat(t.nz_row, p1)
        cols = (t.nz_level[:, None] * p1 + np.arange(p1)[None, :]).ravel()
        dense = pt.set_subtensor(pt.zeros((t.m, t.A11.shape[0] * p1))[rows, cols],
                                 nz.reshape((-1,)))
    filled = {"A11": A11, "nz_val": nz.reshape(t.nz_val.shape), "A_R1_dense": dense,
              "A_RR": rr.reshape(t.A_RR.shape)}
    consts = gram_values(t)
    return [filled.get(name, pt.constant(v))
            for name, v in zip(GramVars.__dataclass_fields__, consts, strict=True)]


def cs_gram_tensor(cg: CSClassGram, rho: Any, delta: Any) -> tuple[list[Any], Any]:
    """:meth:`CSClassGram.gram`'s formulas in PyTensor: the whitened Gram blocks and
    ``log|R0|`` at ``(rho, delta)``."""
    L, k = cg.v_level.shape
    e = pt.dot(pt.constant(cg.v_level), delta) if k else pt.zeros(L)
    size = pt.constant(cg.pair_size)
    c = rho / (1.0 + (size - 1.0) * rho)
    w_pair = c * pt.exp(-(e[cg.pair_levels[:, 0]] + e[cg.pair_levels[:, 1]]))
    values = (pt.dot(pt.exp(-2.0 * e), pt.constant(cg.G))
              - pt.dot(w_pair, pt.constant(cg.H))) / (1.0 - rho)
    sizes = pt.constant(cg.sizes)
    logdet = ((pt.constant(cg.n_groups) * ((sizes - 1.0) * pt.log(1.0 - rho)
                                           + pt.log(1.0 + (sizes - 1.0) * rho))).sum()
              + 2.0 * (pt.constant(cg.level_count) * e).sum())
    return _filled(cg.layout, values), logdet


def cs_pair_gram_tensor(cg: CSPairGram, rho: Any, delta: Any) -> tuple[list[Any], Any]:
    """:meth:`CSPairGram.gram`'s formulas in PyTensor: one sparse-by-dense product,
    differentiated in the weights."""
    e = pt.dot(pt.constant(cg.V), delta) if cg.V.shape[1] else pt.zeros(cg.V.shape[0])
    size = pt.constant(cg.size)
    c = rho / (1.0 + (size - 1.0) * rho)
    inv = pt.exp(-(e[cg.row_i] + e[cg.row_j])) / (1.0 - rho)
    w = pt.switch(pt.constant(cg.single), (1.0 - c) * inv, -c * inv)
    values = ps.structured_dot(ps.as_sparse_variable(cg.D.T.tocsr()), w[:, None])[:, 0]
    sizes = pt.constant(cg.sizes)
    logdet = ((pt.constant(cg.n_groups) * ((sizes - 1.0) * pt.log(1.0 - rho)
                                           + pt.log(1.0 + (sizes - 1.0) * rho))).sum()
              + 2.0 * e.sum())
    return _filled(cg.layout, values), logdet


def class_gram_tensor(cg: ClassGram, phi: Any, delta: Any) -> tuple[list[Any], Any]:
    """The whitened Gram blocks (values in :class:`GramVars` order) and ``log|R0|`` at
    ``(phi, delta)``, PyTensor expressions of :meth:`ClassGram.gram`'s formulas."""
    nc, k = cg.v_row.shape
    s_i = pt.exp(pt.dot(pt.constant(cg.v_row), delta)) if k else pt.ones(nc)
    s_p = pt.exp(pt.dot(pt.constant(cg.v_prev), delta)) if k else pt.ones(nc)
    first = pt.constant(cg.first.astype(float))
    # phi^gap for the non-first classes (gap >= 1); 0 for first rows
    gap = np.where(cg.first, 1.0, cg.gap)
    a = (1.0 - first) * pt.pow(phi, pt.constant(gap))
    one_minus = 1.0 - a * a
    root = pt.sqrt(one_minus)
    alpha = 1.0 / (s_i * root)
    beta = a / (s_p * root)
    c2 = (1.0 - first) * alpha * beta
    c3 = (1.0 - first) * beta**2
    if cg.sparse:  # many classes: one sparse (nnz x 3C) product, gradient to the weights
        D = sp.vstack([cg.D1, cg.D2, cg.D3]).T.tocsr()
        w = pt.concatenate([alpha**2, -c2, c3])
        values = ps.structured_dot(ps.as_sparse_variable(D), w[:, None])[:, 0]
    else:
        values = (pt.dot(alpha**2, pt.constant(cg.D1)) - pt.dot(c2, pt.constant(cg.D2))
                  + pt.dot(c3, pt.constant(cg.D3)))
    logdet = (pt.constant(cg.count) * (2.0 * pt.log(s_i) + pt.log(one_minus))).sum()
    out = _filled(cg.layout, values)
    return out, logdet


def build_residual_model(design: ModelDesign, rd: ResidualDesign,
                         priors: dict[str, Any] | None = None) -> Any:
    """The PyMC model of a NUTS fit with residual structure (module docstring).

    Random-effect terms are parametrized as in :func:`hierlm.estimate.nuts_model.build_model`
    (names ``sd_<group>``, ``chol_corr_<group>``, or a structured term's own).
    """
    import pymc as pm

    from hierlm.estimate.corr_cholesky import fused_cholesky_corr

    cg = residual_classes(design, rd)
    pr = resolve_priors(design, priors)
    structure = structure_of(design, cg.gram(0.0, np.zeros(rd.V.shape[1]))[0])
    coords: dict[str, Any] = dict(coords_of(design))
    if rd.V.shape[1]:
        coords["sigma_term"] = list(rd.v_names)
    with pm.Model(coords=coords) as model:
        beta = (pm.Normal("beta", mu=pr.beta_mu, sigma=pr.beta_sigma, dims="coef")
                if design.p else pt.zeros((0,)))
        sigma = pm.HalfStudentT("sigma", nu=pr.sigma_nu, sigma=pr.sigma_scale)
        name = correlation_name(rd)
        if name is not None:
            lower, upper = correlation_range(rd)
            phi = pm.Uniform(name, lower=lower, upper=upper)
        else:
            phi = pt.constant(0.0)
        delta = (pm.Normal("log_sd_ratio", mu=0.0, sigma=LOG_RATIO_SD, dims="sigma_term")
                 if rd.V.shape[1] else pt.zeros((0,)))
        parts = []
        covs = DesignCovariance.of(design).terms
        for i, (lab, t) in enumerate(zip(pr.labels, design.terms, strict=True)):
            scale = np.asarray(pr.sd_scale[i], dtype=float)
            if covs[i].structure != "us":
                parts.append(term_theta(covs[i], lab, scale, sigma))
                continue
            sd = pm.HalfNormal(posterior_name("sd", lab), sigma=scale,
                               dims=posterior_name("term", lab))
            if t.p == 1:
                parts.append(sd / sigma)
                continue
            L = pm.LKJCorr(posterior_name("chol_corr", lab), n=t.p, eta=float(pr.lkj_eta[i]),
                           default_transform=fused_cholesky_corr(t.p))
            parts.append(covs[i].pack((sd / sigma)[:, None] * L))
        theta = pt.concatenate(parts)
        if isinstance(cg, CSClassGram):
            vals, logdet = cs_gram_tensor(cg, phi, delta)
        elif isinstance(cg, CSPairGram):
            vals, logdet = cs_pair_gram_tensor(cg, phi, delta)
        else:
            vals, logdet = class_gram_tensor(cg, phi, delta)
        g = GramVars(*vals)
        # PyTensor's own Ops: the Gram blocks depend on (phi, delta), and the fused
        # Ops' gradients reach theta only, so NUTS would not take phi and delta
        f = blocked_cholesky(theta, g, structure, smooth=True)
        dev = unprofiled_deviance(f, g, beta, sigma, pt.constant(float(design.nobs)))
        pm.Potential("loglik", -0.5 * (dev + logdet))
    return model


def sample_residual(design: ModelDesign, rd: ResidualDesign, *, draws: int = 500,
                    tune: int = 500, chains: int = 2, random_seed: int | None = None,
                    priors: dict[str, Any] | None = None, target_accept: float = 0.9) -> Any:
    """NUTS draws (PyMC's sampler) of a model with residual structure.

    Returns PyMC's InferenceData; its posterior holds ``beta``, ``sigma``, the terms'
    parameters, ``ar1_phi`` (``car1_phi``) and ``log_sd_ratio[sigma_term]``.
    :func:`hierlm.fit` with ``method="nuts"`` returns a whole result instead.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rd = build_residual("ar1(Days | Subject)", None, d, des)
    >>> idata = sample_residual(des, rd, draws=200, tune=200, random_seed=1)  # doctest: +SKIP
    >>> float(idata.posterior["ar1_phi"].mean()) > 0  # doctest: +SKIP
    True
    """
    import pymc as pm

    import hierlm.objective.jit  # noqa: F401 - PyMC links the model with Numba

    model = build_residual_model(design, rd, priors)
    with model:
        return pm.sample(draws=draws, tune=tune, chains=chains, cores=1,
                         random_seed=random_seed, target_accept=target_accept,
                         progressbar=False, compute_convergence_checks=False)
