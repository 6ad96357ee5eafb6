"""theta: the parameters of the relative covariance factor Lambda_theta.

Term ``i`` has a lower-triangular ``p_i x p_i`` template ``T_i``; ``Lambda_theta`` holds
one copy of ``T_i`` per level.  The random effects are ``b = Lambda_theta u`` with
``u ~ N(0, sigma^2 I)``, so term ``i``'s covariance is ``Sigma_i = sigma^2 T_i T_i'``.
theta packs each template's lower triangle column by column, terms in design
order; the diagonal entries have lower bound 0 (lme4's ``lower``), the others
are unbounded.  lme4 starts at the identity templates.
"""

from __future__ import annotations

import functools
import math

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
    rows, cols = tril_pairs(p)
    return np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)


@functools.cache
def tril_pairs(p: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """:func:`tril_colmajor` as tuples of Python ints (made once per size).

    Examples
    --------
    >>> tril_pairs(2)
    ((0, 1, 1), (0, 0, 1))
    """
    return (tuple(i for j in range(p) for i in range(j, p)),
            tuple(j for j in range(p) for _ in range(j, p)))


@functools.cache
def _lower_part(p: int) -> np.ndarray:
    """One ``p``-coefficient term's slice of :func:`theta_lower` (read-only)."""
    rows, cols = tril_pairs(p)
    out = np.array([0.0 if r == c else -np.inf for r, c in zip(rows, cols, strict=True)])
    out.setflags(write=False)
    return out


def theta_lower(design: ModelDesign) -> np.ndarray:
    """Lower bounds of theta: 0 for template diagonals, ``-inf`` elsewhere.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> theta_lower(d).tolist()
    [0.0, -inf, 0.0]
    """
    # (each size's slice made once: the list comprehensions and np.where cost 5-10 us a
    # term between fits)
    return np.concatenate([_lower_part(term.p) for term in design.terms])


def theta_start(design: ModelDesign) -> np.ndarray:
    """lme4's starting value: identity templates.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> theta_start(d).tolist()
    [1.0, 0.0, 1.0]
    """
    return np.concatenate([_start_part(term.p) for term in design.terms])


@functools.cache
def _start_part(p: int) -> np.ndarray:
    """One ``p``-coefficient term's slice of :func:`theta_start` (read-only)."""
    out = np.where(_lower_part(p) == 0.0, 1.0, 0.0)
    out.setflags(write=False)
    return out


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
    L = np.zeros(S.shape)
    A = np.array(S, dtype=float)
    # (the arrays' own methods and the pivots as Python floats: the same numbers, NaN
    # included, without the wrappers of np.diag, np.max and np.sqrt)
    scale = max(float(np.abs(S.diagonal()).max(initial=0.0)), 1e-300)
    for j in range(p):
        d = float(A[j, j])
        if d < -1e-10 * scale:
            raise ValueError("the correlations do not form a positive semi-definite matrix")
        if d <= 1e-14 * scale:
            continue
        col = A[j:, j] / math.sqrt(d)
        L[j:, j] = col
        A[j:, j:] -= np.multiply.outer(col, col)
    return L
