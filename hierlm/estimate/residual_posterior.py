"""The posterior draws of a NUTS fit's residual parameters (phi or rho, log SD ratios).

The correlation is ``ar1_phi`` (``ar1``), ``car1_phi`` (``car1``) or ``cs_rho``
(``cs``), each with a uniform prior over its whole valid range
(:func:`correlation_range`); the log SD ratios ``log_sd_ratio[sigma_term]`` have
``Normal(0, LOG_RATIO_SD)`` priors.  The fit's ``residual_parameters`` are the draws'
posterior means, its per-row residual SDs ``s_i = exp(v_i' delta-bar) / sqrt(w_i)``
(:func:`hierlm.objective.residual_gram.relative_sd`), and each draw's whitened Gram
matrix ``sum_c alpha_c^2 G1_c - ...`` (:mod:`hierlm.objective.residual_classes`) serves
that draw's random effects.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.estimate.nuts_posterior import flat_draws
from hierlm.objective.gram import GramBlocks
from hierlm.objective.profiled import ProfiledObjective
from hierlm.objective.residual_classes import ClassGram
from hierlm.objective.residual_cs_classes import CSClassGram
from hierlm.objective.residual_cs_pairs import CSPairGram
from hierlm.objective.residual_gram import relative_sd

#: The correlation parameter's posterior name, by structure (those of the REML fit's
#: DataTree, :mod:`hierlm.results.residual_datatree`).
CORRELATION = {"ar1": "ar1_phi", "car1": "car1_phi", "cs": "cs_rho"}
#: Prior SD of each log SD ratio.
LOG_RATIO_SD = 1.0


def correlation_name(rd: ResidualDesign) -> str | None:
    """The correlation parameter's posterior name (None without a structure).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> correlation_name(build_residual("car1(Days | Subject)", None, d, des))
    'car1_phi'
    """
    return None if rd.spec is None else CORRELATION[rd.spec.kind]


def correlation_range(rd: ResidualDesign) -> tuple[float, float]:
    """The range of the correlation's uniform prior: its whole valid range, (-1, 1) for
    ``ar1``, (0, 1) for ``car1`` (nlme's), ``(-1 / (k_max - 1), 1)`` for ``cs`` with
    groups of at most ``k_max`` rows (``C`` positive definite).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> correlation_range(build_residual("cs(1 | Subject)", None, d, des))
    (-0.1111111111111111, 1.0)
    """
    kind = None if rd.spec is None else rd.spec.kind
    if kind == "car1":
        return 0.0, 1.0
    if kind == "cs":
        kmax = int(rd.group_sizes.max())
        return (-1.0 / (kmax - 1) if kmax > 1 else -0.999), 1.0
    return -1.0, 1.0


@dataclass(frozen=True, eq=False)
class ResidualPosterior:
    """The posterior draws of the residual parameters of a NUTS fit, and what the
    fit's record needs from them (see :func:`hierlm.estimate.nuts.assemble`).

    Attributes
    ----------
    rd : ResidualDesign
        The residual structure.
    cg : ClassGram
        Its class Gram matrices.
    rho : ndarray, shape (D,)
        Flattened draws of the correlation (zeros without a structure).
    delta : ndarray, shape (D, k)
        Flattened draws of the log SD ratios.
    weights : ndarray or None
        The design's prior weights.
    """

    rd: ResidualDesign
    cg: ClassGram | CSClassGram | CSPairGram
    rho: np.ndarray
    delta: np.ndarray
    weights: np.ndarray | None = None

    @classmethod
    def from_posterior(cls, design: ModelDesign, rd: ResidualDesign,
                       cg: ClassGram | CSClassGram | CSPairGram,
                       post: Any) -> ResidualPosterior:
        """The draws of a posterior Dataset (chain and draw flattened, chain-major)."""
        n = post.sizes["chain"] * post.sizes["draw"]
        name = correlation_name(rd)
        rho = flat_draws(post[name]) if name is not None else np.zeros(n)
        delta = (flat_draws(post["log_sd_ratio"].transpose("chain", "draw", "sigma_term"))
                 if rd.V.shape[1] else np.zeros((n, 0)))
        return cls(rd=rd, cg=cg, rho=rho, delta=delta, weights=design.weights)

    @property
    def names(self) -> list[str]:
        """The posterior variables of the residual parameters."""
        name = correlation_name(self.rd)
        return ([name] if name is not None else []) + (
            ["log_sd_ratio"] if self.rd.V.shape[1] else [])

    @property
    def estimates(self) -> tuple[float, np.ndarray]:
        """Posterior means of the correlation and of the log SD ratios."""
        return float(self.rho.mean()), self.delta.mean(axis=0)

    @property
    def priors(self) -> dict[str, Any]:
        """The residual parameters' priors, as :attr:`NutsInfo.priors` lists them."""
        out: dict[str, Any] = {}
        name = correlation_name(self.rd)
        if name is not None:
            lower, upper = correlation_range(self.rd)
            out[name] = {"lower": lower, "upper": upper}
        if self.rd.V.shape[1]:
            out["log_sd_ratio"] = {"mu": 0.0, "sigma": LOG_RATIO_SD}
        return out

    @property
    def prior_lines(self) -> tuple[str, ...]:
        """The priors as text, one line per parameter."""
        lines = []
        for name, par in self.priors.items():
            if "lower" in par:
                lines.append(f"{name} ~ Uniform({par['lower']:.4g}, {par['upper']:g})")
            else:
                lines += [f"log_sd_ratio[{c}] ~ Normal(0, {par['sigma']:g})"
                          for c in self.rd.v_names]
        return tuple(lines)

    @property
    def log_likelihood_note(self) -> str:
        return ("log_likelihood omitted: the residual structure (residual= / sigma=) "
                "is not split into per-level terms, so arviz.loo is unavailable")

    def gram_at(self, i: int) -> GramBlocks:
        """The whitened Gram matrix of flattened draw ``i``."""
        return self.cg.gram(float(self.rho[i]), self.delta[i])[0]

    def point_objective(self, objective: ProfiledObjective) -> tuple[ProfiledObjective, float]:
        """The whitened model at the posterior means and its ``log|R0|``; ``objective``
        is a whitened model of the same design (any ``(phi, delta)``)."""
        rho, delta = self.estimates
        gram, logdet = self.cg.gram(rho, delta)
        return dataclasses.replace(objective, gram=gram), float(logdet)

    def record_fields(self) -> dict[str, Any]:
        """``residual_parameters`` (posterior means, the REML fit's names),
        ``residual_scale``, ``residual`` and ``sigma_formula`` of the record."""
        rho, delta = self.estimates
        rd = self.rd
        values = ([rho] if rd.spec is not None else []) + list(delta)
        return {"residual_parameters": pd.Series(values, index=list(rd.param_names),
                                                 name="residual_parameters", dtype=float),
                "residual_scale": relative_sd(rd, delta, self.weights),
                "residual": None if rd.spec is None else rd.spec.text,
                "sigma_formula": rd.sigma_formula}
