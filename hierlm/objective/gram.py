"""The Gram matrix of ``[Z X y]``, computed once per model and stored in blocks.

With prior weights and an offset the blocks are those of the working problem,
``[Z X y-o]' W [Z X y-o]`` (:mod:`hierlm.design.weights`).

Rows and columns are split as MixedModels.jl splits them:

* block 1 is the first random-effects term (the grouping factor with the most
  levels).  Each observation belongs to one level, so ``A11 = Z1'Z1`` is block
  diagonal: ``l1`` blocks of size ``p1 x p1`` (``A11``, shape ``(l1, p1, p1)``);
* the *rest* ``R = [Z_2 ... Z_K, X, y]`` has ``m = q_2 + ... + q_K + p + 1`` columns;
  ``A_RR = R'R`` is stored dense (it fills in when factored anyway);
* ``A_R1 = R'Z1`` is sparse.  It is stored as a list of nonzero ``(row, level)``
  pairs sorted by level (``level_ptr`` delimits each level's run), each with its
  ``p1``-vector ``A_R1[row, block(level)]``.

The Schur complement of block 1 needs ``U = A_R1 W A_R1'`` for a block-diagonal
``W(theta)``; entry ``(i, j)`` sums over the levels ``k`` in which both rows ``i`` and
``j`` are nonzero, so evaluating ``U`` costs ``sum_k nnz_k^2`` (see
:mod:`hierlm.objective.schur_update`), independent of ``n``.  Building everything
here is one pass of sparse products over the data: linear in ``n``.

``y`` enters centred on its least-squares fit on ``X``: the Gram blocks are those of
``[Z X y - X a]`` with ``a = argmin ||y - X a||``.  The profiled criterion is
invariant to that shift (``beta`` absorbs it), and it keeps the Gram products at
the scale of the residuals: ``y = 1e6 + O(1)`` would otherwise cost about
``eps * 1e12`` of the final ``r^2``.  Whatever reads ``beta`` off the factor adds
``a`` (``beta_offset``) back.

The working design's ``Z_i`` are built once per design (:func:`working_term_matrices`):
the residual-based estimates (:mod:`hierlm.estimate.stable_pls`) use the same
matrices.  The triplets of ``A_R1`` are read off the CSR product's arrays rather than
through a COO matrix (the same entries; 0.05-0.1 ms of a small design's 0.4-0.5 ms).
"""

from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hierlm.covariance.term_layout import TermLayout
from hierlm.design.terms import ModelDesign, RandomTerm
from hierlm.design.weights import sum_log_weights, working_design


@dataclass(frozen=True, eq=False)
class GramBlocks:
    """Blocks of ``[Z X y]'[Z X y]`` in the layout the blocked Cholesky uses.

    Attributes
    ----------
    A11 : ndarray, shape (l1, p1, p1)
        Diagonal blocks of ``Z1'Z1``.
    nz_row, nz_level : ndarray of int, shape (nnz,)
        Row of ``A_R1`` (index into the rest) and level of term 1 of each nonzero block.
    nz_val : ndarray, shape (nnz, p1)
        ``A_R1[nz_row, block(nz_level)]``.
    level_ptr : ndarray of int, shape (l1 + 1,)
        The nonzeros of level ``k`` are ``level_ptr[k]:level_ptr[k + 1]``.
    row_order, row_ptr : ndarray of int, shapes (nnz,), (m + 1,)
        The nonzeros in row ``r`` of ``A_R1`` are ``row_order[row_ptr[r]:row_ptr[r + 1]]``.
    A_R1_dense : ndarray, shape (m, l1 * p1) or (0, 0)
        Dense ``A_R1``, used instead of the sparse update when that is cheaper.
    A_RR : ndarray, shape (m, m)
        ``R'R``.
    lam_row, lam_col, lam_theta : ndarray of int
        Entries of the relative factor of the rest, ``Lambda_R``: position and index into
        ``theta_ext = [theta, 1]`` (the ``X`` and ``y`` rows carry a fixed 1).
    n, p, q_rest : int
        Observations, fixed-effect columns, random effects outside term 1.
    beta_offset : ndarray, shape (p,)
        ``a``, the least-squares coefficients of ``y`` on ``X``; the blocks are those of
        ``y - X a``, so ``beta = beta_offset + (beta read off the factor)``.
    sum_log_w : float
        ``sum(log w)`` of the prior weights (0 without): the criteria of the weighted
        model are the working problem's minus this (:mod:`hierlm.design.weights`).
    """

    A11: np.ndarray
    nz_row: np.ndarray
    nz_level: np.ndarray
    nz_val: np.ndarray
    level_ptr: np.ndarray
    row_order: np.ndarray
    row_ptr: np.ndarray
    A_R1_dense: np.ndarray
    A_RR: np.ndarray
    lam_row: np.ndarray
    lam_col: np.ndarray
    lam_theta: np.ndarray
    n: int
    p: int
    q_rest: int
    beta_offset: np.ndarray
    sum_log_w: float = 0.0

    @property
    def m(self) -> int:
        """Size of the rest block ``[Z_2 ... Z_K, X, y]``."""
        return int(self.A_RR.shape[0])

    @property
    def dense_r1(self) -> bool:
        return self.A_R1_dense.size > 0


