"""theta: the parameters of the relative covariance factor Lambda_theta.

Term ``i`` has a lower-triangular ``p_i x p_i`` template ``T_i``; ``Lambda_theta`` holds
one copy of ``T_i`` per level.  The random effects are ``b = Lambda_theta u`` with
``u ~ N(0, sigma^2 I)``, so term ``i``'s covariance is ``Sigma_i = sigma^2 T_i T_i'``.
theta packs each template's lower triangle column by column, terms in design
order; the diagonal entries have lower bound 0 (lme4's ``lower``), the others
are unbounded.  lme4 starts at the identity templates.
"""

from __future__ import annotations

import numpy as np

from hierlm.design.terms import ModelDesign


def tril_colmajor(p: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a ``p x p`` lower triangle, column by column.

    Examples
    --------
    >>> rows, cols = tril_colmajor(2)
    >>> rows.tolist(), cols.tolist()
    ([0, 1, 1], [0, 0, 1])
    """
    rows = [i for j in range(p) for i in range(j, p)]
    cols = [j for j in range(p) for _ in range(j, p)]
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


def theta_lower(design: ModelDesign) -> np.ndarray:
    """Lower bounds of theta: 0 for template diagonals, ``-inf`` elsewhere.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> theta_lower(d).tolist()
    [0.0, -inf, 0.0]
    """
    parts = []
    for term in design.terms:
        rows, cols = tril_colmajor(term.p)
        parts.append(np.where(rows == cols, 0.0, -np.inf))
    return np.concatenate(parts)


def theta_start(design: ModelDesign) -> np.ndarray:
    """lme4's starting value: identity templates.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> theta_start(d).tolist()
    [1.0, 0.0, 1.0]
    """
    return np.where(theta_lower(design) == 0.0, 1.0, 0.0)


def templates(design: ModelDesign, theta: np.ndarray) -> list[np.ndarray]:
    """Unpack theta into the lower-triangular template ``T_i`` of each term.

    ``theta`` may carry leading dimensions (e.g. posterior draws, ``(D, n_theta)``);
    each template then has them too (``(D, p_i, p_i)``).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> templates(d, np.array([1.0, 0.5, 2.0]))[0].tolist()
    [[1.0, 0.0], [0.5, 2.0]]
    >>> templates(d, np.array([[1.0, 0.5, 2.0], [3.0, 0.0, 1.0]]))[0].shape
    (2, 2, 2)
    """
    theta = np.asarray(theta, dtype=float)
    if theta.ndim == 0 or theta.shape[-1] != design.n_theta:
        raise ValueError(f"theta must have length {design.n_theta}, got shape {theta.shape}")
    lead = theta.shape[:-1]
    out = []
    start = 0
    for term in design.terms:
        rows, cols = tril_colmajor(term.p)
        T = np.zeros((*lead, term.p, term.p))
        T[..., rows, cols] = theta[..., start:start + term.n_theta]
        out.append(T)
        start += term.n_theta
    return out


def theta_from_templates(design: ModelDesign, Ts: list[np.ndarray]) -> np.ndarray:
    """Pack templates into theta (inverse of :func:`templates`).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> theta_from_templates(d, [np.array([[1.0, 0.0], [0.5, 2.0]])]).tolist()
    [1.0, 0.5, 2.0]
    """
    parts = []
    for term, T in zip(design.terms, Ts, strict=True):
        rows, cols = tril_colmajor(term.p)
        parts.append(np.asarray(T)[rows, cols])
    return np.concatenate(parts)


def psd_cholesky(S: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero columns where singular).

    numpy's Cholesky refuses singular matrices; this column-by-column outer-product
    form (Golub & Van Loan, Alg. 4.2.1) leaves a column at zero when its pivot is.

    Examples
    --------
    >>> psd_cholesky(np.array([[4.0, 2.0], [2.0, 1.0]])).tolist()
    [[2.0, 0.0], [1.0, 0.0]]
    """
    p = S.shape[0]
    L = np.zeros_like(S)
    A = S.copy()
    scale = max(float(np.max(np.abs(np.diag(S)), initial=0.0)), 1e-300)
    for j in range(p):
        d = A[j, j]
        if d < -1e-10 * scale:
            raise ValueError("the correlations do not form a positive semi-definite matrix")
        if d <= 1e-14 * scale:
            continue
        L[j:, j] = A[j:, j] / np.sqrt(d)
        A[j:, j:] -= np.outer(L[j:, j], L[j:, j])
    return L
