"""Likelihood-ratio tests: nested model comparison (lme4's ``anova``) and ``ranova``.

``compare(small, big)``: REML fits are refitted by ML first (as lme4 does: REML
criteria of models with different fixed effects are not comparable);
``chisq = deviance_small - deviance_big`` on ``df = npar_big - npar_small`` with
``npar = p + (number of covariance parameters) + 1`` (``len(theta)`` for unstructured
terms, the structures' own parameters otherwise), plus the residual structure's
parameters (``rho`` and the log SD ratios of ``residual=`` / ``sigma=``).

Where the smaller model is the bigger one with one random coefficient removed and
the same fixed effects, the null hypothesis puts a variance on the boundary of its
space, and the naive chi-square p-value is conservative.  Self & Liang (1987) and
Stram & Lee (1994) give the reference distribution ``1/2 chi2_{df-1} + 1/2 chi2_df``
(``chi2_0`` is a point mass at 0): ``1/2 chi2_0 + 1/2 chi2_1`` for dropping one
variance, ``1/2 chi2_1 + 1/2 chi2_2`` for ``(1 + x | g)`` against ``(1 | g)``.  That
p-value is the ``p_boundary`` column (NaN for comparisons it does not cover).

``ranova`` (lmerTest): each random term is removed, or a term ``(1 + x | g)`` is
reduced by each of its non-intercept variables, and the model refitted by the same
criterion.  A term with a structured covariance (``ar1(0 + f | g)``, ``cs(...)``, ...) is
only removed whole: dropping a column of ``f`` would change what the structure's
parameters mean (the lags of ``ar1``/``toep``, the size of ``cs``'s block), so no
column reduction nests inside it the way ``(1 | g)`` nests in ``(1 + x | g)``.  REML
stays REML (the fixed effects are unchanged); with no random term
left the reduced model is a linear model, whose (restricted) log-likelihood is R's
``logLik.lm``: ``-1/2 N (log 2 pi + 1 - log N + log RSS) - reml log|det R_X|`` with
``N = n - reml p``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import formulae as fm
import numpy as np
import pandas as pd
import scipy.stats

from hierlm.covariance.nesting import structure_nested
from hierlm.design.formula import parse_formula
from hierlm.design.terms import STRUCTURES, ModelDesign, RandomTerm
from hierlm.design.weights import sum_log_weights, working_design
from hierlm.errors import MethodError
from hierlm.inference.fitted import require_model
from hierlm.inference.residual_ranova import gls_loglik, refit_reduced


def npar(res: Any) -> int:
    """Parameters of a fit: fixed effects, covariance parameters, sigma and the residual
    structure's."""
    extra = getattr(res, "residual_parameters", None)
    return len(res.fixef) + res.n_covariance_parameters + 1 + (0 if extra is None else len(extra))


def _name(res: Any) -> str:
    """A fit's row label: its formula, with ``residual=`` / ``sigma=`` where given."""
    parts = [res.formula]
    if getattr(res, "residual", None):
        parts.append(f"residual={res.residual}")
    if getattr(res, "sigma_formula", None):
        parts.append(f"sigma={res.sigma_formula}")
    return ", ".join(parts)


def mixture_p(chisq: float, df: int) -> float:
    """p-value of ``chisq`` under ``1/2 chi2_{df-1} + 1/2 chi2_df``.

    Examples
    --------
    >>> round(mixture_p(3.84, 1), 4)
    0.025
    """
    lower = 0.0 if df - 1 == 0 else float(scipy.stats.chi2.sf(chisq, df - 1))
    if df - 1 == 0 and chisq <= 0:
        lower = 1.0
    return 0.5 * lower + 0.5 * float(scipy.stats.chi2.sf(chisq, df))


