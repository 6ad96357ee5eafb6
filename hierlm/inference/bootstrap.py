"""Parametric bootstrap of a REML/ML fit, refitted on the compiled graph.

One replicate simulates ``y* = X beta-hat + Z Lambda-hat u* + eps*`` with
``u* ~ N(0, sigma-hat^2 I_q)`` and ``eps* ~ N(0, sigma-hat^2 W^-1)`` (plus the offset;
drawn on the working scale ``W^1/2 (y - o)``, :mod:`hierlm.design.weights`), and refits by the
same criterion, starting at theta-hat: BFGS whose first inverse Hessian is the
exact one of the fit (the Hessian of the profiled criterion is the Schur complement
``H_tt - H_ts H_ss^{-1} H_st`` of the unprofiled deviance's, by the envelope
theorem; :mod:`hierlm.inference.deviance`), with L-BFGS-B where a bound is reached.

Of the Gram blocks of ``[Z X y]`` only the ``y`` row changes: ``Z'y*``, ``X'y*``
and ``y*'y*`` (the ``y`` column of ``A_RR`` and the ``y`` row of ``A_R1``),
O(nnz(Z) + n p) per replicate; the compiled objective is reused as is.  The Gram
blocks hold ``y* - X a*`` with ``a*`` the least-squares fit of ``y*`` on ``X`` (see
:mod:`hierlm.objective.gram`).  A replicate whose refit fails (does not converge,
or raises) is counted, reported in a warning and kept as a row of NaN.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.optimize

from hierlm.design.weights import working_design
from hierlm.errors import ConvergenceWarning, MethodError
from hierlm.estimate.optimize import DEFAULT_OPTIONS, theta_scale
from hierlm.objective.gram import GramBlocks, term_matrix
from hierlm.objective.profiled import ProfiledObjective, gram_values
from hierlm.objective.theta import templates, theta_lower
from hierlm.results.parameters import parameter_names, sdcor_from_theta

#: The fit's own convergence rule: scaled projected gradient at most this.
CHECK_TOL = float(DEFAULT_OPTIONS["check_tol"])


@dataclass(frozen=True, eq=False)
class Bootstrap:
    """Result of :func:`bootstrap`.

    Attributes
    ----------
    replicates : pandas.DataFrame
        One row per replicate: ``objective``, the fixed effects, then the sd/cor
        parameters and ``sigma`` (lme4's names); failed replicates are NaN rows.
    n_failed : int
        Replicates whose refit failed.
    seed : int or None
        The seed used.
    estimates : pandas.Series
        The fitted model's values of the same columns.
    """

    replicates: pd.DataFrame
    n_failed: int
    seed: int | None
    estimates: pd.Series

    def confint(self, level: float = 0.95, kind: str = "percentile") -> pd.DataFrame:
        """Bootstrap intervals ``lower, upper`` by parameter.

        ``kind="percentile"``: the ``(1 -/+ level) / 2`` quantiles; ``"shortest"``:
        the shortest interval holding ``ceil(level m)`` of the ``m`` successful
        replicates.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> b = res.bootstrap(20, seed=1, progressbar=False)
        >>> b.confint(kind="shortest").columns.tolist()
        ['lower', 'upper']
        """
        if not 0 < level < 1:
            raise MethodError(f"level must be between 0 and 1, got {level!r}")
        if kind not in ("percentile", "shortest"):
            raise MethodError(f"unknown bootstrap interval kind {kind!r}; use 'percentile' "
                              f"or 'shortest'")
        cols = [c for c in self.replicates.columns if c != "objective"]
        fixef = [c for c in cols if not (c.startswith(("sd_", "cor_")) or c == "sigma")]
        order = [c for c in cols if c not in fixef] + fixef
        rows = []
        for c in order:
            x = np.sort(self.replicates[c].dropna().to_numpy())
            if x.size == 0:
                rows.append((np.nan, np.nan))
            elif kind == "percentile":
                rows.append(tuple(np.quantile(x, [(1 - level) / 2, (1 + level) / 2])))
            else:
                k = min(int(np.ceil(level * x.size)), x.size)
                widths = x[k - 1:] - x[:x.size - k + 1]
                i = int(np.argmin(widths))
                rows.append((x[i], x[i + k - 1]))
        return pd.DataFrame(rows, index=order, columns=["lower", "upper"])

    def __repr__(self) -> str:
        return (f"<hierlm Bootstrap: {len(self.replicates)} replicates, "
                f"{self.n_failed} failed, seed={self.seed}>")


class _Progress:
    """A one-line text progress bar on stderr (no dependency)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled and total > 0
        self.start = time.perf_counter()
        self.shown = -1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        pct = int(100 * done / self.total)
        if pct == self.shown and done != self.total:
            return
        self.shown = pct
        bar = "#" * (pct // 4)
        sys.stderr.write(f"\rbootstrap {done:>{len(str(self.total))}}/{self.total} "
                         f"[{bar:<25}] {time.perf_counter() - self.start:5.1f} s")
        if done == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class _Refitter:
    """Refits a model to new responses, changing only the ``y`` parts of the Gram blocks."""

    def __init__(self, objective: ProfiledObjective, reml: bool,
                 hess: np.ndarray | None = None) -> None:
        # the Gram blocks are of the working problem W^1/2 [Z X y-o] (prior weights,
        # offset): responses given to refit() are on that scale
        design, gram = working_design(objective.design), objective.gram
        self.hess_inv = _inverse_if_pd(hess)
        self.objective, self.reml, self.gram = objective, reml, gram
        self.X = design.X
        self.Z_rest = [term_matrix(t) for t in design.terms[1:]]
        self.Z1 = term_matrix(design.terms[0]).tocsc()
        self.pinvX = np.linalg.pinv(design.X) if design.p else np.zeros((0, design.nobs))
        m = gram.m
        self.y_nz = np.flatnonzero(gram.nz_row == m - 1)
        p1 = design.terms[0].p
        self.p1 = p1
        self.y_levels = gram.nz_level[self.y_nz]
        self.lower = theta_lower(design)
        # optimize on phi = theta / scale, as the fit does (scale-free in the predictors)
        self.scale = theta_scale(design)
        self.bounds = [(lo if np.isfinite(lo) else None, None) for lo in self.lower]
        self.static = [np.asarray(float(reml)), np.asarray(float(gram.n)),
                       np.asarray(float(gram.p))]

    def gram_for(self, y: np.ndarray) -> GramBlocks | None:
        g = self.gram
        a = self.pinvX @ y
        yc = y - self.X @ a
        col = np.concatenate([*(Z.T @ yc for Z in self.Z_rest), self.X.T @ yc, [yc @ yc]])
        A_RR = g.A_RR.copy()
        A_RR[-1, :] = col
        A_RR[:, -1] = col
        z1 = (self.Z1.T @ yc).reshape(-1, self.p1)
        nz_val = g.nz_val.copy()
        nz_val[self.y_nz] = z1[self.y_levels]
        mask = np.ones(z1.shape[0], dtype=bool)
        mask[self.y_levels] = False
        if np.any(z1[mask] != 0):
            return None  # a level outside the stored pattern: not expected for real data
        dense = g.A_R1_dense
        if g.dense_r1:
            dense = dense.copy()
            dense[-1, :] = z1.ravel()
        return dataclasses.replace(g, A_RR=A_RR, nz_val=nz_val, A_R1_dense=dense,
                                   beta_offset=a)

    def refit(self, y: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, float, np.ndarray,
                                                               float]:
        """``(theta, sigma, beta, objective)`` of the refit; raises RuntimeError on failure."""
        g = self.gram_for(y)
        if g is None:
            from hierlm.objective.gram import compute_gram

            raise RuntimeError(f"Gram pattern changed ({compute_gram.__name__} needed)")
        args = gram_values(g)
        fn = self.objective.fn

        sc = self.scale

        def fun(phi: np.ndarray) -> tuple[float, np.ndarray]:
            f, grad, _, _ = fn(np.ascontiguousarray(phi * sc), *self.static, *args)
            if not np.isfinite(f):
                return 1e300, np.zeros_like(phi)
            return float(f), np.asarray(grad) * sc

        x = np.maximum(start, self.lower) / sc
        done = False
        if self.hess_inv is not None:  # quasi-Newton from the fit's exact curvature
            hi = self.hess_inv / np.outer(sc, sc)  # in phi: H_phi = S H S
            done, x = _quasi_newton(fun, x, hi, self.lower / sc)
        for _attempt in range(0 if done else 2):
            r = scipy.optimize.minimize(fun, x, jac=True, method="L-BFGS-B",
                                        bounds=self.bounds,
                                        options={"ftol": 1e-12, "gtol": 1e-6, "maxiter": 1000})
            x = np.maximum(r.x, self.lower)
            theta = x * sc
            f, grad, _, L_R = fn(np.ascontiguousarray(theta), *self.static, *args)
            pg = np.where((theta <= self.lower) & (grad > 0), 0.0, grad) * sc
            done = bool(np.isfinite(f) and np.max(np.abs(pg) * np.maximum(1.0, np.abs(x)),
                                                  initial=0.0) <= CHECK_TOL)
            if done:
                break
        if not done:
            raise RuntimeError(f"refit did not converge: {r.message}")
        theta = x * sc
        f, grad, _, L_R = fn(np.ascontiguousarray(theta), *self.static, *args)
        qr, p = g.q_rest, g.p
        r2 = float(L_R[-1, -1] ** 2)
        sigma = float(np.sqrt(r2 / (g.n - p if self.reml else g.n)))
        beta = (sla.solve_triangular(L_R[qr:qr + p, qr:qr + p], L_R[-1, qr:qr + p],
                                     lower=True, trans="T") if p else np.zeros(0))
        # lme4's criterion: the working problem's minus sum(log w) (prior weights)
        return theta, sigma, beta + g.beta_offset, float(f) - g.sum_log_w


def _inverse_if_pd(H: np.ndarray | None) -> np.ndarray | None:
    if H is None:
        return None
    w, U = np.linalg.eigh(0.5 * (H + H.T))
    if not np.all(w > 1e-8 * max(w.max(), 1e-300)):
        return None
    return np.asarray((U / w) @ U.T)


def _quasi_newton(fun: Any, x: np.ndarray, hi: np.ndarray, lower: np.ndarray,
                  maxit: int = 50) -> tuple[bool, np.ndarray]:
    """BFGS from a good inverse Hessian ``hi``, with an Armijo backtracking line search.

    Converged when the Newton decrement ``g' H^{-1} g`` is below 1e-9 (the criterion is
    within ~5e-10 of its minimum) at an interior point.  Returns ``(False, x)`` when a
    bound becomes active or the search stalls: the caller then runs L-BFGS-B.
    scipy's L-BFGS-B costs more in its Python layer than the ~5 steps this needs.
    """
    f, g = fun(x)
    eye = np.eye(len(x))
    for _ in range(maxit):
        step = -hi @ g
        if float(-g @ step) < 1e-9:
            return bool(np.all(x > lower)), x
        t = 1.0
        while True:
            xn = x + t * step
            if np.any(xn <= lower):
                return False, x
            fn_, gn = fun(xn)
            if fn_ <= f + 1e-4 * t * float(g @ step):
                break
            t *= 0.5
            if t < 1e-8:
                return False, x
        s_, y_ = xn - x, gn - g
        sy = float(s_ @ y_)
        if sy > 1e-12:
            V = eye - np.outer(s_ / sy, y_)
            hi = V @ hi @ V.T + np.outer(s_ / sy, s_)
        x, f, g = xn, fn_, gn
    return False, x


def _simulate(design: Any, res: Any, rng: np.random.Generator, Zs: list[Any]) -> np.ndarray:
    mu = design.X @ res.fixef.to_numpy()
    y = mu + res.sigma * rng.standard_normal(design.nobs)
    for term, T, Z in zip(design.terms, templates(design, res.theta), Zs, strict=True):
        u = res.sigma * rng.standard_normal((term.n_levels, term.p))
        y = y + Z @ (u @ T.T).ravel()
    return y


def bootstrap(res: Any, n: int, seed: int | None = None, progressbar: bool = True
              ) -> Bootstrap:
    """Parametric bootstrap: ``n`` responses simulated from the fit, each refitted.

    Parameters
    ----------
    res : FitResult
        A REML or ML fit with its model.
    n : int
        Number of replicates.
    seed : int, optional
        Seed of numpy's default generator (reproducible replicates).
    progressbar : bool
        Show a text progress bar on stderr.

    Returns
    -------
    Bootstrap

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> b = bootstrap(res, 10, seed=3, progressbar=False)
    >>> b.replicates.columns[:3].tolist(), b.n_failed
    (['objective', '(Intercept)', 'Days'], 0)
    """
    from hierlm.inference.anova import require_model
    from hierlm.model import _blas_controller

    model = require_model(res, "bootstrap")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise MethodError(f"n must be a positive whole number of replicates, got {n!r}")
    design = model.design
    work = working_design(design)  # simulated on the working scale (see _Refitter)
    reml = res.method == "REML"
    rng = np.random.default_rng(seed)
    # the fit's curvature in theta (sigma profiled out), exact by autodiff: with it the
    # refits converge in a few quasi-Newton steps from theta-hat
    from hierlm.inference.anova import info_of

    H = info_of(res).hessian
    hess = H[:-1, :-1] - np.outer(H[:-1, -1], H[-1, :-1]) / H[-1, -1]
    refitter = _Refitter(model.objective.with_backend("numba"), reml, hess)  # many evaluations
    Zs = [term_matrix(t) for t in work.terms]
    names = ["objective", *res.fixef.index, *parameter_names(design)]
    out = np.full((n, len(names)), np.nan)
    failed = 0
    bar = _Progress(n, progressbar)
    # one BLAS thread, as in a fit: L-BFGS-B's small BLAS calls are slower threaded
    with _blas_controller().limit(limits=1, user_api="blas"):
        for i in range(n):
            y = _simulate(work, res, rng, Zs)
            try:
                theta, sigma, beta, f = refitter.refit(y, res.theta)
                out[i] = np.concatenate([[f], beta, sdcor_from_theta(design, theta, sigma)])
            except (RuntimeError, ValueError, np.linalg.LinAlgError):
                failed += 1
            bar.update(i + 1)
    if failed:
        warnings.warn(f"{failed} of {n} bootstrap replicates failed to refit; they are NaN "
                      f"rows of .replicates", ConvergenceWarning, stacklevel=3)
    est = pd.Series(np.concatenate([[res.objective], res.fixef.to_numpy(),
                                    sdcor_from_theta(design, res.theta, res.sigma)]),
                    index=names)
    return Bootstrap(replicates=pd.DataFrame(out, columns=names), n_failed=failed, seed=seed,
                     estimates=est)
