"""The optimizer's default start, and a moment estimate of theta for models whose
random-effect terms are all scalar (the start of large such models, :func:`default_start`).

The optimizer's default start is lme4's identity template.  On large crossed designs
the criterion is steep in the terms with many levels and flat in those with few, and
L-BFGS-B spends most of its evaluations finding the scale of each term (InstEval,
``y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)``: 32 evaluations from the identity,
12 from a start near the optimum).  For scalar terms a start near the optimum costs
one pass over the Gram blocks: MINQUE(0), the method-of-moments (Henderson-type)
estimator with an identity prior covariance (Rao 1971; Searle, Casella and McCulloch,
*Variance Components*, 1992, ch. 11).

With ``K`` terms, ``Q_j = Z_j Z_j'``, ``Q_0 = I`` (the residual), the least-squares
residual ``e = M y``, ``M = I - X (X'X)^{-1} X'``, the quadratic forms
``u_i = e'Q_i e = ||Z_i'e||^2`` have expectation::

    E[u_i] = sum_j sigma_j^2 tr(M Q_i M Q_j) = sum_j sigma_j^2 ||Z_i'M Z_j||_F^2,

and ``Z_i'M Z_j = C_ij - B_i G^{-1} B_j'`` with ``C_ij = Z_i'Z_j``, ``B_i = Z_i'X`` and
``G = X'X``, so::

    ||Z_i'M Z_j||^2 = ||C_ij||^2 - 2 tr(G^{-1} B_i'C_ij B_j) + tr(G^{-1} B_i'B_i G^{-1} B_j'B_j),
    tr(M Q_i) = tr(C_ii) - tr(G^{-1} B_i'B_i),      tr(M) = n - p.

Every piece is a block of the Gram matrix of ``[Z X y - X a]`` that the fit computes
anyway (:mod:`hierlm.objective.gram`); ``Z_i'e = Z_i'(y - X a) - B_i G^{-1} X'(y - X a)``
whatever the shift ``a`` (``M X = 0``), and ``e'e`` likewise.  Solving the
``(K + 1)``-square system gives unbiased ``sigma_j^2`` and ``sigma^2``, and
``theta_j = sqrt(max(sigma_j^2, 0) / sigma^2)``.  The estimate is only a start: the
optimizer then minimizes the exact criterion from it, so the fit's numbers do not
depend on it beyond the optimizer's tolerance.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hierlm.covariance.layout import theta_start
from hierlm.design.terms import ModelDesign
from hierlm.objective.gram import GramBlocks
from hierlm.objective.profiled import ProfiledObjective

#: Samples of more rows than this whose terms are all scalar start from the moment
#: estimate (:func:`default_start`), each entry at least MIN_START_PHI in the optimizer's
#: units (a zero would be a stationary point of the even criterion).
MOMENT_START_MIN_NOBS = 10_000
MIN_START_PHI = 0.05


def _blocks(design: ModelDesign, gram: GramBlocks) -> tuple[list, list, list, np.ndarray]:
    """Per term: ``Z_i'Z_i`` diagonal-or-dense, ``B_i = Z_i'X``, ``Z_i'e``; and ``G``."""
    m, p, qr = gram.m, gram.p, gram.q_rest
    A = gram.A_RR
    l1 = gram.A11.shape[0]
    AR1 = sp.csr_matrix((gram.nz_val[:, 0], (gram.nz_row, gram.nz_level)), shape=(m, l1))
    xs = slice(qr, qr + p)
    starts = np.concatenate([[0], np.cumsum([t.q for t in design.terms[1:]])]).astype(int)
    rows = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    B = [np.asarray(AR1[xs].T.toarray())] + [A[r, xs] for r in rows]
    ze = [np.asarray(AR1[m - 1].toarray()).ravel()] + [A[r, m - 1] for r in rows]
    cross = [AR1] + [A[r] for r in rows]  # row blocks: Z_1'R (sparse, transposed), Z_j'R
    return cross, B, ze, A[xs, xs]