def _same_groups(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = pd.factorize(pd.Series(a.astype(np.int64) * (int(b.max()) + 1) + b))[1].size
    return bool(pairs == np.unique(a).size == np.unique(b).size)


def _span_in(A: np.ndarray, B: np.ndarray) -> bool:
    """The columns of ``A`` lie in the column space of ``B``."""
    if A.shape[1] == 0:
        return True
    if B.shape[1] == 0:
        return False
    coef = np.linalg.lstsq(B, A, rcond=None)[0]
    return bool(np.allclose(B @ coef, A, rtol=1e-8, atol=1e-8 * max(1.0, np.abs(A).max())))


def nested_in(small: ModelDesign, big: ModelDesign) -> bool:
    """Whether ``small`` is a special case of ``big``: its fixed columns in big's column
    space, and each random term inside one of big's terms on the same grouping (with a
    nested covariance structure: any inside ``us``, otherwise the same columns and
    :func:`hierlm.covariance.nesting.structure_nested`)."""
    if not _span_in(small.X, big.X):
        return False

    def inside(s: RandomTerm, b: RandomTerm) -> bool:
        if not (_same_groups(s.codes, b.codes) and _span_in(s.X, b.X)):
            return False
        if b.structure == "us":
            return True
        return _span_in(b.X, s.X) and structure_nested(s.structure, b.structure)

    return all(any(inside(s, b) for b in big.terms) for s in small.terms)


def _boundary_df(small: ModelDesign, big: ModelDesign) -> bool:
    """One random coefficient removed, fixed effects unchanged."""
    same_fixed = small.p == big.p and _span_in(big.X, small.X)
    return same_fixed and sum(t.p for t in big.terms) - sum(t.p for t in small.terms) == 1


def _ml(res: Any) -> Any:
    if res.is_ml:
        return res
    if res.model is None:
        raise MethodError("a REML fit must be refitted by ML for a likelihood-ratio test, "
                          "which needs its fitted model (FitResult.model); a result read "
                          "from disk does not have it")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return res.model.fit("ml")


def compare(*fits: Any) -> pd.DataFrame:
    """Likelihood-ratio tests between nested models (lme4's ``anova(small, big)``).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> a = hierlm.fit("Reaction ~ Days + (1 | Subject)", d)
    >>> b = hierlm.fit("Reaction ~ Days + (Days | Subject)", d)
    >>> round(float(compare(a, b)["chisq"].iloc[1]), 3)
    42.139
    """
    if len(fits) < 2:
        raise MethodError("anova needs at least two fitted models to compare")
    for f in fits:
        if not getattr(f, "is_likelihood_fit", False):
            raise MethodError("anova compares REML or ML fits (hierlm.FitResult)")
    if any(f.y is None for f in fits):  # a fit of data read in chunks keeps no rows
        raise MethodError("anova between fits of data read in chunks (parquet or Dask) is "
                          "not supported: checking that the models are nested and fitted to "
                          "the same rows needs the rows; compare the deviances ('objective') "
                          "of ML fits of the same source yourself")
    first = fits[0]
    for f in fits[1:]:
        if f.nobs != first.nobs:
            raise MethodError(f"models were fitted to different data: {first.nobs} and "
                              f"{f.nobs} observations")
        if not np.array_equal(f.y, first.y):
            raise MethodError("models were fitted to different responses (or rows)")
    refit = any(f.is_reml for f in fits)
    ml = [_ml(f) for f in fits]
    order = sorted(range(len(ml)), key=lambda i: npar(ml[i]))
    ml = [ml[i] for i in order]
    for a, b in zip(ml, ml[1:], strict=False):
        if npar(a) == npar(b):
            raise MethodError(f"models '{a.formula}' and '{b.formula}' have the same number "
                              f"of parameters; they are not nested")
        if a.model is not None and b.model is not None and not nested_in(a.model.design,
                                                                          b.model.design):
            raise MethodError(f"models are not nested: '{a.formula}' is not a special case "
                              f"of '{b.formula}'")
    rows = []
    boundary = False
    for i, r in enumerate(ml):
        row = {"npar": npar(r), "aic": r.aic, "bic": r.bic, "loglik": r.loglik,
               "deviance": r.objective, "chisq": np.nan, "df": np.nan, "p": np.nan,
               "p_boundary": np.nan}
        if i:
            prev = ml[i - 1]
            chisq = max(prev.objective - r.objective, 0.0)
            df = npar(r) - npar(prev)
            row.update(chisq=chisq, df=df, p=float(scipy.stats.chi2.sf(chisq, df)))
            if (prev.model is not None and r.model is not None
                    and _boundary_df(prev.model.design, r.model.design)):
                row["p_boundary"] = mixture_p(chisq, df)
                boundary = True
        rows.append(row)
    names = [_name(r) for r in ml]
    if len(set(names)) < len(names):
        names = [f"model{i + 1}" for i in range(len(ml))]
    out = pd.DataFrame(rows, index=names)
    out["df"] = out["df"].astype("Int64")
    if not boundary:
        out = out.drop(columns="p_boundary")
    out.attrs["note"] = ("REML fits were refitted by ML before comparing (as lme4 does)"
                         if refit else "ML fits compared")
    return out


# ---------------------------------------------------------------- ranova


def _lhs_parts(term: RandomTerm, expr: str) -> list[list[int]]:
    """Column groups of a random term's non-intercept variables (``drop.scope``)."""
    desc = fm.model_description(expr)
    groups = []
    for t in desc.terms:
        comps = getattr(t, "components", None)
        if comps is None:
            continue
        vs = [c.name for c in comps]
        cols = [j for j, n in enumerate(term.coef_names)
                if len(n.split(":")) == len(vs)
                and all(pc.startswith(v) for pc, v in zip(n.split(":"), vs, strict=True))]
        if cols:
            groups.append(cols)
    return groups


def _label(term: RandomTerm, cols: list[int] | None = None) -> str:
    names = [term.coef_names[j] for j in (range(term.p) if cols is None else cols)]
    parts = ["1"] if "(Intercept)" in names else ["0"]
    parts += [n for n in names if n != "(Intercept)"]
    return _structured(term, " + ".join(parts))


def _structured(term: RandomTerm, lhs: str) -> str:
    """``(lhs | g)``, or the structure's formula function around it: ``ar1(lhs | g)``,
    ``cs(lhs | g, hom=True)``."""
    if term.structure == "us":
        return f"({lhs} | {term.group})"
    fn, kw = STRUCTURES[term.structure]
    return f"{fn}({lhs} | {term.group}{f', {kw}=True' if kw else ''})"


def _exprs(design: ModelDesign) -> list[tuple[int, str]]:
    """The formula's random-term expressions matched to the design's terms, each with
    its position in the formula (the design orders terms by size; lmerTest's rows
    follow the formula)."""
    specs = list(enumerate(parse_formula(design.formula).random))
    out = []
    for term in design.terms:
        has_int = "(Intercept)" in term.coef_names
        for i, (pos, sp) in enumerate(specs):
            expr_int = not sp.expr.replace(" ", "").startswith(("0", "-1"))
            if sp.group == term.group and has_int == expr_int:
                out.append((pos, sp.expr))
                specs.pop(i)
                break
        else:
            out.append((len(design.terms) + len(out), " + ".join(
                ["1" if has_int else "0", *(n for n in term.coef_names if n != "(Intercept)")])))
    return out


def _has_intercept_on(terms: list[RandomTerm], term: RandomTerm) -> bool:
    """Another term on ``term``'s grouping already carries an intercept."""
    return any(t is not term and t.group == term.group and "(Intercept)" in t.coef_names
               and _same_groups(t.codes, term.codes) for t in terms)


def _with_terms(design: ModelDesign, terms: list[RandomTerm]) -> ModelDesign:
    rand = " + ".join(_label(t) for t in terms)
    fixed = parse_formula(design.formula).fixed
    formula = f"{design.response} ~ {fixed}" + (f" + {rand}" if rand else "")
    return dataclasses.replace(design, formula=formula, terms=tuple(terms))


def _lm_loglik(design: ModelDesign, reml: bool) -> float:
    work = working_design(design)  # prior weights: R's logLik.lm adds sum(log w) / 2
    X, y = work.X, work.y
    n, p = X.shape
    R = np.linalg.qr(X, mode="r") if p else np.zeros((0, 0))
    resid = y - X @ np.linalg.lstsq(X, y, rcond=None)[0] if p else y
    N = n - p if reml else n
    ll = -0.5 * N * (np.log(2 * np.pi) + 1 - np.log(N) + np.log(float(resid @ resid)))
    if reml and p:
        ll -= float(np.sum(np.log(np.abs(np.diag(R)))))
    return float(ll + 0.5 * sum_log_weights(design))


def ranova(res: Any) -> pd.DataFrame:
    """lmerTest's ``ranova``: likelihood-ratio tests for removing or reducing each
    random term (same criterion as the fit, no ML refit).  A term with a structured
    covariance (``ar1(...)``, ``cs(...)``, ``toep(...)``, ``diag(...)``) is only removed
    whole (its row is the term, e.g. ``ar1(0 + f | g)``): a column of it cannot be dropped
    the way lmerTest reduces ``(1 + x | g)`` to ``(1 | g)``, since the structure's
    parameters (``rho`` over lags, a common correlation) would change meaning; the
    returned frame's ``attrs["note"]`` says so.  A fit's ``residual=`` /
    ``sigma=`` structure stays in every reduced model (nlme's ``gls`` when no random
    term is left; :mod:`hierlm.inference.residual_ranova`).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> ranova(res).index.tolist()
    ['<none>', 'Days in (Days | Subject)']
    """
    model = require_model(res, "ranova", residual_ok=True)
    design: ModelDesign = model.design
    rd = getattr(model, "residual", None)  # kept by every reduced model (residual_ranova)
    reml = res.is_reml
    base = npar(res)
    rows = {"<none>": {"npar": base, "loglik": res.loglik}}
    matched = _exprs(design)
    order = sorted(range(len(design.terms)), key=lambda k: matched[k][0])
    for k in order:  # the formula's order, as lmerTest
        term, expr = design.terms[k], matched[k][1]
        others = [t for i, t in enumerate(design.terms) if i != k]
        # a structured term is only removed whole (see the docstring)
        parts = _lhs_parts(term, expr) if term.structure == "us" else []
        reduced: list[tuple[str, list[RandomTerm]]] = []
        if not parts:
            reduced.append((_structured(term, expr), others))
        else:
            for cols in parts:
                keep = [j for j in range(term.p) if j not in cols]
                terms = list(design.terms)
                if not keep and _has_intercept_on(terms, term):
                    # (0 + x | g) beside (1 | g), as from (1 + x || g): lmerTest's
                    # (1 | g) would repeat the intercept term, so the term goes
                    terms = others
                elif not keep:  # lmerTest replaces (0 + x | g) by (1 | g)
                    terms[k] = dataclasses.replace(term, coef_names=("(Intercept)",),
                                                   X=np.ones((design.nobs, 1)))
                else:
                    terms[k] = dataclasses.replace(
                        term, coef_names=tuple(term.coef_names[j] for j in keep),
                        X=term.X[:, keep])
                reduced.append((f"{_var_name(expr, cols, term)} in ({expr} | {term.group})",
                                terms))
        for label, terms in reduced:
            nd = _with_terms(design, terms)
            if terms:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # the result's own Model class refits the reduced design (this layer
                    # lies below hierlm.model and does not import it)
                    fit = refit_reduced(model, nd, reml)
                rows[label] = {"npar": npar(fit), "loglik": fit.loglik}
            elif rd is not None:
                rows[label] = {"npar": design.p + 1 + rd.n_params,
                               "loglik": gls_loglik(nd, rd, reml)}
            else:
                rows[label] = {"npar": design.p + 1, "loglik": _lm_loglik(nd, reml)}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["aic"] = -2 * out["loglik"] + 2 * out["npar"]
    out["lrt"] = 2 * (res.loglik - out["loglik"])
    out["df"] = base - out["npar"]
    out.loc["<none>", ["lrt", "df"]] = np.nan
    out["p"] = scipy.stats.chi2.sf(out["lrt"], out["df"])
    out["df"] = out["df"].astype("Int64")
    out = out[["npar", "loglik", "aic", "lrt", "df", "p"]]
    whole = [f"{t.structure} on {t.group}" for t in design.terms if t.structure != "us"]
    if whole:
        out.attrs["note"] = (f"structured terms ({', '.join(whole)}) are tested by removing "
                             "the whole term only; no column reduction is defined for them")
    return out


def _var_name(expr: str, cols: list[int], term: RandomTerm) -> str:
    """The variable (term of the lhs) whose columns are ``cols``."""
    desc = fm.model_description(expr)
    for t in desc.terms:
        comps = getattr(t, "components", None)
        if comps is None:
            continue
        vs = [c.name for c in comps]
        first = term.coef_names[cols[0]].split(":")
        if len(first) == len(vs) and all(pc.startswith(v) for pc, v in zip(first, vs,
                                                                           strict=True)):
            return ":".join(vs)
    return term.coef_names[cols[0]]
