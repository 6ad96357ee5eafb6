"""Gram blocks as sums over chunks of rows.

Every Gram block is a sum over observations: ``Z1'Z1``, ``R'Z1`` and ``R'R`` with
``R = [Z_2 ... Z_K, X, y]``.  :func:`chunk_products` computes one chunk's share (the
chunk coded with the whole data's levels, :mod:`hierlm.design.chunked`);
:meth:`GramSums.merge` adds two shares, so the chunks may be reduced in any order or
tree; :func:`finish_gram` turns the total into :class:`~hierlm.objective.gram.GramBlocks`.

The chunks carry ``y' = y - c`` (``c`` the response mean when ``X`` has an intercept,
so that ``1`` lies in the span of ``X`` and the fit is unchanged; else ``c = 0``).
The Gram blocks want ``y`` centred on its least-squares fit, ``y_c = y' - X a`` with
``X'X a = X'y'``; that shift is exact algebra on the sums::

    C'y_c     = C'y' - (C'X) a                  for every column block C,
    y_c'y_c   = y'y' - 2 a'X'y' + a'X'X a.

``a`` comes from ``R_X``, the triangular factor of ``X`` (``X'X = R_X'R_X``), which is
accumulated stably chunk by chunk as ``R <- qr([R; X_chunk])`` (TSQR).  ``R_X`` also
decides which columns of ``X`` are linear combinations of earlier ones (R's ``qr``
rule, as in memory); each term's own factor checks its model matrix likewise.

With prior weights ``w`` and an offset ``o`` (columns of the data) the products are
those of the working problem of :mod:`hierlm.design.weights`: each row of ``[Z X y']``
is multiplied by ``sqrt(w)`` after subtracting ``o`` from ``y'``, and ``sum(log w)`` is
summed alongside.  ``a`` then solves the weighted least-squares problem, through the
triangular factor ``R_W`` of ``W^{1/2} X`` (accumulated like ``R_X``); ``R_X`` of the
unweighted ``X`` still decides the rank, as in memory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.design import matrices as _m
from hierlm.design.chunked import ChunkCoding, ChunkedDesign
from hierlm.design.terms import RandomTerm
from hierlm.errors import DataError
from hierlm.objective.gram import GramBlocks, gram_from_products, term_matrix

__all__ = ["GramSums", "chunk_products", "finish_gram"]


def _tsqr(R: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Triangular factor of ``[R; X]`` (square, ``p x p``)."""
    p = X.shape[1]
    stacked = np.vstack([R, X])
    if stacked.shape[0] == 0 or p == 0:
        return np.zeros((0, p)) if stacked.shape[0] == 0 else np.zeros((0, 0))
    r = sla.qr(stacked, mode="r")[0][:p]
    if r.shape[0] < p:  # fewer rows than columns so far
        r = np.vstack([r, np.zeros((p - r.shape[0], p))])
    return r


@dataclass(frozen=True, eq=False)
class GramSums:
    """The Gram products of some chunks (see the module docstring).

    Attributes
    ----------
    n : int
        Rows summed.
    A11 : ndarray, shape (l1, p1, p1)
        ``Z1'Z1`` blocks.
    AR1, ARR : scipy.sparse.csr_matrix
        ``R'Z1`` and ``R'R`` with every column of ``X`` (before rank-deficient ones are
        dropped) and ``y' = y - c``.
    R_X : ndarray
        Triangular factor of ``X``; ``R_terms`` those of each term's model matrix.
    sq_terms : tuple of ndarray
        Sum of squares of each term's columns.
    R_W : ndarray or None
        Triangular factor of ``W^{1/2} X`` (None without prior weights).
    sum_log_w : float
        ``sum(log w)`` (0 without prior weights).
    """

    n: int
    A11: np.ndarray
    AR1: sp.csr_matrix
    ARR: sp.csr_matrix
    R_X: np.ndarray
    R_terms: tuple[np.ndarray, ...]
    sq_terms: tuple[np.ndarray, ...]
    R_W: np.ndarray | None = None
    sum_log_w: float = 0.0

    def merge(self, other: GramSums) -> GramSums:
        """The sums of both sets of chunks."""
        return GramSums(
            n=self.n + other.n, A11=self.A11 + other.A11, AR1=self.AR1 + other.AR1,
            ARR=self.ARR + other.ARR, R_X=_tsqr(self.R_X, other.R_X),
            R_terms=tuple(_tsqr(a, b) for a, b in zip(self.R_terms, other.R_terms,
                                                      strict=True)),
            sq_terms=tuple(a + b for a, b in zip(self.sq_terms, other.sq_terms, strict=True)),
            R_W=None if self.R_W is None or other.R_W is None else _tsqr(self.R_W, other.R_W),
            sum_log_w=self.sum_log_w + other.sum_log_w)


