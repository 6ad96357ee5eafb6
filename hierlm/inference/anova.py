"""t and F tests of fixed effects: coefficient tables, user contrasts, type I/III ANOVA.

Each test is ``L beta = 0`` for a hypothesis matrix ``L`` (rows are contrasts over the
coefficients in ``fixef`` order); the statistics and denominator df come from
:mod:`hierlm.inference.satterthwaite` (``ddf="satterthwaite"``) or are z / chi-square
tests (``ddf="none"``, df = inf), or Kenward-Roger's adjusted covariance and df
(``ddf="kenward-roger"``, REML fits; :mod:`hierlm.inference.kenward_roger`).  Type III and type I
hypotheses are lmerTest's (:mod:`hierlm.inference.terms`).  The curvature of the
deviance that Satterthwaite needs is computed once per result and kept while the
result lives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import MethodError
from hierlm.inference.distributions import f_sf, t_two_sided
from hierlm.inference.fitted import info_of, require_model
from hierlm.inference.residual_kenward_roger import kr_info_for as kr_info
from hierlm.inference.satterthwaite import EPS, contrast_df, f_test
from hierlm.inference.terms import fixed_terms, type1_contrasts, type3_contrasts

DDF = {"satterthwaite": "satterthwaite", "kenward-roger": "kenward-roger",
       "kenward_roger": "kenward-roger", "kr": "kenward-roger", "none": "none"}


def check_ddf(ddf: object, res: Any = None) -> str:
    """The canonical name of a df method, or MethodError."""
    key = ddf.lower() if isinstance(ddf, str) else None
    if key not in DDF:
        raise MethodError(f"unknown ddf {ddf!r}; use 'satterthwaite', 'kenward-roger' or 'none'")
    if DDF[key] == "kenward-roger" and res is not None and not res.is_reml:
        raise MethodError(f"Kenward-Roger df need a REML fit, not {res.method}")
    return DDF[key]


def coef_table(res: Any, ddf: str = "satterthwaite") -> pd.DataFrame:
    """Coefficient table ``estimate, se, df, t, p`` (lmerTest's ``summary`` coefficients).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> coef_table(res).round(2)["df"].tolist()
    [17.0, 17.0]
    """
    method = check_ddf(ddf, res)
    if not res.is_likelihood_fit:
        raise MethodError(f"coef_table needs a REML or ML fit, not {res.method}")
    est = res.fixef.to_numpy()
    names = list(res.fixef.index)
    if method == "none":
        se = res.fixef_se.to_numpy()
        df = np.full(len(est), np.inf)
    elif method == "kenward-roger":
        kr = kr_info(res)
        rows = [kr.contrast(np.eye(len(est))[j]) for j in range(len(est))]
        se = np.sqrt([r[0] for r in rows])
        df = np.array([r[1] for r in rows])
    else:
        info = info_of(res)
        rows = [contrast_df(info, np.eye(len(est))[j]) for j in range(len(est))]
        se = np.sqrt([r[0] for r in rows])
        df = np.array([r[1] for r in rows])
    t = est / se
    p = t_two_sided(t, df)
    return pd.DataFrame({"estimate": est, "se": se, "df": df, "t": t, "p": p}, index=names)


def _as_matrix(res: Any, L: object) -> np.ndarray:
    names = list(res.fixef.index)
    if isinstance(L, pd.DataFrame):
        missing = [c for c in names if c not in L.columns]
        if missing or len(L.columns) != len(names):
            raise MethodError(f"contrast columns must be the coefficients {names}, got "
                              f"{list(L.columns)}")
        L = L[names].to_numpy()
    try:
        M = np.atleast_2d(np.asarray(L, dtype=float))
    except (TypeError, ValueError):
        raise MethodError("contrast must be a numeric matrix (rows: contrasts over the "
                          "coefficients in fixef order)") from None
    if M.ndim != 2 or M.shape[1] != len(names) or M.shape[0] == 0:
        raise MethodError(f"contrast must have {len(names)} columns (one per coefficient, "
                          f"in fixef order), got shape {M.shape}")
    if not np.all(np.isfinite(M)):
        raise MethodError("contrast has non-finite entries")
    return M


def _test(res: Any, L: np.ndarray, method: str) -> tuple[int, float, float, float]:
    beta = res.fixef.to_numpy()
    if method == "kenward-roger":
        return _kr_test(res, beta, L)
    t = f_test(res.vcov.to_numpy(), beta, L, None if method == "none" else info_of(res))
    return t.num_df, t.den_df, t.F, t.p


def contrast(res: Any, L: object, ddf: str = "satterthwaite", joint: bool = True
             ) -> pd.DataFrame:
    """Test contrasts ``L beta = 0``: jointly (one F test) or row by row (t tests).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> contrast(res, [[0, 1]]).round(2)[["num_df", "den_df"]].values.tolist()
    [[1.0, 17.0]]
    """
    method = check_ddf(ddf, res)
    require_model(res, "a contrast test", residual_ok=True) if method != "none" else None
    M = _as_matrix(res, L)
    if joint:
        q, den, F, p = _test(res, M, method)
        return pd.DataFrame({"num_df": [q], "den_df": [den], "F": [F], "p": [p]})
    rows = []
    beta = res.fixef.to_numpy()
    for li in M:
        if method == "none":
            var, df = float(li @ res.vcov.to_numpy() @ li), np.inf
        elif method == "kenward-roger":
            var, df = kr_info(res).contrast(li)
        else:
            var, df = contrast_df(info_of(res), li)
        est = float(li @ beta)
        t = est / np.sqrt(var)
        rows.append({"estimate": est, "se": np.sqrt(var), "df": df, "t": t,
                     "p": float(t_two_sided(t, df))})
    return pd.DataFrame(rows)


def anova_table(res: Any, ddf: str = "satterthwaite", type: int | str = 3) -> pd.DataFrame:
    """F tests of each fixed-effect term (lmerTest's ``anova``), type III or I.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> anova_table(res).round(2).loc["Days", ["num_df", "den_df", "F"]].tolist()
    [1.0, 17.0, 45.85]
    """
    method = check_ddf(ddf, res)
    if not res.is_likelihood_fit:
        raise MethodError(f"anova needs a REML or ML fit, not {res.method}")
    key = str(type).upper()
    if key not in ("3", "III", "1", "I"):
        raise MethodError(f"unknown anova type {type!r}; use 3 or 1")
    design = require_model(res, "anova (the model's terms)", residual_ok=True).design
    Ls = type3_contrasts(design) if key in ("3", "III") else type1_contrasts(design)
    degree = {t.label: len(t.variables) for t in fixed_terms(design)[1]}
    # rows by degree (main effects, then two-way interactions, ...), formula order
    # within a degree: R's terms() order, as lmerTest prints them
    labels = sorted(Ls, key=lambda label: degree.get(label, 0))
    rows = {label: _test(res, Ls[label], method) for label in labels if Ls[label].shape[0]}
    out = pd.DataFrame(list(rows.values()), index=list(rows),
                       columns=["num_df", "den_df", "F", "p"])
    out["num_df"] = out["num_df"].astype(int)
    return out


def _kr_test(res: Any, beta: np.ndarray, L: np.ndarray) -> tuple[int, float, float, float]:
    """Kenward-Roger F test on the row space of ``L`` (rank-reduced as lmerTest does)."""
    V = L @ res.vcov.to_numpy() @ L.T
    d, P = np.linalg.eigh(0.5 * (V + V.T))
    d, P = d[::-1], P[:, ::-1]
    q = int(np.sum(d > max(EPS * d[0], 0.0)))
    if q == 0:
        return 0, np.nan, np.nan, np.nan
    q, den, F = kr_info(res).f_test(beta, (P.T @ L)[:q])
    return q, den, F, f_sf(F, q, den)
