"""The residual-based estimates of a small model by one dense Householder QR.

The same least-squares problem as :mod:`hierlm.estimate.stable_pls`: at the final
theta, with ``A = Z Lambda`` (working, i.e. weighted, columns) and ``B = [X, y - X a]``,
the augmented matrix

    W = [[A, X, y - X a],
         [I, 0, 0       ]]          ((n + q) x (q + p + 1))

has the QR factor ``R = [[R_ZZ, R_ZX, r_Zy], [0, R_XX, r_Xy], [0, 0, r_yy]]`` (lme4's
penalized least squares, solved without forming ``W'W``), so::

    beta = a + R_XX^{-1} r_Xy,   r^2 = r_yy^2,   u = R_ZZ^{-1} (r_Zy - R_ZX (beta - a)),
    b = Lambda u,   vcov(beta) = sigma^2 (R_XX'R_XX)^{-1},
    log|L_theta|^2 = 2 sum log|diag R_ZZ|,   log|L_X|^2 = 2 sum log|diag R_XX|.

Householder QR is backward stable: the answer is the least-squares solution of a
problem within ``O(eps)`` of this one, the property the iterative refinement of
:mod:`hierlm.estimate.stable_pls` reaches in several sparse steps; neither squares
the condition number, so a nearly exact fit (``sigma`` far below the signal) keeps its
residual.  ``R_ZZ'R_ZZ = Lambda'Z'Z Lambda + I`` is the factor the optimizer evaluates
(up to the signs of its rows), so ``log|L_theta|^2`` is the same number.

Why: for the small models of :mod:`hierlm.objective.numpy_link` (``q + p + 1`` at most
:data:`hierlm.objective.numpy_link.MAX_SIZE`) with few rows, the refinement's sparse
products, per-level solves and the conditional sampler's set-up cost about 1 ms a fit
(a quarter of a sleepstudy REML fit); this is one LAPACK QR of at most
:data:`MAX_WORK` ``(n + q) (q + p + 1)^2`` flops' worth and a few triangular solves.
The estimates alone at the fitted theta of the 24 fits of ``python -m benchmarks.peers``
(median of 30 calls each, one BLAS thread, 2 shared cores): median over the fits
0.55 ms with the refinement, 0.076 ms here (sleepstudy 0.45 -> 0.10 ms, penicillin
0.85 -> 0.08 ms); criterion, beta, sigma, vcov, b and the conditional variances agree
with the refinement's to 3e-15 relative.  ``chickweight`` (``n = 578``, ``q = 100``)
stays on the refinement: 1.37 ms here against 0.67 ms there, hence :data:`MAX_WORK`.
Later, the same numbers bit for bit: ``R`` read off the QR's output without zeroing its
lower triangle (no read touches it), the identity rows written through a flat view and
``Lambda`` by one strided view of its diagonal blocks
(:func:`hierlm.objective.numpy_link.dense_lambda`): the mean thread CPU time of
``stable_estimates`` within 500 warm sleepstudy REML fits (after those of ``python -m
benchmarks.fit_parts --warm``), old and new code one after the other, 204 -> 139 us.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.linalg.lapack import dgeqrf, dtrtrs

from hierlm.covariance.layout import templates
from hierlm.design.weights import working_design
from hierlm.estimate.cond_var import conditional_variances
from hierlm.estimate.extract import Estimates
from hierlm.estimate.lazy import deferred
from hierlm.objective.gram import working_term_matrices
from hierlm.objective.gram_dense import dense_data
from hierlm.objective.numpy_link import dense_lambda, suits
from hierlm.objective.profiled import ProfiledObjective

#: Largest ``(n + q) (q + p + 1)^2`` solved densely here (the sparse refinement beyond).
MAX_WORK = 3_000_000

#: Per model: ``[Z, X, y - X a]`` of the working design as one dense array, with room
#: for the ``q`` rows of the identity (refits reuse it; it refers to no objective).
_DENSE: weakref.WeakKeyDictionary[ProfiledObjective, np.ndarray] = weakref.WeakKeyDictionary()


def suits_dense(objective: ProfiledObjective) -> bool:
    """Whether a model's estimates are computed here: a small model with few rows.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> suits_dense(compile_objective(d))
    True
    """
    g = objective.gram
    if not suits(g) or objective.design.nobs != len(objective.design.y):
        return False
    N = g.A11.shape[0] * g.A11.shape[1] + g.m
    q = N - g.p - 1
    return (g.n + q) * N * N <= MAX_WORK


def _data(objective: ProfiledObjective) -> np.ndarray:
    got = _DENSE.get(objective)
    if got is None:
        got = dense_data(objective.design)  # kept by the dense Gram blocks, if they were
    if got is None:
        g = objective.gram
        wd = working_design(objective.design)
        Z = np.hstack([z.toarray() for z in working_term_matrices(objective.design)])
        got = np.column_stack([Z, wd.X, wd.y - wd.X @ g.beta_offset])
        got.setflags(write=False)
        _DENSE[objective] = got
    return got


def dense_estimates(objective: ProfiledObjective, theta: np.ndarray, L1: np.ndarray,
                    L_R: np.ndarray, reml: bool) -> tuple[Estimates, float]:
    """Estimates and lme4's criterion at theta (module docstring); the arguments and
    results of :func:`hierlm.estimate.stable_pls.stable_estimates`.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> obj = compile_objective(d)
    >>> th = np.array([0.96676, 0.01516, 0.23091])
    >>> est, crit = dense_estimates(obj, th, *obj.evaluate(th, True)[2:], reml=True)
    >>> round(crit, 4), est.beta.round(3).tolist()
    (1743.6283, [251.405, 10.467])
    """
    g = objective.gram
    n, p, qr = g.n, g.p, g.q_rest
    theta = np.asarray(theta, dtype=float)
    D = _data(objective)
    N = D.shape[1]
    q = N - p - 1
    lam = dense_lambda(theta, g)
    W = np.zeros((n + q, N), order="F")
    W[:n, :q] = D[:, :q] @ lam
    W[:n, q:] = D[:, q:]
    # the identity below Z Lambda, written through the flat (column-major) view of W
    W.T.reshape(-1)[n:n + q * (n + q + 1):n + q + 1] = 1.0
    qrf, _, _, info = dgeqrf(W, overwrite_a=1)
    # R is the upper triangle of qrf's first N rows; every read below is of that
    # triangle (blocks above the diagonal, diagonals, and dtrtrs, which reads the
    # upper triangle only), so the reflectors below it are not zeroed
    R = qrf[:N]
    R_ZZ, R_ZX, r_Zy = R[:q, :q], R[:q, q:q + p], R[:q, -1]
    R_XX, r_Xy, r_yy = R[q:q + p, q:q + p], R[q:q + p, -1], float(R[-1, -1])
    dbeta = dtrtrs(R_XX, r_Xy)[0] if p else np.zeros(0)
    u = dtrtrs(R_ZZ, r_Zy - R_ZX @ dbeta)[0]
    r2 = r_yy**2
    nr = n - p if reml else n
    sigma2 = r2 / nr
    diagonal = R.diagonal()  # (R_ZZ's and R_XX's diagonals, one view)
    logdet_Z = 2.0 * np.log(np.abs(diagonal[:q])).sum()
    logdet_X = 2.0 * np.log(np.abs(diagonal[q:q + p])).sum() if p else 0.0
    crit = float(logdet_Z + (logdet_X if reml else 0.0)
                 + nr * (1.0 + np.log(2.0 * np.pi * r2 / nr))) - g.sum_log_w
    R_inv = dtrtrs(R_XX, np.eye(p))[0] if p else np.zeros((0, 0))
    vcov = sigma2 * (R_inv @ R_inv.T)
    design = objective.design
    b_flat = lam @ u
    b, off = [], 0
    for term in design.terms:
        b.append(b_flat[off:off + term.q].reshape(term.n_levels, term.p))
        off += term.q
    lam_rest: Any = lam[q - qr:, q - qr:]

    def cond_var() -> list[np.ndarray]:  # read by ranef() only
        return conditional_variances(design, g, templates(design, theta), L1,
                                     L_R[:qr, :qr], sp.csr_matrix(lam_rest), sigma2)

    est = Estimates(beta=dbeta + g.beta_offset, sigma=float(np.sqrt(sigma2)), vcov=vcov,
                    b=b, cond_var=deferred(cond_var))
    return est, crit