def moment_theta(design: ModelDesign, gram: GramBlocks) -> np.ndarray | None:
    """MINQUE(0) estimate of theta (see the module docstring), or None where it does not
    apply (a term that is not scalar) or the moment equations are singular.

    Parameters
    ----------
    design : ModelDesign
        The model design; every random-effect term has one coefficient.
    gram : GramBlocks
        Its Gram blocks (:func:`hierlm.objective.gram.compute_gram`).

    Returns
    -------
    ndarray or None
        ``theta``, one entry per term, all ``>= 0``.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)",
    ...                         hierlm.load_sleepstudy())
    >>> moment_theta(d, compute_gram(d)).round(3).tolist()
    [1.019, 0.24]
    """
    terms = design.terms
    if not terms or any(t.p != 1 for t in terms) or gram.A11.shape[1] != 1:
        return None
    K, p = len(terms), gram.p
    cross, B, ze, G = _blocks(design, gram)
    Ginv = np.linalg.pinv(G) if p else np.zeros((0, 0))
    BB = [b.T @ b for b in B]  # B_i'B_i, p x p
    starts = np.concatenate([[0], np.cumsum([t.q for t in terms[1:]])]).astype(int)
    H = np.zeros((K + 1, K + 1))
    u = np.zeros(K + 1)
    a11 = gram.A11[:, 0, 0]
    # My = M(y - X a) for any shift a: project out X, whatever a the blocks were centred by
    Xy = gram.A_RR[gram.q_rest:gram.q_rest + p, -1]
    GXy = Ginv @ Xy
    for i in range(K):
        e_i = ze[i] - B[i] @ GXy if p else ze[i]
        u[i] = float(e_i @ e_i)
        trC = float(a11.sum()) if i == 0 else float(np.trace(cross[i][:, starts[i - 1]:starts[i]]))
        H[i, K] = H[K, i] = trC - float(np.sum(Ginv * BB[i]))
        for j in range(i, K):
            if j == 0:
                C2 = float(a11 @ a11)
                BCB = B[0].T @ (a11[:, None] * B[0])
            elif i == 0:  # Z_1'Z_j: the rows of A_R1 in term j's range, transposed
                Cj = cross[0][starts[j - 1]:starts[j]]
                C2 = float(Cj.multiply(Cj).sum())
                BCB = np.asarray(Cj @ B[0]).T @ B[j]
            else:
                Cij = cross[i][:, starts[j - 1]:starts[j]]
                C2 = float(np.sum(Cij * Cij))
                BCB = B[i].T @ Cij @ B[j]
            H[i, j] = H[j, i] = (C2 - 2.0 * float(np.sum(Ginv * BCB.T))
                                 + float(np.sum((Ginv @ BB[i]) * (Ginv @ BB[j]).T)))
    H[K, K] = gram.n - (np.linalg.matrix_rank(G) if p else 0)
    u[K] = float(gram.A_RR[-1, -1]) - (float(Xy @ GXy) if p else 0.0)
    if not np.all(np.isfinite(H)) or np.linalg.cond(H) > 1e12:
        return None  # terms the moments cannot tell apart (e.g. the same Z twice)
    s = np.linalg.solve(H, u)
    if not np.all(np.isfinite(s)) or not s[K] > 0:
        return None
    return np.sqrt(np.maximum(s[:K], 0.0) / s[K])


def default_start(objective: ProfiledObjective, scale: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The start of the descent when the caller gives none: lme4's identity templates,
    or, for more than :data:`MOMENT_START_MIN_NOBS` rows and scalar terms only, the
    moment estimate of :mod:`hierlm.estimate.moment_start` (each entry at least
    :data:`MIN_START_PHI` in units of ``phi``).  Also returns the units L-BFGS-B runs
    in, ``phi = u * units``: ones from the identity start; from a moment start ``phi_j``,
    ``phi_j / sqrt(q_j)`` with ``q_j`` the term's levels (the criterion's curvature in
    ``theta_j`` near its optimum is about ``2 q_j / theta_j^2`` when the levels are well
    determined, so these units make the Hessian about ``2 I``).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate.optimize import theta_scale
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> start, units = default_start(compile_objective(d), theta_scale(d))
    >>> start.round(4).tolist(), units.tolist()
    ([1.0, 0.0, 0.1873], [1.0, 1.0, 1.0])
    """
    design = objective.design
    if design.nobs > MOMENT_START_MIN_NOBS:
        moment = moment_theta(design, objective.gram)
        if moment is not None:
            phi = np.maximum(moment / scale, MIN_START_PHI)
            levels = np.array([t.n_levels for t in design.terms], dtype=float)
            return phi * scale, phi / np.sqrt(levels)
    return theta_start(design) * scale, np.ones(len(scale))
