"""Satterthwaite's degrees of freedom for t and F tests of fixed effects (lmerTest).

For a contrast row ``l``, ``f(psi) = l C(psi) l'`` is the variance of ``l beta-hat``
(``C`` and ``A = vcov(psi-hat)`` from :mod:`hierlm.inference.deviance`)::

    df = 2 f^2 / (grad f' A grad f),     t = (l beta-hat) / sqrt(f).

For ``L`` with ``q`` rows (lmerTest's ``contestMD``): ``L C L' = P D P'``; the rows of
``P'L`` with eigenvalues above ``sqrt(eps) d_max`` (``q`` of them, the rank) are
independent 1-df contrasts with ``t_m^2 = (P'L beta)_m^2 / d_m`` and their own
``nu_m``; ``F = sum t_m^2 / q``.  One row: the t test's df.  Several: all ``nu_m``
within 1e-8 of each other -> their mean; any ``nu_m <= 2`` -> 2; else Fai &
Cornelius' ``2 E / (E - q)`` with ``E = sum nu_m / (nu_m - 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.inference.deviance import VarparInfo
from hierlm.inference.distributions import chi2_sf, f_sf

EPS = float(np.sqrt(np.finfo(float).eps))


@dataclass(frozen=True)
class FTest:
    """One F test: numerator and denominator df, F and its p-value."""

    num_df: int
    den_df: float
    F: float
    p: float


def contrast_df(info: VarparInfo, c: np.ndarray) -> tuple[float, float]:
    """Variance of ``c beta-hat`` and its Satterthwaite df (``c``: one contrast row).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.inference.deviance import varpar_info
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> info = varpar_info(res.model.objective, res.theta, res.sigma, reml=True)
    >>> var, df = contrast_df(info, np.array([0.0, 1.0]))
    >>> round(float(np.sqrt(var)), 4), round(df, 2)
    (1.5458, 17.0)
    """
    c = np.asarray(c, dtype=float)
    var = float(c @ info.vcov_beta @ c)
    g = np.einsum("a,kab,b->k", c, info.jacobian, c)
    denom = float(g @ info.vcov_varpar @ g)
    return var, (2.0 * var**2 / denom if denom > 0 else np.inf)


def fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: the denominator df of a sum of squared t's.

    Examples
    --------
    >>> fstat_ddf(np.array([10.0, 10.0])), round(fstat_ddf(np.array([10.0, 20.0])), 4)
    (10.0, 13.0769)
    """
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - nu.size)


def f_test(vcov_beta: np.ndarray, beta: np.ndarray, L: np.ndarray,
           info: VarparInfo | None = None) -> FTest:
    """F test of ``L beta = 0``: Satterthwaite's denominator df from ``info``, or none
    (a chi-square test of ``q F``) without it.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.inference.deviance import varpar_info
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> info = varpar_info(res.model.objective, res.theta, res.sigma, reml=True)
    >>> t = f_test(res.vcov.to_numpy(), res.fixef.to_numpy(), np.array([[0.0, 1.0]]), info)
    >>> round(t.F, 3), round(t.den_df, 2)
    (45.853, 17.0)
    """
    L = np.atleast_2d(np.asarray(L, dtype=float))
    V = L @ vcov_beta @ L.T
    d, P = np.linalg.eigh(0.5 * (V + V.T))
    d, P = d[::-1], P[:, ::-1]
    tol = max(EPS * d[0], 0.0)
    q = int(np.sum(d > tol))
    if q == 0:
        return FTest(0, np.nan, np.nan, np.nan)
    PtL = (P.T @ L)[:q]
    est = PtL @ beta
    F = float(np.sum(est**2 / d[:q]) / q)
    den = np.inf if info is None else fstat_ddf(
        np.array([contrast_df(info, PtL[m])[1] for m in range(q)]))
    p = f_sf(F, q, den) if np.isfinite(den) else chi2_sf(F * q, q)
    return FTest(q, den, F, p)
