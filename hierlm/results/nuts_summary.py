"""The header and footer of a NUTS fit's text summary.

The header names the sampler and its settings and lists the priors; the footer gives
ArviZ's convergence diagnostics (r_hat, bulk and tail effective sample sizes) for beta,
sigma and the variance components, the number of divergent transitions, what the point
estimates are, and the log-likelihood note.  The posterior summaries themselves are made
by :mod:`hierlm.estimate.nuts_posterior`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hierlm.errors import MethodError, warn
from hierlm.estimate.nuts_info import NutsInfo
from hierlm.estimate.nuts_posterior import diagnostic_messages

if TYPE_CHECKING:
    from hierlm.estimate.record import FitRecord


def _info(res: FitRecord) -> NutsInfo:
    info = res.nuts
    if info is None:
        raise MethodError(f"a {res.method} fit has no NUTS sampling information")
    return info


def format_nuts_header(res: FitRecord) -> list[str]:
    """First lines of a NUTS summary: method, sampler settings and priors.

    Parameters
    ----------
    res : FitRecord
        A NUTS fit (``res.is_posterior``).

    Returns
    -------
    list of str

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from hierlm.estimate.nuts_info import NutsInfo
    >>> res = SimpleNamespace(nuts=NutsInfo(
    ...     sampler="pymc", chains=4, draws=1000, tune=1000, target_accept=0.9,
    ...     prior_lines=("sigma ~ HalfStudentT(nu=3, scale=56.17)",)))
    >>> print("\\n".join(format_nuts_header(res)))
    Bayesian linear mixed model fit by NUTS ['hierlm']
    Sampler: pymc, 4 chains x 1000 draws (1000 tuning), target_accept 0.9
    Priors:
      sigma ~ HalfStudentT(nu=3, scale=56.17)
    """
    x = _info(res)
    lines = ["Bayesian linear mixed model fit by NUTS ['hierlm']",
             f"Sampler: {x.sampler}, {x.chains} chains x {x.draws} draws ({x.tune} "
             f"tuning), target_accept {x.target_accept}",
             "Priors:"]
    lines += [f"  {p}" for p in x.prior_lines]
    return lines


def format_nuts_footer(res: FitRecord) -> list[str]:
    """Last lines of a NUTS summary: diagnostics, divergences and notes.

    Warns (``UserWarning``) when some r_hat exceeds 1.01, some ess_bulk is below
    400, or there were divergent transitions.

    Parameters
    ----------
    res : FitRecord
        A NUTS fit (``res.is_posterior``).

    Returns
    -------
    list of str

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import pandas as pd
    >>> diag = pd.DataFrame({"mean": [25.6], "sd": [1.5], "r_hat": [1.0], "ess_bulk": [3900.0],
    ...                      "ess_tail": [2900.0]}, index=["sigma"])
    >>> from hierlm.estimate.nuts_info import NutsInfo
    >>> res = SimpleNamespace(nuts=NutsInfo(
    ...     sampler="pymc", draws=1000, tune=1000, chains=4, diagnostics=diag, divergences=0,
    ...     max_rhat=1.0, min_ess_bulk=3900.0, ranef_draws=4000))
    >>> print("\\n".join(format_nuts_footer(res)[1:4]))
    Convergence diagnostics (ArviZ):
           mean   sd  r_hat ess_bulk ess_tail
    sigma  25.6  1.5  1.000     3900     2900
    Divergent transitions: 0
    """
    x = _info(res)
    lines = ["", "Convergence diagnostics (ArviZ):"]
    diag = x.diagnostics
    if len(diag):
        fmt = diag.copy()
        for col in ("ess_bulk", "ess_tail"):
            fmt[col] = fmt[col].map(lambda v: f"{v:.0f}")
        fmt["r_hat"] = fmt["r_hat"].map(lambda v: f"{v:.3f}")
        for col in ("mean", "sd"):
            fmt[col] = fmt[col].map(lambda v: f"{v:.4g}")
        lines.append(fmt.to_string())
    lines.append(f"Divergent transitions: {x.divergences}")
    lines.append("Point estimates: posterior mean of beta; posterior medians of sigma, "
                 "SDs and correlations; random effects: posterior mean and SD "
                 f"({x.ranef_draws} draws)")
    loo = x.loo
    note = x.log_likelihood_note
    if loo:
        lines.append(f"Model comparison: PSIS-LOO leaving out one level of {loo['unit']!r} "
                     f"at a time ({loo['n_units']} levels): elpd_loo {loo['elpd_loo']:.2f} "
                     f"(SE {loo['se']:.2f}), p_loo {loo['p_loo']:.2f}; compare fits with "
                     f"arviz.compare")
        if loo["n_bad_k"]:
            lines.append(f"  {loo['n_bad_k']} of {loo['n_units']} levels have Pareto k above "
                         f"ArviZ's threshold: their LOO terms are unreliable (K-fold "
                         f"cross-validation by refitting without each fold is the check)")
    elif note:
        lines.append(f"Model comparison: {note}; compare models with hierlm.anova on REML/ML "
                     f"fits (likelihood-ratio tests, AIC/BIC), or by K-fold cross-validation "
                     f"(refit without each fold and score its held-out rows)")
    lines.append("logLik/AIC/BIC (res.loglik, res.aic, res.bic): frequentist quantities at "
                 "the posterior point estimates, not posterior model comparison")
    problems = diagnostic_messages(x)
    if problems:
        msg = "NUTS diagnostics: " + "; ".join(problems)
        warn(msg, UserWarning)
    return lines
