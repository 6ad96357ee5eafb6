"""Default, scale-aware priors for ``method="nuts"``, and validation of user overrides.

The priors are weakly informative and set from the data's scale (as rstanarm's and
bambi's autoscaling do).  With ``s_y = sd(y)`` and, for a column ``x``, ``s_x = sd(x)``
(``|x|`` where ``x`` is constant, so 1 for an intercept)::

    beta_j       ~ Normal(0, 2.5 s_y / s_x_j)                  (slopes)
    beta_0       ~ Normal(mean(y), 2.5 s_y sqrt(1 + sum_j (mean(x_j) / s_x_j)^2))
    sigma        ~ HalfStudentT(nu=3, scale=s_y)
    sd_{i,j}     ~ HalfNormal(scale = s_y / s_x)               (x: term i's column j)
    L_corr,i     ~ LKJCholesky(eta=2)                          (terms with p_i > 1)

The intercept prior is ``Normal(mean(y), 2.5 s_y)`` on the scale of *centered*
predictors, carried over to the uncentered intercept hierlm estimates: its SD grows
with the means of the other columns, so it is exactly ``2.5 s_y`` when they are
centered.  Overrides are a small dict, e.g.::

    {"beta": {"Days": {"mu": 0, "sigma": 5}}, "sigma": {"scale": 10, "nu": 4},
     "sd": {"Subject": {"scale": 20}}, "lkj_eta": 4}

``sd`` is keyed by the variance-component group label (as in ``varcorr``:
``"Subject"``, ``"Subject.1"``, ``"cask:batch"``); its value may hold ``"scale"``
(all coefficients of the term) and/or coefficient names mapping to
``{"scale": ...}``.  ``lkj_eta`` is a number (every correlated term) or a dict by
group label.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from hierlm.covariance.base import Covariance
from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.names import posterior_name
from hierlm.design.terms import ModelDesign
from hierlm.errors import PriorError
from hierlm.objective.varcorr import group_labels

KEYS = ("beta", "sigma", "sd", "lkj_eta")
SIGMA_NU = 3.0
LKJ_ETA = 2.0


@dataclass(frozen=True)
class Priors:
    """Resolved prior parameters of every sampled quantity.

    Attributes
    ----------
    beta_mu, beta_sigma : ndarray, shape (p,)
        Normal prior of each fixed effect.
    sigma_scale, sigma_nu : float
        HalfStudentT prior of the residual SD.
    sd_scale : list of ndarray
        HalfNormal scale of each term's coefficient SDs (``p_i`` each).
    lkj_eta : list of float
        LKJ shape of each term's correlation matrix (unused where ``p_i == 1``).
    labels : list of str
        Group label of each term (``varcorr``'s).
    """

    beta_mu: np.ndarray
    beta_sigma: np.ndarray
    sigma_scale: float
    sigma_nu: float
    sd_scale: list[np.ndarray]
    lkj_eta: list[float]
    labels: list[str]

    def describe(self, design: ModelDesign) -> list[str]:
        """One line per prior, for summaries.

        Examples
        --------
        >>> import hierlm
        >>> d = hierlm.build_design("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
        >>> resolve_priors(d).describe(d)[2]
        'sigma ~ HalfStudentT(nu=3, scale=56.17)'
        """
        out = [f"beta[{n}] ~ Normal(mu={_g(m)}, sigma={_g(s)})"
               for n, m, s in zip(design.fixef_names, self.beta_mu, self.beta_sigma, strict=True)]
        out.append(f"sigma ~ HalfStudentT(nu={_g(self.sigma_nu)}, scale={_g(self.sigma_scale)})")
        for label, term, sc, eta, cov in zip(self.labels, design.terms, self.sd_scale,
                                             self.lkj_eta, DesignCovariance.of(design).terms,
                                             strict=True):
            if cov.structure != "us":
                out += _structured_lines(cov, label, sc)
                continue
            out += [f"{posterior_name('sd', label)}[{n}] ~ HalfNormal(scale={_g(s)})"
                    for n, s in zip(term.coef_names, sc, strict=True)]
            if term.p > 1:
                out.append(f"{posterior_name('corr', label)} ~ LKJ(eta={_g(eta)})")
        return out

    def as_dict(self, design: ModelDesign) -> dict[str, Any]:
        """The priors in the override format (a complete, explicit ``priors`` dict)."""
        return {
            "beta": {n: {"mu": float(m), "sigma": float(s)} for n, m, s in
                     zip(design.fixef_names, self.beta_mu, self.beta_sigma, strict=True)},
            "sigma": {"scale": self.sigma_scale, "nu": self.sigma_nu},
            "sd": {label: {n: {"scale": float(s)} for n, s in zip(t.coef_names, sc, strict=True)}
                   for label, t, sc in zip(self.labels, design.terms, self.sd_scale, strict=True)},
            "lkj_eta": {label: eta for label, t, eta in
                        zip(self.labels, design.terms, self.lkj_eta, strict=True)
                        if t.p > 1 and getattr(t, "structure", "us") == "us"},
        }


def _structured_lines(cov: Covariance, label: str, scale: np.ndarray) -> list[str]:
    """The priors of a structured term (see :mod:`hierlm.estimate.nuts_structured`)."""
    if cov.homogeneous:  # one SD: the geometric mean of the columns' scales
        gm = float(np.exp(np.mean(np.log(scale))))
        out = [f"{posterior_name('sd', label)} ~ HalfNormal(scale={_g(gm)})"]
    else:
        out = [f"{posterior_name('sd', label)}[{n}] ~ HalfNormal(scale={_g(s)})"
               for n, s in zip(cov.coef_names, scale, strict=True)]
    prior = cov.nuts_correlation_prior()
    if prior is not None:
        name, count, lo, hi = prior
        each = " each" if count > 1 else ""
        out.append(f"{posterior_name(name, label)} ~ Uniform({_g(lo)}, {_g(hi)}){each}")
    return out


def _g(x: float) -> str:
    return f"{x:.4g}"


def _col_scale(x: np.ndarray) -> float:
    """``sd(x)``, or ``max|x|`` for a constant column (1 for an intercept)."""
    s = float(np.std(x))
    if s > 1e-12 * max(1.0, float(np.max(np.abs(x)))):
        return s
    m = float(np.max(np.abs(x))) if x.size else 1.0
    return m if m > 0 else 1.0


def default_priors(design: ModelDesign) -> Priors:
    """The default scale-aware priors of a design (see the module docstring).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> pr = default_priors(d)
    >>> [round(float(v), 2) for v in pr.sd_scale[0]], pr.lkj_eta
    ([56.17, 19.56], [2.0])
    """
    y, X = design.y, design.X
    sy = float(np.std(y))
    sy = sy if sy > 0 else max(float(np.max(np.abs(y))), 1.0)
    mu = np.zeros(design.p)
    sig = np.zeros(design.p)
    is_const = np.array([np.std(X[:, j]) <= 1e-12 * max(1.0, np.max(np.abs(X[:, j])))
                         for j in range(design.p)], dtype=bool)
    widen = 0.0
    for j in range(design.p):
        sx = _col_scale(X[:, j])
        sig[j] = 2.5 * sy / sx
        if not is_const[j]:
            widen += (float(np.mean(X[:, j])) / sx) ** 2
    for j in np.flatnonzero(is_const)[:1]:  # the intercept (first constant column)
        mu[j] = float(np.mean(y)) / X[0, j]
        sig[j] = 2.5 * sy * math.sqrt(1.0 + widen) / abs(X[0, j])
    sd_scale = [np.array([sy / _col_scale(t.X[:, j]) for j in range(t.p)]) for t in design.terms]
    return Priors(beta_mu=mu, beta_sigma=sig, sigma_scale=sy, sigma_nu=SIGMA_NU,
                  sd_scale=sd_scale, lkj_eta=[LKJ_ETA] * len(design.terms),
                  labels=group_labels(design))


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise PriorError(f"priors{where} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise PriorError(f"priors{where} must be a positive finite number, got {value!r}")
    return v


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise PriorError(f"priors{where} must be a number, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise PriorError(f"priors{where} must be finite, got {value!r}")
    return float(value)


def _mapping(value: Any, where: str, allowed: tuple[str, ...] | None = None) -> dict:
    if not isinstance(value, dict):
        raise PriorError(f"priors{where} must be a dict, got {type(value).__name__}")
    if allowed is not None:
        bad = [k for k in value if k not in allowed]
        if bad:
            raise PriorError(f"unknown key {bad[0]!r} in priors{where}; "
                             f"use {', '.join(map(repr, allowed))}")
    return value


def resolve_priors(design: ModelDesign, priors: dict[str, Any] | None = None) -> Priors:
    """Defaults updated by a user's ``priors`` dict, validated.

    Parameters
    ----------
    design : ModelDesign
        The model design (supplies names and data scales).
    priors : dict, optional
        Overrides with keys ``"beta"``, ``"sigma"``, ``"sd"``, ``"lkj_eta"`` (see the
        module docstring).

    Returns
    -------
    Priors

    Raises
    ------
    PriorError
        An unknown key or name, a non-positive scale, or a value of the wrong type.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> resolve_priors(d, {"sd": {"Subject": {"Days": {"scale": 5}}}}).sd_scale[0].tolist()[1]
    5.0
    >>> resolve_priors(d, {"sigma": {"scale": -1}})
    Traceback (most recent call last):
    ...
    hierlm.errors.PriorError: priors['sigma']['scale'] must be a positive finite number, got -1
    """
    base = default_priors(design)
    if priors is None:
        return base
    user = _mapping(priors, "", KEYS)
    mu, sig = base.beta_mu.copy(), base.beta_sigma.copy()
    names = list(design.fixef_names)
    for name, spec in _mapping(user.get("beta", {}), "['beta']").items():
        if name not in names:
            raise PriorError(f"unknown coefficient {name!r} in priors['beta']; "
                             f"fixed effects are {', '.join(map(repr, names))}")
        where = f"['beta'][{name!r}]"
        spec = _mapping(spec, where, ("mu", "sigma"))
        j = names.index(name)
        if "mu" in spec:
            mu[j] = _finite(spec["mu"], where + "['mu']")
        if "sigma" in spec:
            sig[j] = _positive(spec["sigma"], where + "['sigma']")
    s_spec = _mapping(user.get("sigma", {}), "['sigma']", ("scale", "nu"))
    s_scale = _positive(s_spec["scale"], "['sigma']['scale']") if "scale" in s_spec \
        else base.sigma_scale
    s_nu = _positive(s_spec["nu"], "['sigma']['nu']") if "nu" in s_spec else base.sigma_nu
    labels = base.labels
    sd_scale = [s.copy() for s in base.sd_scale]
    for label, spec in _mapping(user.get("sd", {}), "['sd']").items():
        if label not in labels:
            raise PriorError(f"unknown group {label!r} in priors['sd']; "
                             f"groups are {', '.join(map(repr, labels))}")
        i = labels.index(label)
        coefs = design.terms[i].coef_names
        where = f"['sd'][{label!r}]"
        spec = _mapping(spec, where, ("scale", *coefs))
        if "scale" in spec:
            sd_scale[i][:] = _positive(spec["scale"], where + "['scale']")
        for j, coef in enumerate(coefs):
            if coef in spec:
                sub = _mapping(spec[coef], f"{where}[{coef!r}]", ("scale",))
                if "scale" in sub:
                    sd_scale[i][j] = _positive(sub["scale"], f"{where}[{coef!r}]['scale']")
    eta = list(base.lkj_eta)
    if "lkj_eta" in user:
        raw = user["lkj_eta"]
        if isinstance(raw, dict):
            for label, v in raw.items():
                if label not in labels or design.terms[labels.index(label)].p < 2:
                    corr = [lab for lab, t in zip(labels, design.terms, strict=True) if t.p > 1]
                    raise PriorError(f"unknown correlated group {label!r} in priors['lkj_eta']; "
                                     f"groups with correlations: {', '.join(map(repr, corr))}")
                eta[labels.index(label)] = _positive(v, f"['lkj_eta'][{label!r}]")
        else:
            eta = [_positive(raw, "['lkj_eta']")] * len(eta)
    return Priors(beta_mu=mu, beta_sigma=sig, sigma_scale=s_scale, sigma_nu=s_nu,
                  sd_scale=sd_scale, lkj_eta=eta, labels=labels)
