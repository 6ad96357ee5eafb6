"""Exact draws of the random effects given (beta, theta, sigma), and per-group likelihoods.

Given everything else, the spherical random effects are Gaussian::

    u | y, beta, theta, sigma ~ N(u~(beta), sigma^2 (L_Z L_Z')^{-1}),

with ``L_Z`` the random-effect block of the factor of ``Omega(theta)``.  hierlm's
factor is blocked: ``L_Z = [[L11, 0], [G, L_ZR]]`` with ``L11 = blockdiag(L1_k)`` (the
closed-form factors of ``M_k = T1'A11_k T1 + I``), ``L_ZR`` the top-left ``q_rest``
block of the Schur factor ``L_R`` and ``G = C L11^{-T}``, ``C = Lambda_R'A_R1 Lambda_1``.
A draw ``u = u~ + sigma L_Z'^{-1} z`` (``z ~ N(0, I)``) is computed blockwise, the
rest first::

    u_R = L_ZR'^{-1} (l_yZ' - L_XZ' beta + sigma z_R)
    u_1 = L11'^{-1} (L11^{-1} t + sigma z_1),   t_k = -T1' (A_1R [Lambda_R u_R; beta; -1])_k

(``t`` uses ``Lambda_R u_R`` with the noise already in it, which carries the
``-G' x_R`` term of the triangular solve, so ``C`` is never formed.)  With ``z = 0``
this is the conditional mean, which at ``beta = beta-hat(theta)`` is lme4's
conditional mode.  Then ``b = Lambda_theta u``.

:func:`log_likelihood_dataset` holds ``log p(y_g | beta, theta, sigma)`` per level ``g``
of a factor that splits the data (:mod:`hierlm.estimate.group_loglik`).
:func:`marginal_deviance` is the numpy twin of the graph's unprofiled deviance,
``log|L_theta|^2 + n log(2 pi sigma^2) + (r^2 + ||L_XX'beta - l_yX'||^2) / sigma^2``,
and :func:`ranef_posterior` turns posterior draws into random-effect draws and their
posterior means and SDs.

The fixed sparse matrices of :class:`ConditionalSampler` (``A_1R`` and ``Lambda_R``'s
pattern) are stored in canonical CSR order directly (:func:`csr_from_triplets`: the
arrays SciPy's triplet constructor makes, in a third of its time; 0.45 -> 0.2 ms per
sampler for penicillin at load 7), since a REML fit makes one per fit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.covariance.layout import templates
from hierlm.covariance.names import posterior_name
from hierlm.design.terms import ModelDesign
from hierlm.design.weights import working_design
from hierlm.estimate.cond_var import conditional_variances
from hierlm.estimate.group_loglik import group_loglik, split_factor
from hierlm.objective.gram import GramBlocks
from hierlm.objective.profiled import ProfiledObjective
from hierlm.objective.varcorr import group_labels

if TYPE_CHECKING:  # xarray is imported by the NUTS functions only: REML fits never need it
    import xarray as xr


def _row_order(rows: np.ndarray, cols: np.ndarray, n_rows: int
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """The order of canonical CSR storage (by row, then column) of the entries at
    ``(rows, cols)`` and the row pointers, or None if a position repeats.

    ``sp.csr_matrix((data, (rows, cols)))`` stores the same entries in this order; built
    directly it takes a third of the time (0.1 of 0.3 ms for penicillin)."""
    order = np.lexsort((cols, rows))
    r, c = rows[order], cols[order]
    if r.size > 1 and np.any((r[1:] == r[:-1]) & (c[1:] == c[:-1])):
        return None
    indptr = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(r, minlength=n_rows), out=indptr[1:])
    return order, indptr


def csr_from_triplets(data: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                      shape: tuple[int, int]) -> sp.csr_matrix:
    """``sp.csr_matrix((data, (rows, cols)), shape=shape)``, the same arrays.

    Examples
    --------
    >>> a = csr_from_triplets(np.array([1.0, 2.0, 3.0]), np.array([1, 0, 1]),
    ...                       np.array([2, 1, 0]), (2, 3))
    >>> b = sp.csr_matrix(([1.0, 2.0, 3.0], ([1, 0, 1], [2, 1, 0])), shape=(2, 3))
    >>> [np.array_equal(x, y) for x, y in ((a.indptr, b.indptr), (a.indices, b.indices),
    ...                                     (a.data, b.data))]
    [True, True, True]
    """
    got = _row_order(rows, cols, shape[0])
    if got is None or max(*shape, len(data)) >= np.iinfo(np.int32).max:
        return sp.csr_matrix((data, (rows, cols)), shape=shape)
    order, indptr = got
    return sp.csr_matrix((data[order], cols[order].astype(np.int32), indptr), shape=shape)


@dataclass(frozen=True, eq=False)
class Factor:
    """The pieces of the factor at one theta that a draw needs."""

    Ts: list[np.ndarray]
    L1: np.ndarray  # (l1, p1, p1)
    L_R: np.ndarray  # (m, m)
    lam_rest: sp.csr_matrix  # (q_rest, q_rest)


class ConditionalSampler:
    """Draws ``u`` (and ``b``) from their Gaussian conditional for one model.

    Parameters
    ----------
    objective : ProfiledObjective
        The compiled model; its ``evaluate`` supplies ``L1`` and ``L_R`` at each theta.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> cs = ConditionalSampler(compile_objective(d))
    >>> f = cs.factor(np.array([0.96, 0.02, 0.23]))
    >>> cs.draw(f, np.array([251.4, 10.47]), 25.6, np.zeros(36)).shape
    (36,)
    """

    def __init__(self, objective: ProfiledObjective) -> None:
        self.objective = objective
        self.design = design = objective.design
        g = objective.gram
        self.q_rest, self.p, self.m = g.q_rest, g.p, g.m
        first = design.terms[0]
        self.l1, self.p1 = first.n_levels, first.p
        # A_1R as a fixed sparse (l1 p1) x m matrix: row level * p1 + j.
        rows = (g.nz_level[:, None] * self.p1 + np.arange(self.p1)[None, :]).ravel()
        cols = np.repeat(g.nz_row, self.p1)
        self.A1R = csr_from_triplets(g.nz_val.ravel(), rows, cols, (self.l1 * self.p1, g.m))
        keep = g.lam_row < g.q_rest
        # Lambda_R's sparsity pattern in CSR order, built once: each draw only fills in
        # its values (building a scipy matrix from triplets costs ~0.3 ms a draw).
        r, c, t = g.lam_row[keep], g.lam_col[keep], g.lam_theta[keep]
        pattern = csr_from_triplets(np.arange(1, len(t) + 1, dtype=float), r, c,
                                    (g.q_rest, g.q_rest))
        self._lam_theta = t[pattern.data.astype(np.int64) - 1]
        self._lam_indices, self._lam_indptr = pattern.indices, pattern.indptr

    def factor(self, theta: np.ndarray) -> Factor:
        """Evaluate the factor at theta (one call of the compiled graph)."""
        theta = np.asarray(theta, dtype=float)
        _, _, L1, L_R = self.objective.evaluate(theta, reml=False)
        return self.factor_from(theta, L1, L_R)

    def factor_from(self, theta: np.ndarray, L1: np.ndarray, L_R: np.ndarray) -> Factor:
        """Wrap factor pieces already evaluated at theta."""
        theta = np.asarray(theta, dtype=float)
        lam = sp.csr_matrix((theta[self._lam_theta], self._lam_indices, self._lam_indptr),
                            shape=(self.q_rest, self.q_rest))
        return Factor(Ts=templates(self.design, theta), L1=L1, L_R=L_R, lam_rest=lam)

    def draw(self, f: Factor, beta: np.ndarray, sigma: float, z: np.ndarray) -> np.ndarray:
        """``u~(beta) + sigma L_Z'^{-1} z`` for ``z`` of shape ``(q,)`` or ``(q, k)``.

        ``z = 0`` gives the conditional mean; ``u`` is ordered as ``Z``'s columns
        (term by term, level-major within a term).
        """
        z = np.asarray(z, dtype=float)
        vec = z.ndim == 1
        Zm = z[:, None] if vec else z
        k = Zm.shape[1]
        qr, p, p1, l1 = self.q_rest, self.p, self.p1, self.l1
        L_R = f.L_R
        q1 = l1 * p1
        beta = np.asarray(beta, dtype=float) - self.objective.gram.beta_offset
        if qr:
            rhs = L_R[-1, :qr] - L_R[qr:qr + p, :qr].T @ beta
            u_R = sla.solve_triangular(L_R[:qr, :qr], rhs[:, None] + sigma * Zm[q1:],
                                       lower=True, trans="T")
            b_R = f.lam_rest @ u_R
        else:
            u_R = b_R = np.zeros((0, k))
        v = np.concatenate([b_R, np.broadcast_to(beta[:, None], (p, k)), -np.ones((1, k))])
        acc = (self.A1R @ v).reshape(l1, p1, k)
        t = -np.einsum("ji,ljk->lik", f.Ts[0], acc)
        w = np.linalg.solve(f.L1, t) + sigma * Zm[:q1].reshape(l1, p1, k)
        u1 = np.linalg.solve(np.swapaxes(f.L1, 1, 2), w).reshape(q1, k)
        u = np.concatenate([u1, u_R])
        return u[:, 0] if vec else u

    def to_b(self, f: Factor, u: np.ndarray) -> list[np.ndarray]:
        """``b = Lambda u`` split by term, each ``(levels, p_i)`` (or ``(levels, p_i, k)``)."""
        out = []
        off = 0
        for term, T in zip(self.design.terms, f.Ts, strict=True):
            ui = u[off:off + term.q].reshape(term.n_levels, term.p, *u.shape[1:])
            out.append(np.einsum("ij,lj...->li...", T, ui))
            off += term.q
        return out

    def sample_b(self, theta: np.ndarray, beta: np.ndarray, sigma: np.ndarray,
                 rng: np.random.Generator) -> list[np.ndarray]:
        """One draw of ``b`` per posterior draw; inputs ``(D, n_theta)``, ``(D, p)``, ``(D,)``.

        Returns a list over terms of arrays ``(D, levels, p_i)``.
        """
        D = theta.shape[0]
        q = self.design.q
        if self.q_rest == 0:  # one term: every draw's factor in closed form, batched
            z = rng.standard_normal((D, q))  # the same stream as the loop below
            chunk = max(1, 2_000_000 // max(1, q * self.p1))
            return [np.concatenate([self._batch_b(theta[s:s + chunk], beta[s:s + chunk],
                                                  sigma[s:s + chunk], z[s:s + chunk])
                                    for s in range(0, D, chunk)])]
        out = [np.empty((D, t.n_levels, t.p)) for t in self.design.terms]
        for d in range(D):
            f = self.factor(theta[d])
            u = self.draw(f, beta[d], float(sigma[d]), rng.standard_normal(q))
            for arr, b in zip(out, self.to_b(f, u), strict=True):
                arr[d] = b
        return out

    def _batch_b(self, theta: np.ndarray, beta: np.ndarray, sigma: np.ndarray,
                 z: np.ndarray) -> np.ndarray:
        """:meth:`draw` and :meth:`to_b` for a batch of draws of a one-term model.

        Per draw ``T`` (from theta) and level ``k``: ``M_k = T'A11_k T + I = L_k L_k'``,
        ``t_k = -T'(A_1R [beta; -1])_k``, ``u_k = L_k'^{-1}(L_k^{-1} t_k + sigma z_k)``,
        ``b_k = T u_k``.  Returns ``(D, levels, p1)``.
        """
        D, p1, l1 = theta.shape[0], self.p1, self.l1
        (T,) = templates(self.design, theta)  # (D, p1, p1)
        A11 = self.objective.gram.A11
        Tt = np.swapaxes(T, -1, -2)
        M = Tt[:, None] @ A11[None] @ T[:, None] + np.eye(p1)  # (D, l1, p1, p1)
        L = np.linalg.cholesky(M)
        off = np.asarray(beta, dtype=float) - self.objective.gram.beta_offset
        v = np.concatenate([off.T, -np.ones((1, D))])  # (p + 1, D): [beta; -1]
        acc = np.asarray(self.A1R @ v).reshape(l1, p1, D)
        t = -(acc.transpose(2, 0, 1) @ T)  # (D, l1, p1)
        w = np.linalg.solve(L, t[..., None])[..., 0] + sigma[:, None, None] * z.reshape(D, l1, p1)
        u = np.linalg.solve(np.swapaxes(L, -1, -2), w[..., None])[..., 0]
        return u @ Tt


def sample_b_varying(objective: ProfiledObjective, gram_at: Callable[[int], GramBlocks],
                     sel: np.ndarray, draws: tuple[np.ndarray, np.ndarray, np.ndarray],
                     rng: np.random.Generator) -> list[np.ndarray]:
    """One draw of ``b`` for each flattened draw ``i`` in ``sel``, each on the model with
    Gram matrix ``gram_at(i)`` (the same pattern as ``objective``'s, so its compiled
    graph serves every draw).  Returns a list over terms of ``(len(sel), levels, p_i)``."""
    theta, beta, sigma = draws
    design = objective.design
    out = [np.empty((len(sel), t.n_levels, t.p)) for t in design.terms]
    for j, i in enumerate(sel):
        cs = ConditionalSampler(dataclasses.replace(objective, gram=gram_at(int(i))))
        f = cs.factor(theta[i])
        u = cs.draw(f, beta[i], float(sigma[i]), rng.standard_normal(design.q))
        for arr, b in zip(out, cs.to_b(f, u), strict=True):
            arr[j] = b
    return out


def log_likelihood_dataset(design: ModelDesign, post: xr.Dataset, theta: np.ndarray,
                           beta: np.ndarray, sigma: np.ndarray, budget: float = 2e10
                           ) -> tuple[xr.Dataset | None, str]:
    """The ``log_likelihood`` group (per level of the splitting factor), or None and why.

    ``theta``, ``beta``, ``sigma`` are the flattened draws of ``post`` (chain-major).
    """
    import xarray as xr

    split = split_factor(design)
    if split is None:
        return None, ("log_likelihood omitted: no grouping factor splits the data into "
                      "independent blocks (crossed random effects), so arviz.loo is unavailable")
    t = design.terms[split]
    nmax = float(np.bincount(t.codes).max())
    if t.n_levels < 2 or theta.shape[0] * t.n_levels * nmax**3 > budget:
        why = "it has one level" if t.n_levels < 2 else "its blocks are too large to factor"
        return None, f"log_likelihood omitted: {why} ({t.group!r})"
    ll = group_loglik(working_design(design), split, theta, beta, sigma)
    if design.weights is not None:  # the Jacobian of the sqrt(w) scaling, per group
        ll = ll + 0.5 * np.bincount(t.codes, weights=np.log(design.weights),
                                    minlength=t.n_levels)[None, :]
    C, D = post.sizes["chain"], post.sizes["draw"]
    level = posterior_name("level", t.group)
    ds = xr.Dataset({"y": (("chain", "draw", level), ll.reshape(C, D, -1))},
                    coords={"chain": post["chain"].values, "draw": post["draw"].values,
                            level: list(t.values)},
                    attrs={"note": f"log p(y_g | beta, theta, sigma) for each level g of "
                                   f"{t.group!r}, random effects integrated out"})
    return ds, f"log_likelihood: one value per level of {t.group!r} (leave-one-group-out)"


def marginal_deviance(objective: ProfiledObjective, theta: np.ndarray, beta: np.ndarray,
              sigma: float) -> float:
    """``-2 log p(y | beta, theta, sigma)`` read off the factor (numpy twin of the graph).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> th = np.array([0.92922, 0.01817, 0.22264])
    >>> round(marginal_deviance(compile_objective(d), th, np.array([251.405, 10.467]), 25.592), 2)
    1751.94
    """
    _, _, L1, L_R = objective.evaluate(theta, reml=False)
    g = objective.gram
    qr, p, n = g.q_rest, g.p, g.n
    logdet = (2 * np.log(np.diagonal(L1, axis1=1, axis2=2)).sum()
              + 2 * np.log(np.diag(L_R)[:qr]).sum())
    resid = L_R[qr:qr + p, qr:qr + p].T @ (beta - g.beta_offset) - L_R[-1, qr:qr + p]
    return float(logdet + n * np.log(2 * np.pi * sigma**2)
                 + (L_R[-1, -1] ** 2 + resid @ resid) / sigma**2) - g.sum_log_w


def ranef_posterior(objective: ProfiledObjective, coords: dict[str, list[str]], post: xr.Dataset,
                    draws: tuple[np.ndarray, np.ndarray, np.ndarray],
                    point: tuple[np.ndarray, np.ndarray, float], max_ranef: int,
                    rng: np.random.Generator,
                    gram_at: Callable[[int], GramBlocks] | None = None
                    ) -> tuple[list[np.ndarray], list[np.ndarray], xr.Dataset | None, int]:
    """Posterior mean and SD of ``b`` per term, and the draws as a Dataset.

    ``draws`` are the flattened ``(theta, beta, sigma)`` draws of ``post``; at most
    ``max_ranef`` of them (evenly thinned per chain) get a draw of ``b``.  With
    ``max_ranef == 0`` the mean and SD are the conditional ones at ``point``
    ``(theta, beta, sigma)`` and the Dataset is None.  Also returns the number of draws.
    ``gram_at(i)``, where given, is the Gram matrix of flattened draw ``i``'s own model
    (a residual structure's whitened one, :mod:`hierlm.estimate.nuts_residual`), which
    then replaces ``objective``'s for that draw (``objective`` is the point's).
    """
    import xarray as xr

    design = objective.design
    theta, beta, sigma = draws
    labels = group_labels(design)
    cs = ConditionalSampler(objective)
    C, D = post.sizes["chain"], post.sizes["draw"]
    if max_ranef == 0:  # conditional mean and SD at the point estimates
        th, be, s = point
        f = cs.factor(th)
        mean = cs.to_b(f, cs.draw(f, be, s, np.zeros(design.q)))
        qr = objective.gram.q_rest
        cv = conditional_variances(design, objective.gram, f.Ts, f.L1, f.L_R[:qr, :qr],
                                   f.lam_rest, s**2)
        sds = [np.sqrt(np.clip(np.diagonal(v, axis1=1, axis2=2), 0, None)) for v in cv]
        return mean, sds, None, 0
    per_chain = min(D, max(1, max_ranef // C))
    draw_idx = np.unique(np.linspace(0, D - 1, per_chain).round().astype(int))
    sel = (np.arange(C)[:, None] * D + draw_idx[None, :]).ravel()
    if gram_at is None:
        b = cs.sample_b(theta[sel], beta[sel], sigma[sel], rng)
    else:
        b = sample_b_varying(objective, gram_at, sel, (theta, beta, sigma), rng)
    data, used = {}, {"chain": post["chain"].values, "draw": post["draw"].values[draw_idx]}
    for label, t, bk in zip(labels, design.terms, b, strict=True):
        # term-major, (term, level): the term dimension is shared with sd_<group> and
        # comes first in the dataset, and arviz.summary labels the rows in dataset
        # dimension order (arviz_base.reorg.dataset_to_dataarray); level-major rows were
        # labelled with the wrong values
        dims = (posterior_name("term", label), posterior_name("level", t.group))
        ranef = bk.reshape(C, len(draw_idx), t.n_levels, t.p).transpose(0, 1, 3, 2)
        data[posterior_name("ranef", label)] = (("chain", "draw", *dims), ranef)
        used.update({d: coords[d] for d in dims})
    sd = [x.std(0, ddof=1) if len(x) > 1 else np.zeros_like(x[0]) for x in b]
    return [x.mean(0) for x in b], sd, xr.Dataset(data, coords=used), len(sel)
