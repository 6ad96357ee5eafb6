"""Brute-force references for structured covariances (tests only, never used by hierlm).

The criterion is lme4's REML criterion / ML deviance evaluated densely: ``V = I + Z
Lambda Lambda' Z'`` with ``Lambda = I_l (x) T`` and ``T = chol(Sigma / sigma^2)`` from
numpy, ``Sigma / sigma^2`` built from the structure's natural parameters directly (SDs
relative to sigma, the correlations themselves, not hierlm's transforms); beta by GLS and
sigma profiled out.  The optimum is the best of several random starts of L-BFGS-B with
finite-difference gradients, each polished by Nelder-Mead.
"""

from __future__ import annotations

import numpy as np
import scipy.optimize

HOM = {"homdiag", "homcs", "ar1", "homtoep"}


def n_corr(structure: str, p: int) -> int:
    if structure in ("diag", "homdiag"):
        return 0
    if structure in ("toep", "homtoep"):
        return p - 1
    return 1


def relative_sigma(structure: str, p: int, v: np.ndarray) -> np.ndarray | None:
    """``Sigma / sigma^2`` from (log relative SDs, correlations); None if not PD."""
    n_sd = 1 if structure in HOM else p
    sd = np.exp(v[:n_sd]) * np.ones(p)
    rho = v[n_sd:]
    lag = np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
    if structure in ("diag", "homdiag"):
        R = np.eye(p)
    elif structure in ("cs", "homcs"):
        R = np.where(lag == 0, 1.0, rho[0])
    elif structure in ("ar1", "hetar1"):
        R = rho[0] ** lag
    else:
        R = np.concatenate([[1.0], rho])[lag]
    if np.any(np.abs(rho) >= 1) or np.linalg.eigvalsh(R).min() <= 1e-10:
        return None
    return sd[:, None] * R * sd[None, :]


class DenseFit:
    """The dense criterion of a single-term design as a function of natural parameters.

    ``V = I + Z Lambda Lambda' Z'`` is block diagonal by group (one block ``I + X_g S X_g'``
    per level, ``S = Sigma / sigma^2``), so it is built and factored block by block;
    :func:`tests.dense.marginal_cov` builds the same matrix whole (checked in the test).
    """

    def __init__(self, design, structure: str, reml: bool) -> None:
        assert len(design.terms) == 1
        self.design, self.structure, self.reml = design, structure, reml
        term = design.terms[0]
        self.p = term.p
        self.rows = [np.flatnonzero(term.codes == g) for g in range(term.n_levels)]
        self.Zg = [term.X[r] for r in self.rows]

    def gls(self, v: np.ndarray) -> tuple[float, np.ndarray, float] | None:
        """``(criterion, beta, sigma)`` at the natural parameters ``v``."""
        S = relative_sigma(self.structure, self.p, v)
        if S is None:
            return None
        X, y, n, k = self.design.X, self.design.y, self.design.nobs, self.design.p
        XtX = np.zeros((k, k))
        Xty = np.zeros(k)
        yty = logdetV = 0.0
        for r, Z in zip(self.rows, self.Zg, strict=True):
            c = np.linalg.cholesky(np.eye(len(r)) + Z @ S @ Z.T)
            Xw = np.linalg.solve(c, X[r])
            yw = np.linalg.solve(c, y[r])
            XtX += Xw.T @ Xw
            Xty += Xw.T @ yw
            yty += float(yw @ yw)
            logdetV += 2 * float(np.sum(np.log(np.diag(c))))
        beta = np.linalg.solve(XtX, Xty)
        rss = yty - float(Xty @ beta)
        df = n - k if self.reml else n
        s2 = rss / df
        crit = logdetV + df * (1 + np.log(2 * np.pi * s2))
        if self.reml:
            crit += float(np.linalg.slogdet(XtX)[1])
        return float(crit), beta, float(np.sqrt(s2))
    def criterion(self, v: np.ndarray) -> float:
        out = self.gls(v)
        return 1e10 if out is None else out[0]

    def optimum(self, seed: int = 1, n_starts: int = 6) -> tuple[float, np.ndarray]:
        """Best of ``n_starts`` random starts: ``(criterion, v)``."""
        rng = np.random.default_rng(seed)
        n_sd = 1 if self.structure in HOM else self.p
        k = n_corr(self.structure, self.p)
        best = (np.inf, np.zeros(n_sd + k))
        for _ in range(n_starts):
            v0 = np.concatenate([rng.normal(0, 0.7, n_sd), rng.uniform(-0.2, 0.8, k)])
            if self.criterion(v0) >= 1e10:
                continue
            res = scipy.optimize.minimize(self.criterion, v0, method="L-BFGS-B",
                                          options={"ftol": 1e-14, "gtol": 1e-9})
            res = scipy.optimize.minimize(self.criterion, res.x, method="Nelder-Mead",
                                          options={"xatol": 1e-9, "fatol": 1e-12,
                                                   "maxiter": 4000})
            if res.fun < best[0]:
                best = (float(res.fun), res.x)
        return best


def dense_v(fit: DenseFit, v: np.ndarray, sigma2: float) -> np.ndarray:
    """The marginal covariance ``V = sigma^2 (I + Z S Z')`` as one n x n matrix."""
    S = relative_sigma(fit.structure, fit.p, v)
    assert S is not None
    n = fit.design.nobs
    V = np.eye(n)
    for r, Z in zip(fit.rows, fit.Zg, strict=True):
        V[np.ix_(r, r)] += Z @ S @ Z.T
    return sigma2 * V


def unprofiled(fit: DenseFit, v: np.ndarray, sigma: float) -> tuple[float, np.ndarray]:
    """lmerTest's deviance of ``(v, sigma)`` (beta at its GLS value) and ``vcov(beta)``."""
    V = dense_v(fit, v, sigma**2)
    X, y = fit.design.X, fit.design.y
    Vi = np.linalg.inv(V)
    C = np.linalg.inv(X.T @ Vi @ X)
    beta = C @ X.T @ Vi @ y
    r = y - X @ beta
    d = np.linalg.slogdet(V)[1] + float(r @ Vi @ r)
    n, k = X.shape
    if fit.reml:
        d += -np.linalg.slogdet(C)[1] + (n - k) * np.log(2 * np.pi)
    else:
        d += n * np.log(2 * np.pi)
    return float(d), C
