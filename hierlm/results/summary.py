"""lme4-style text summary of a fit (:class:`~hierlm.results.result.FitResult`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from hierlm.estimate.record import FitRecord


def _fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if abs(x) >= 1e5 or (x != 0 and abs(x) < 1e-3) else f"{x:.{digits}f}"


def _fmt_p(p: float) -> str:
    """A p-value as R's ``format.pval`` writes the small ones."""
    if not np.isfinite(p):
        return "NA"
    return "<2e-16" if p < 2e-16 else f"{p:.3g}"


def _satterthwaite(res: FitRecord) -> pd.DataFrame | None:
    """lmerTest's coefficient table, or None for a result without its model."""
    if res.model is None or len(res.fixef) == 0:
        return None
    from hierlm.errors import HierlmError
    from hierlm.inference.anova import coef_table

    try:
        return coef_table(res, "satterthwaite")
    except HierlmError:
        return None


def _aligned(rows: list[list[str]], header: list[str], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for r in [header, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        out.append(" " + " ".join(cells).rstrip())
    return "\n".join(out)


def _random_effects(res: FitRecord) -> str:
    rows = []
    vc = res.varcorr
    for group, block in vc.groupby("group", sort=False):
        if group == "Residual":
            continue
        variances = block[block["term2"].isna()]
        names = [str(t) for t in variances["term1"]]
        covs = block[block["term2"].notna()]
        corr = {(str(a), str(b)): float(c) for a, b, c in
                zip(covs["term1"], covs["term2"], covs["sd_or_corr"], strict=True)}
        for i, r in enumerate(variances.itertuples()):
            cells = [f"{corr.get((names[j], names[i]), np.nan):5.2f}" for j in range(i)]
            rows.append([str(group) if i == 0 else "", names[i], f"{r.variance_or_cov:.4g}",
                         f"{r.sd_or_corr:.4g}", " ".join(cells)])
    last = vc.iloc[-1]
    rows.append(["Residual", "", f"{last.variance_or_cov:.4g}", f"{last.sd_or_corr:.4g}", ""])
    header = ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    if all(r[4] == "" for r in rows):
        header, rows = header[:4], [r[:4] for r in rows]
    return _aligned(rows, header, right={2, 3})


def _residual_structure(res: FitRecord) -> list[str]:
    """nlme's "Correlation Structure" and "Variance function" lines, when fitted."""
    par = res.residual_parameters
    if len(par) == 0:
        return []
    out = [""]
    if res.residual:
        out.append(f"Residual correlation: {res.residual}; rho = {par.iloc[0]:.4g}")
    if res.sigma_formula:
        ratios = ", ".join(f"{str(name).split(':', 1)[1]} {np.exp(v):.4g}"
                           for name, v in par.items() if str(name).startswith("log_sd_ratio:"))
        out.append(f"Residual SD: sigma {res.sigma_formula}; SD ratios to the reference "
                   f"level: {ratios}")
    return out


def format_summary(res: FitRecord) -> str:
    """Render the summary text (see :meth:`FitResult.summary`)."""
    lines = []
    if res.is_posterior:
        from hierlm.results.nuts_summary import format_nuts_header

        lines.extend(format_nuts_header(res))
    else:
        how = "REML" if res.is_reml else "maximum likelihood" if res.is_ml else res.method
        lines.append(f"Linear mixed model fit by {how} ['hierlm']")
    lines.append(f"Formula: {res.formula}")
    dropped = f" ({res.n_dropped} rows with missing values dropped)" if res.n_dropped else ""
    lines.append(f"Number of obs: {res.nobs}{dropped}; groups: "
                 + ", ".join(f"{g}, {k}" for g, k in res.groups.items()))
    lines.append("")
    if res.is_reml:
        lines.append(f"REML criterion at convergence: {res.objective:.4f}")
    elif res.is_ml:
        stats = pd.DataFrame([[res.aic, res.bic, res.loglik, res.objective,
                               res.nobs - len(res.fixef) - res.n_covariance_parameters - 1
                               - len(res.residual_parameters)]],
                             columns=["AIC", "BIC", "logLik", "deviance", "df.resid"])
        lines.append(stats.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if not res.is_posterior and res.fitted_values is not None:  # None: read in chunks
        assert res.y is not None
        scale = res.sigma if res.residual_scale is None else res.sigma * res.residual_scale
        r = (res.y - res.fitted_values) / scale  # Pearson residuals under sigma=
        q = np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0])
        lines += ["", "Scaled residuals:",
                  pd.DataFrame([q], columns=["Min", "1Q", "Median", "3Q", "Max"]).to_string(
                      index=False, float_format=lambda v: f"{v:.4f}")]
    lines += ["", "Random effects:", _random_effects(res)]
    lines += _residual_structure(res)
    lines += ["", "Fixed effects:"]
    est = "Post. mean" if res.is_posterior else "Estimate"
    se = "Post. SD" if res.is_posterior else "Std. Error"
    fe = pd.DataFrame({est: res.fixef, se: res.fixef_se})
    if not res.is_posterior:
        ct = _satterthwaite(res)
        if ct is not None:
            lines[-1] = "Fixed effects (t tests with Satterthwaite's df):"
            fe["df"] = ct["df"]
        fe["t value"] = res.fixef / res.fixef_se
        if ct is not None:
            fe["Pr(>|t|)"] = [_fmt_p(p) for p in ct["p"]]
    lines.append(fe.to_string(float_format=lambda v: _fmt(v)))
    if not res.is_posterior:
        lines.append("")
        lines.append(f"Optimizer: {res.optimizer.get('method', '?')}, {res.n_evals} evaluations, "
                     + ("converged" if res.converged else "NOT converged"))
    if res.is_singular:
        lines.append("boundary (singular) fit: a variance component is estimated as zero "
                     "(or a correlation as +/-1); consider simplifying the random effects")
    for msg in res.messages:
        lines.append(f"warning: {msg}")
    if res.is_posterior:
        from hierlm.results.nuts_summary import format_nuts_footer

        lines.extend(format_nuts_footer(res))
    return "\n".join(lines)