def term_matrix(term: RandomTerm) -> sp.csr_matrix:
    """The sparse ``n x (l p)`` matrix ``Z_i`` of one term (column ``level * p + coef``)."""
    n, p = term.X.shape
    cols = (term.codes[:, None] * p + np.arange(p)[None, :]).ravel()
    # built as CSR directly: each row holds p entries in increasing columns, so this is
    # the matrix (and the storage order) that the triplet form converts to, without
    # the conversion
    return sp.csr_matrix((term.X.ravel(), cols, np.arange(0, n * p + 1, p)), shape=(n, term.q))


#: Per design: its working design's ``Z_i`` (the Gram blocks and the residual-based
#: estimates of one fit both need them; the matrices do not refer to the design).
_WORKING_Z: weakref.WeakKeyDictionary[ModelDesign, tuple[sp.csr_matrix, ...]]
_WORKING_Z = weakref.WeakKeyDictionary()


def working_term_matrices(design: ModelDesign) -> tuple[sp.csr_matrix, ...]:
    """:func:`term_matrix` of each term of ``working_design(design)``, built once per
    design (callers must not change them).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> Z = working_term_matrices(d)
    >>> Z[0].shape, working_term_matrices(d) is Z
    ((180, 36), True)
    """
    got = _WORKING_Z.get(design)
    if got is None:
        got = tuple(term_matrix(t) for t in working_design(design).terms)
        _WORKING_Z[design] = got
    return got


def theta_offsets(design: ModelDesign) -> np.ndarray:
    """Start of each term's slice of theta (length ``K + 1``)."""
    return np.concatenate([[0], np.cumsum([t.n_theta for t in design.terms])]).astype(np.int64)


