"""Refits of a fitted model to new responses on its compiled graph (the bootstrap's core).

Of the Gram blocks of ``[Z X y]`` only the ``y`` row changes with the response:
``Z'y*``, ``X'y*`` and ``y*'y*`` (the ``y`` column of ``A_RR`` and the ``y`` row of
``A_R1``).  The blocks hold ``y* - X a*`` with ``a*`` the least-squares fit of ``y*``
on ``X`` (see :mod:`hierlm.objective.gram`).  For a block of responses ``Y`` (one a
row) these are a few matrix products, ``O((nnz(Z) + n p) b)`` for ``b`` responses;
the compiled objective is reused as is.

Each refit minimizes the same criterion (REML or ML) from theta-hat by the package's
one theta optimizer (:func:`hierlm.estimate.theta_optimizer.minimize_theta`) with its
quasi-Newton strategy (:class:`hierlm.estimate.quasi_newton.QuasiNewton`): BFGS whose
first inverse Hessian is the exact one of the fit (the Hessian of the profiled
criterion is the Schur complement ``H_tt - H_ts H_ss^{-1} H_st`` of the unprofiled
deviance's, by the envelope theorem; :mod:`hierlm.inference.deviance`), compiled
around the objective's graph (:mod:`hierlm.estimate.quasi_newton_loop`), stopping when
the Newton decrement ``g' H^{-1} g`` is below :data:`DECREMENT_TOL` and the fit's own
rule holds (a scaled projected gradient at most :data:`CHECK_TOL`,
:mod:`hierlm.estimate.optimize`); where it stalls (against a bound, say), bounded
L-BFGS-B from the last iterate, and from the start where that ends on a bound, the
lower kept.  From the last
evaluation, ``sigma^2 = r^2 / (n - p)`` (REML) or ``r^2 / n`` (ML) and
``beta = a* + L_XX^{-T} l`` (``l`` the ``y`` row of ``L_R`` under ``X``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierlm.covariance.layout import theta_lower
from hierlm.design.weights import working_design
from hierlm.estimate.optimize import DEFAULT_OPTIONS
from hierlm.estimate.quasi_newton import CompiledCriterion, QuasiNewton, accepts
from hierlm.estimate.quasi_newton_loop import CompiledLoop
from hierlm.estimate.theta_optimizer import ParameterSpace, SearchOptions, minimize_theta
from hierlm.objective.cholesky import GramVars
from hierlm.objective.gram import term_matrix
from hierlm.objective.profiled import ProfiledObjective, gram_values

#: The fit's own convergence rule: scaled projected gradient at most this.
CHECK_TOL = float(DEFAULT_OPTIONS["check_tol"])
#: Newton decrement below which a quasi-Newton refit has converged.
DECREMENT_TOL = 1e-9
_FIELDS = list(GramVars.__dataclass_fields__)
#: Where the quasi-Newton refit stalls: the fit's optimizer, bounded, with the fit's
#: stopping rules and scipy's default line search, at most two runs.
REFIT_SEARCH = SearchOptions(maxiter=int(DEFAULT_OPTIONS["maxiter"]),
                             ftol=float(DEFAULT_OPTIONS["ftol"]),
                             gtol=float(DEFAULT_OPTIONS["gtol"]), maxls=20,
                             check_tol=CHECK_TOL, bounded=True, runs=2)


@dataclass(frozen=True)
class RefitBlock:
    """Refits of a block of ``b`` responses (rows of NaN where a refit failed).

    Attributes
    ----------
    theta : ndarray, shape (b, n_theta)
    sigma : ndarray, shape (b,)
    beta : ndarray, shape (b, p)
    objective : ndarray, shape (b,)
        lme4's criterion (REML or ML deviance) at the refit.
    ok : ndarray of bool, shape (b,)
        Whether the refit converged.
    """

    theta: np.ndarray
    sigma: np.ndarray
    beta: np.ndarray
    objective: np.ndarray
    ok: np.ndarray


class Refitter:
    """Refits one model to new responses, changing only the ``y`` parts of its Gram blocks.

    Responses are on the working scale ``W^1/2 (y - o)`` of :mod:`hierlm.design.weights`
    (prior weights, offset), as the Gram blocks are.

    Parameters
    ----------
    objective : ProfiledObjective
        The fitted model's compiled objective.
    reml : bool
        Refit by REML (True) or ML.
    hess : ndarray, optional
        Hessian of the profiled criterion in theta at the fit (the first inverse Hessian
        of the quasi-Newton refits); without it, or if it is not positive definite,
        every refit is L-BFGS-B's.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> r = Refitter(res.model.objective, reml=True)
    >>> y = res.model.design.y
    >>> out = r.refit_block(y[None, :], res.theta)
    >>> bool(abs(out.objective[0] - res.objective) < 1e-6), out.beta.round(2).tolist()
    (True, [[251.41, 10.47]])
    """

    def __init__(self, objective: ProfiledObjective, reml: bool,
                 hess: np.ndarray | None = None) -> None:
        objective = objective.with_backend("numba")  # thousands of evaluations
        design, gram = working_design(objective.design), objective.gram
        self.hess_inv = _inverse_if_pd(hess)
        self.fn, self.reml, self.gram = objective.fn, reml, gram
        self.X = design.X
        self.Z_rest = [term_matrix(t).tocsc() for t in design.terms[1:]]
        self.Z1 = term_matrix(design.terms[0]).tocsc()
        self.pinvX = np.linalg.pinv(design.X) if design.p else np.zeros((0, design.nobs))
        self.p1 = design.terms[0].p
        self.y_nz = np.flatnonzero(gram.nz_row == gram.m - 1)
        self.y_levels = gram.nz_level[self.y_nz]
        self.outside = np.ones(gram.A11.shape[0], dtype=bool)
        self.outside[self.y_levels] = False
        self.lower = theta_lower(design)
        # L-BFGS-B works on phi = theta / scale, as the fit does
        self.space = ParameterSpace.of_theta(design)
        self.scale = self.space.scale
        self.static = [np.asarray(float(reml)), np.asarray(float(gram.n)),
                       np.asarray(float(gram.p))]
        self.args = gram_values(gram)
        self.slot = {name: _FIELDS.index(name) for name in ("A_RR", "nz_val", "A_R1_dense")}
        self.denom = gram.n - gram.p if reml else gram.n
        self.loop = CompiledLoop(objective.graph)
        self.search = SearchOptions(strategy=QuasiNewton(self.hess_inv, DECREMENT_TOL,
                                                         CHECK_TOL, REFIT_SEARCH))

    @property
    def releases_gil(self) -> bool:
        """Whether refits run in the compiled loop (which releases the GIL)."""
        return self.hess_inv is not None and self.loop.ready

    # -- the y parts of the Gram blocks, for a block of responses --------------------
    def _y_parts(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``a*`` (b, p), the ``y`` column of ``A_RR`` (b, m) and ``Z1'y*`` (b, l1, p1)."""
        A = Y @ self.pinvX.T
        YC = Y - A @ self.X.T
        YCt = np.ascontiguousarray(YC.T)
        cols = [np.asarray(Z.T @ YCt).T for Z in self.Z_rest]
        col = np.concatenate([*cols, YC @ self.X, np.einsum("ij,ij->i", YC, YC)[:, None]],
                             axis=1)
        z1 = np.asarray(self.Z1.T @ YCt).T.reshape(Y.shape[0], -1, self.p1)
        return A, col, z1

    def _args_for(self, col: np.ndarray, z1: np.ndarray) -> list[np.ndarray]:
        args = list(self.args)
        A_RR = self.gram.A_RR.copy()
        A_RR[-1, :] = col
        A_RR[:, -1] = col
        args[self.slot["A_RR"]] = A_RR
        nz_val = self.gram.nz_val.copy()
        nz_val[self.y_nz] = z1[self.y_levels]
        args[self.slot["nz_val"]] = nz_val
        if self.gram.dense_r1:
            dense = self.gram.A_R1_dense.copy()
            dense[-1, :] = z1.ravel()
            args[self.slot["A_R1_dense"]] = dense
        return args

    def refit_block(self, Y: np.ndarray, start: np.ndarray) -> RefitBlock:
        """Refit each row of ``Y`` (responses on the working scale), starting at ``start``."""
        Y = np.atleast_2d(np.asarray(Y, dtype=float))
        b, g = Y.shape[0], self.gram
        A, col, z1 = self._y_parts(Y)
        theta = np.full((b, len(self.lower)), np.nan)
        r2 = np.full(b, np.nan)
        f = np.full(b, np.nan)
        LXX = np.full((b, g.p, g.p), np.nan)
        lvec = np.full((b, g.p), np.nan)
        # a level outside the stored pattern of A_R1: not expected for real data
        ok = ~np.any(z1[:, self.outside] != 0, axis=(1, 2))
        qr, p = g.q_rest, g.p
        for i in np.flatnonzero(ok):
            try:
                x, fi, L_R = self.minimize(self._args_for(col[i], z1[i]), start)
            except (RuntimeError, ValueError, np.linalg.LinAlgError):
                ok[i] = False
                continue
            theta[i], f[i], r2[i] = x, fi, L_R[-1, -1] ** 2
            LXX[i], lvec[i] = L_R[qr:qr + p, qr:qr + p], L_R[-1, qr:qr + p]
        beta = np.full((b, p), np.nan)
        if p and ok.any():
            # beta = L_XX^{-T} l: one batched solve for the block
            beta[ok] = np.linalg.solve(np.swapaxes(LXX[ok], 1, 2), lvec[ok][..., None])[..., 0]
        beta = beta + A
        # lme4's criterion: the working problem's minus sum(log w) (prior weights)
        return RefitBlock(theta=theta, sigma=np.sqrt(r2 / self.denom), beta=beta,
                          objective=f - g.sum_log_w, ok=ok)

    # -- the minimization ------------------------------------------------------------
    def minimize(self, args: list[np.ndarray], start: np.ndarray
                 ) -> tuple[np.ndarray, float, np.ndarray]:
        """``(theta, f, L_R)`` at the minimum of the criterion with Gram values ``args``.

        Raises RuntimeError when no stage meets the fit's convergence rule.
        """
        criterion = CompiledCriterion(self.fn, self.static, args, self.loop)
        res = minimize_theta(criterion, self.space, start, self.search)
        if not res.converged or res.factor is None:
            raise RuntimeError(res.messages[-1] if res.messages else "refit failed")
        return res.theta, res.criterion, res.factor

    def accepts(self, theta: np.ndarray, grad: np.ndarray) -> bool:
        """The fit's rule: ``max |pg_phi| max(1, |phi|) <= CHECK_TOL`` on ``phi = theta/scale``."""
        return accepts(self.space, theta, grad, CHECK_TOL)


def _inverse_if_pd(H: np.ndarray | None) -> np.ndarray | None:
    if H is None:
        return None
    w, U = np.linalg.eigh(0.5 * (H + H.T))
    if not np.all(w > 1e-8 * max(w.max(), 1e-300)):
        return None
    return np.asarray((U / w) @ U.T)