def chunk_products(frame: pd.DataFrame, coding: ChunkCoding) -> GramSums:
    """One chunk's share of the Gram blocks (its complete rows, coded with ``coding``).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.chunked import finish_levels, plan_chunks, scan_chunk
    >>> data = hierlm.load_sleepstudy()
    >>> plan = plan_chunks("Reaction ~ Days + (Days | Subject)")
    >>> coding = finish_levels(scan_chunk(data, plan), plan)
    >>> sums = chunk_products(data.iloc[:90], coding).merge(chunk_products(data.iloc[90:], coding))
    >>> sums.n, sums.A11.shape, sums.ARR.shape
    (180, (18, 2, 2), (3, 3))
    """
    y, rows = coding.code(frame)
    weighted = coding.plan.weights is not None
    sw = np.sqrt(rows.weights) if weighted else None
    y = y - rows.offset if coding.plan.offset is not None else y
    terms = [dataclasses.replace(t, codes=c, X=zx if sw is None else zx * sw[:, None])
             for t, c, zx in zip(coding.terms, rows.codes, rows.Z_X, strict=True)]
    X = rows.X if sw is None else rows.X * sw[:, None]
    y = y if sw is None else y * sw
    first = terms[0]
    p1 = first.p
    A11 = np.zeros((first.n_levels, p1, p1))
    for a in range(p1):
        for b in range(a, p1):
            v = np.bincount(first.codes, weights=first.X[:, a] * first.X[:, b],
                            minlength=first.n_levels)
            A11[:, a, b] = v
            A11[:, b, a] = v
    R = sp.hstack([*(term_matrix(t) for t in terms[1:]),
                   sp.csr_matrix(np.column_stack([X, y]))], format="csr")
    p = len(coding.fixef_names)
    return GramSums(
        n=len(y), A11=A11, AR1=sp.csr_matrix(R.T @ term_matrix(first)),
        ARR=sp.csr_matrix(R.T @ R), R_X=_tsqr(np.zeros((0, p)), rows.X),
        R_terms=tuple(_tsqr(np.zeros((0, zx.shape[1])), zx) for zx in rows.Z_X),
        sq_terms=tuple(np.square(zx).sum(axis=0) for zx in rows.Z_X),
        R_W=_tsqr(np.zeros((0, p)), X) if weighted else None,
        sum_log_w=float(np.log(rows.weights).sum()) if weighted else 0.0)


def _check_terms(sums: GramSums, terms: tuple[RandomTerm, ...], n: int) -> None:
    for t, R in zip(terms, sums.R_terms, strict=True):
        if t.n_levels >= n:
            raise DataError(f"grouping factor '{t.group}' has {t.n_levels} levels for {n} "
                            f"observations; it must have fewer levels than observations")
        dependent = _m._dependent_columns(R)
        if dependent:
            raise DataError(f"random term (... | {t.group}) has a rank-deficient model "
                            f"matrix: column(s) {', '.join(t.coef_names[j] for j in dependent)} "
                            f"are linear combinations of the others; remove them from the term")


def finish_gram(sums: GramSums, coding: ChunkCoding) -> tuple[ChunkedDesign, GramBlocks]:
    """The design and Gram blocks of the whole data from the summed chunk products.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.chunked import finish_levels, plan_chunks, scan_chunk
    >>> from hierlm.objective.gram import compute_gram
    >>> data = hierlm.load_sleepstudy()
    >>> plan = plan_chunks("Reaction ~ Days + (Days | Subject)")
    >>> coding = finish_levels(scan_chunk(data, plan), plan)
    >>> design, gram = finish_gram(chunk_products(data, coding), coding)
    >>> whole = compute_gram(hierlm.build_design("Reaction ~ Days + (Days | Subject)", data))
    >>> bool(np.allclose(gram.A_RR, whole.A_RR)), bool(np.allclose(gram.nz_val, whole.nz_val))
    (True, True)
    """
    n = sums.n
    terms = coding.terms
    _check_terms(sums, terms, n)
    names = coding.fixef_names
    R_X, names_kept = _m._drop_rank_deficient(sums.R_X, names)  # warns as in memory
    keep = [names.index(c) for c in names_kept]
    q_rest = sum(t.q for t in terms[1:])
    p_all = len(names)
    idx = np.r_[np.arange(q_rest), q_rest + np.asarray(keep, dtype=np.int64), q_rest + p_all]
    A = np.asarray(sums.ARR[idx][:, idx].toarray())
    AR1 = sp.csr_matrix(sums.AR1[idx])
    p = len(keep)
    xs = slice(q_rest, q_rest + p)
    yi = q_rest + p
    if p:
        R_a = R_X if sums.R_W is None else sums.R_W[:, keep]
        R = sla.qr(R_a, mode="r")[0][:p] if R_a.shape[0] else np.zeros((p, p))
        a = sla.solve_triangular(R, sla.solve_triangular(R, A[xs, yi], trans="T"))
        Cy = A[:yi, yi] - A[:yi, xs] @ a
        yy = A[yi, yi] - 2.0 * a @ A[xs, yi] + a @ A[xs, xs] @ a
        A[:yi, yi] = Cy
        A[yi, :yi] = Cy
        A[yi, yi] = yy
        # y's row is the last: replaced whole, without a row-wise (LIL) copy of R'Z1,
        # which for ratings data has about one entry per rating
        y_row = AR1[yi].toarray() - a @ AR1[xs].toarray()
        AR1 = sp.vstack([AR1[:yi], sp.csr_matrix(y_row)], format="csr")
    else:
        a = np.zeros(0)
    lo, hi = coding.y_range
    if hi == lo or A[yi, yi] <= 0.0 or np.sqrt(A[yi, yi]) <= 1e-13 * max(abs(lo), abs(hi)):
        what = "constant" if hi == lo else "an exact linear function of the fixed effects"
        raise DataError(f"response '{coding.plan.spec.response}' is {what}; its residual "
                        f"variance is zero and the model cannot be fitted")
    offset = a.copy()
    if "(Intercept)" in names_kept:
        offset[names_kept.index("(Intercept)")] += coding.y_shift
    terms_n = tuple(dataclasses.replace(t, col_rms=np.sqrt(sq / n))
                    for t, sq in zip(terms, sums.sq_terms, strict=True))
    spec = coding.plan.spec
    design = ChunkedDesign(formula=spec.formula, response=spec.response, y=np.zeros(0),
                           X=np.zeros((0, p)), fixef_names=names_kept, terms=terms_n,
                           n_dropped=coding.n_dropped, n_obs=n,
                           coder=dataclasses.replace(coding.coder, fixef_names=names_kept))
    return design, gram_from_products(design, sums.A11, AR1, A, offset,
                                      sums.sum_log_w)