def _lambda_rest_entries(design: ModelDesign) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of ``Lambda_R`` entries and their theta indices (lower triangles, by column)."""
    # (theta_offsets as Python ints: the same offsets, without NumPy's small arrays)
    offs = list(itertools.accumulate([t.n_theta for t in design.terms], initial=0))
    if len(design.terms) == 1:  # the unit entries of [X y] alone (0.015 ms as below)
        extra = np.arange(design.p + 1, dtype=np.int64)
        return extra, extra.copy(), np.full(design.p + 1, offs[-1], dtype=np.int64)
    rows, cols, th = [], [], []
    start = 0
    for k, term in enumerate(design.terms[1:], start=1):
        p, nl = term.p, term.n_levels
        if p == 1:  # a scalar term: its levels' diagonal (the same entries as below)
            diagonal = np.arange(start, start + nl, dtype=np.int64)
            rows.append(diagonal)
            cols.append(diagonal)
            th.append(np.full(nl, offs[k], dtype=np.int64))
            start += term.q
            continue
        a_idx, b_idx = TermLayout(p).template_index()
        base = start + np.arange(nl)[:, None] * p
        rows.append((base + a_idx[None, :]).ravel())
        cols.append((base + b_idx[None, :]).ravel())
        th.append(np.tile(offs[k] + np.arange(len(a_idx)), nl))
        start += term.q
    extra = np.arange(start, start + design.p + 1)
    rows.append(extra)
    cols.append(extra)
    th.append(np.full(extra.shape, offs[-1]))  # theta_ext[-1] == 1
    # (concatenations of int64 arrays: int64 already, no astype copies)
    return (np.concatenate(rows).astype(np.int64, copy=False),
            np.concatenate(cols).astype(np.int64, copy=False),
            np.concatenate(th).astype(np.int64, copy=False))


def compute_gram(design: ModelDesign, dense_r1: bool | None = None) -> GramBlocks:
    """Compute the Gram blocks of a model design.

    Parameters
    ----------
    design : ModelDesign
        Output of :func:`hierlm.design.build_design`.
    dense_r1 : bool, optional
        Keep ``A_R1`` dense (True) or use the sparse update (False); by default
        whichever costs fewer flops per evaluation.

    Returns
    -------
    GramBlocks

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> g = compute_gram(d)
    >>> g.A11.shape, g.m
    ((18, 2, 2), 3)
    """
    sum_log_w = sum_log_weights(design)
    Z = working_term_matrices(design)
    design = working_design(design)  # rows scaled by sqrt(w), offset subtracted
    first = design.terms[0]
    p1 = first.p
    x1 = first.X
    A11 = np.zeros((first.n_levels, p1, p1))
    for a in range(p1):
        for b in range(a, p1):
            v = np.bincount(first.codes, weights=x1[:, a] * x1[:, b], minlength=first.n_levels)
            A11[:, a, b] = v
            A11[:, b, a] = v

    rest = Z[1:]
    if design.p:
        offset = np.linalg.lstsq(design.X, design.y, rcond=None)[0]
        y_c = design.y - design.X @ offset
    else:
        offset, y_c = np.zeros(0), design.y
    # every block as CSC: SciPy then joins them directly (the same canonical CSC matrix
    # as through triplets, in 0.3 instead of 0.6-0.9 ms for the small reference designs)
    dense_cols = sp.csc_matrix(np.column_stack([design.X, y_c]))
    R = sp.hstack([*(r.tocsc() for r in rest), dense_cols], format="csc")
    A_RR = np.asarray((R.T @ R).toarray())

    AR1 = R.T @ Z[0]
    return gram_from_products(design, A11, AR1, A_RR, offset, sum_log_w, dense_r1)


def _scalar_pattern(AR1: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, ...]:
    """``nz_row, nz_level, nz_val, level_ptr, row_order`` of ``A_R1`` for a scalar first
    term (one column per level), from SciPy's CSC and CSR forms: the canonical CSC
    matrix lists the nonzeros by level and then by row (duplicates summed), which is
    the order of the sort by ``(level, row)``; CSR of their positions lists them by row
    and then by level, which is the stable sort by row.  Two linear-time conversions
    instead of sorting the keys (1M-row crossed design: 0.16 -> 0.05 s)."""
    csc = sp.csc_matrix(AR1, dtype=np.float64)
    csc.sum_duplicates()  # canonical: sorted rows within each column, no duplicates
    level_ptr = csc.indptr.astype(np.int64)
    nz_row = csc.indices.astype(np.int64)
    nnz, l1 = len(nz_row), csc.shape[1]
    nz_level = np.repeat(np.arange(l1, dtype=np.int64), np.diff(level_ptr))
    pos = sp.csc_matrix((np.arange(nnz, dtype=np.float64), nz_row, level_ptr),
                        shape=csc.shape).tocsr()
    pos.sort_indices()
    row_order = pos.data.astype(np.int64)
    return nz_row, nz_level, csc.data.reshape(nnz, 1).copy(), level_ptr, row_order


def gram_from_products(design: ModelDesign, A11: np.ndarray, AR1: sp.spmatrix | sp.sparray,
                       A_RR: np.ndarray, beta_offset: np.ndarray, sum_log_w: float = 0.0,
                       dense_r1: bool | None = None) -> GramBlocks:
    """The :class:`GramBlocks` of a design from its products, however they were summed.

    ``A11`` is ``(l1, p1, p1)``, ``AR1 = R'Z1`` a sparse ``(m, l1 p1)`` matrix and
    ``A_RR = R'R`` dense, with ``R = [Z_2 ... Z_K, X, y - X a]`` and ``a = beta_offset``.
    :func:`compute_gram` passes the products of one in-memory design; chunked data
    (:mod:`hierlm.objective.gram_accumulate`) pass sums over chunks.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> g = compute_gram(d)
    >>> R = sp.csr_matrix(np.column_stack([d.X, d.y - d.X @ g.beta_offset]))
    >>> AR1 = R.T @ term_matrix(d.terms[0])
    >>> g2 = gram_from_products(d, g.A11, AR1, (R.T @ R).toarray(), g.beta_offset)
    >>> bool(np.allclose(g2.nz_val, g.nz_val)), bool(np.allclose(g2.A_RR, g.A_RR))
    (True, True)
    """
    first = design.terms[0]
    p1 = first.p
    if p1 == 1:
        nz_row, nz_level, nz_val, level_ptr, row_order = _scalar_pattern(AR1)
        m = AR1.shape[0]
        counts = np.diff(level_ptr)
    else:
        m = AR1.shape[0]
        if AR1.format == "csr":
            # the triplets of tocoo() (the same entries in the same order), without the
            # COO matrix's checks: 0.05-0.1 ms of a small design's 0.4 ms here
            row = np.repeat(np.arange(m), np.diff(AR1.indptr))
            col, data = AR1.indices, AR1.data
        else:
            coo = sp.coo_matrix(AR1)
            row, col, data = coo.row, coo.col, coo.data
        level = col // p1
        coef = col % p1
        key = level.astype(np.int64) * m + row
        uniq, inv = np.unique(key, return_inverse=True)
        nz_val = np.zeros((len(uniq), p1))
        np.add.at(nz_val, (inv, coef), data)
        nz_level = (uniq // m).astype(np.int64)
        nz_row = (uniq % m).astype(np.int64)
        counts = np.bincount(nz_level, minlength=first.n_levels).astype(np.int64)
        level_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        row_order = np.argsort(nz_row, kind="stable").astype(np.int64)
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(nz_row, minlength=m))]).astype(np.int64)
    if dense_r1 is None:
        # Flops per evaluation: the pair loop costs about n_pairs * p1^2 / 2, the dense
        # product A_R1 W A_R1' about m^2 * l1 * p1.  Take the cheaper.
        n_pairs = int((counts * counts).sum())
        dense_r1 = n_pairs * p1 > 2 * m * m * first.n_levels
    if not dense_r1:
        dense = np.zeros((0, 0))
    else:
        dense = np.asarray(AR1.toarray())
    lr, lc, lt = _lambda_rest_entries(design)
    q_rest = sum(t.q for t in design.terms[1:])
    return GramBlocks(
        A11=A11, nz_row=nz_row, nz_level=nz_level, nz_val=nz_val,
        level_ptr=level_ptr, row_order=row_order, row_ptr=row_ptr, A_R1_dense=dense, A_RR=A_RR,
        lam_row=lr, lam_col=lc, lam_theta=lt,
        n=design.nobs, p=design.p, q_rest=q_rest, beta_offset=beta_offset, sum_log_w=sum_log_w,
    )
