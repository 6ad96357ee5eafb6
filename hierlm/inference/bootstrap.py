"""Parametric bootstrap of a REML/ML fit, refitted on the compiled graph.

One replicate simulates ``y* = X beta-hat + Z Lambda-hat u* + eps*`` with
``u* ~ N(0, sigma-hat^2 I_q)`` and ``eps* ~ N(0, sigma-hat^2 W^-1)`` (plus the offset;
drawn on the working scale ``W^1/2 (y - o)``, :mod:`hierlm.design.weights`), and refits by the
same criterion from theta-hat, changing only the ``y`` parts of the Gram blocks
(:mod:`hierlm.inference.refit`: BFGS from the fit's exact curvature).

All responses come from one generator seeded with ``seed``, replicate after
replicate (``eps*`` then each term's ``u*``), simulated in the calling process in
blocks of :func:`block_size` replicates; the blocks are refitted on ``n_jobs`` threads
where the compiled refit loop releases the GIL, else on ``n_jobs`` forked processes
(:mod:`hierlm.inference.parallel`).  Refits depend only on their response,
so the table is the same whatever ``n_jobs`` is.  A replicate whose refit fails (does
not converge, or raises) is counted, reported in a warning and kept as a row of NaN.
"""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import templates
from hierlm.covariance.parameters import parameter_names, sdcor_from_theta
from hierlm.design.weights import working_design
from hierlm.errors import ConvergenceWarning, MethodError
from hierlm.heap import gc_paused
from hierlm.inference.blas import one_blas_thread
from hierlm.inference.bootstrap_structured import structured_estimates, structured_replicates
from hierlm.inference.fitted import info_of, require_model
from hierlm.inference.parallel import available_cores, map_blocks
from hierlm.inference.refit import RefitBlock, Refitter
from hierlm.objective.gram import term_matrix


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
        fixef = [c for c in cols if not (c.startswith(("sd_", "cor_", "sd|", "rho"))
                                         or c == "sigma")]
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


def block_size(nobs: int) -> int:
    """Replicates simulated and refitted together: 64, fewer when ``64 nobs`` doubles
    would pass 16 MiB.

    Examples
    --------
    >>> block_size(180), block_size(10_000_000)
    (64, 1)
    """
    return max(1, min(64, 2**21 // max(int(nobs), 1)))


def simulate(design: Any, res: Any, rng: np.random.Generator, Zs: list[Any], b: int
             ) -> np.ndarray:
    """``b`` responses simulated from the fit, one a row (working scale of ``design``).

    Replicate ``i`` takes the ``i``-th run of ``nobs + sum(levels p)`` standard
    normals from ``rng``: the same values as ``b`` single draws in a row.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> d = res.model.design
    >>> Zs = [term_matrix(t) for t in d.terms]
    >>> simulate(d, res, np.random.default_rng(1), Zs, 3).shape
    (3, 180)
    """
    sizes = [term.n_levels * term.p for term in design.terms]
    E = rng.standard_normal((b, design.nobs + sum(sizes)))
    Y = design.X @ res.fixef.to_numpy() + res.sigma * E[:, :design.nobs]
    off = design.nobs
    for term, T, Z, k in zip(design.terms, templates(design, res.theta), Zs, sizes,
                             strict=True):
        U = res.sigma * E[:, off:off + k].reshape(b, term.n_levels, term.p)
        off += k
        Y = Y + np.asarray(Z @ (U @ T.T).reshape(b, k).T).T
    return np.asarray(Y)


def _check_n_jobs(n_jobs: int | None) -> int:
    if n_jobs is None:
        return available_cores()
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs < 1:
        raise MethodError(f"n_jobs must be a positive whole number of processes (or None for "
                          f"all cores), got {n_jobs!r}")
    return int(n_jobs)


def bootstrap(res: Any, n: int, seed: int | None = None, progressbar: bool = True,
              n_jobs: int | None = None) -> Bootstrap:
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
    n_jobs : int, optional
        Processes refitting blocks of replicates at once (default: every core this
        process may use; 1: all in this process).  The replicates do not depend on it.

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

    model = require_model(res, "bootstrap")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise MethodError(f"n must be a positive whole number of replicates, got {n!r}")
    jobs = _check_n_jobs(n_jobs)
    n = int(n)
    design = model.design
    work = working_design(design)  # simulated on the working scale (see refit.Refitter)
    rng = np.random.default_rng(seed)
    if DesignCovariance.of(design).structured:
        Zs = [term_matrix(t) for t in work.terms]
        Y = np.vstack([simulate(work, res, rng, Zs, min(64, n - i0)) for i0 in range(0, n, 64)])
        table, failed = structured_replicates(res, model, Y)
        return Bootstrap(replicates=table, n_failed=failed, seed=seed,
                         estimates=structured_estimates(res, design))
    # the fit's curvature in theta (sigma profiled out), exact by autodiff: with it the
    # refits converge in a few quasi-Newton steps from theta-hat
    H = info_of(res).hessian
    hess = H[:-1, :-1] - np.outer(H[:-1, -1], H[-1, :-1]) / H[-1, -1]
    refitter = Refitter(model.objective, res.is_reml, hess)
    Zs = [term_matrix(t) for t in work.terms]
    size = block_size(work.nobs)
    starts = list(range(0, n, size))
    theta = np.full((n, design.n_theta), np.nan)
    sigma, f = np.full(n, np.nan), np.full(n, np.nan)
    beta = np.full((n, design.p), np.nan)
    ok = np.zeros(n, dtype=bool)
    done = [0]
    bar = _Progress(n, progressbar)

    def responses() -> Any:
        for i0 in starts:
            yield simulate(work, res, rng, Zs, min(size, n - i0))

    def store(block: RefitBlock) -> None:
        i0, i1 = done[0], done[0] + len(block.ok)
        theta[i0:i1], sigma[i0:i1], beta[i0:i1] = block.theta, block.sigma, block.beta
        f[i0:i1], ok[i0:i1] = block.objective, block.ok
        done[0] = i1
        bar.update(i1)

    start = np.asarray(res.theta, dtype=float)
    blocks = responses()
    # one BLAS thread, as in a fit: the small BLAS calls are slower threaded
    with one_blas_thread(), gc_paused():
        # the first block here (it compiles or loads the refit loop), then the rest on
        # threads where that loop releases the GIL, else on forked processes
        store(refitter.refit_block(next(blocks), start))
        map_blocks(lambda Y: refitter.refit_block(Y, start), blocks,
                   min(jobs, len(starts) - 1), store, processes=not refitter.releases_gil)
    failed = int(n - ok.sum())
    if failed:
        warnings.warn(f"{failed} of {n} bootstrap replicates failed to refit; they are NaN "
                      f"rows of .replicates", ConvergenceWarning, stacklevel=3)
    names = ["objective", *res.fixef.index, *parameter_names(design)]
    out = np.full((n, len(names)), np.nan)
    out[ok] = np.column_stack([f[ok], beta[ok], sdcor_from_theta(design, theta[ok], sigma[ok])])
    est = pd.Series(np.concatenate([[res.objective], res.fixef.to_numpy(),
                                    sdcor_from_theta(design, res.theta, res.sigma)]),
                    index=names)
    return Bootstrap(replicates=pd.DataFrame(out, columns=names), n_failed=failed, seed=seed,
                     estimates=est)
