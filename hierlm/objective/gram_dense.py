"""The Gram blocks of a small model from one dense product.

For a model with few rows and columns the blocks of :class:`GramBlocks` are read off
the dense ``N x N`` Gram matrix of the working design (``N = q + p + 1``)::

    D = [Z X y - X a]  (n x N, rows scaled by sqrt(w)),   A = D'D,
    A11[k] = A[k p1:(k+1) p1, k p1:(k+1) p1],   A_R1 = A[q1:, :q1],   A_RR = A[q1:, q1:],

with the nonzero ``(row, level)`` pairs of ``A_R1`` listed by level and then by row and
``row_order`` their stable sort by row: the layout that :func:`hierlm.objective.gram.
compute_gram` builds from sparse products (the same numbers up to the order of the
sums; a pair whose block sums to exactly zero is left out here, which changes nothing
that is computed from the blocks).  ``D`` is kept per design: the residual-based
estimates of small models (:mod:`hierlm.estimate.stable_dense`) factor ``[D Lambda;
I 0]`` from it.

Why: the sparse route (CSR/CSC conversions, ``hstack``, two sparse products and the
pattern's sorts) cost 0.39 ms for sleepstudy and 0.46 ms for penicillin (one BLAS
thread, 2 shared cores).  Here, best of 3 x 200 calls on each of the 24 designs of
``python -m benchmarks.peers``: median 0.48 -> 0.13 ms (sleepstudy 0.41 -> 0.11 ms,
penicillin 0.45 -> 0.25 ms, dyestuff 0.39 -> 0.08 ms); ``chickweight`` (``n N^2`` =
6.9e6) keeps the sparse route.
Later, the same blocks bit for bit (values, dtypes and contiguity, so the same compiled
code): ``A11`` through a strided view of ``A``'s diagonal blocks, the level and row
pointers by ``cumsum`` into their arrays, no ``astype`` copies of int64 results, and a
one-term model's ``Lambda`` rest entries without the per-term loop.  The mean thread
CPU time of this function within 500 warm sleepstudy REML fits (after the warm-up of
``python -m benchmarks.fit_parts --warm``), old and new code alternately three times
(load 1-2): 215 / 219 / 258 -> 170 / 187 / 234 us.
"""

from __future__ import annotations

import weakref

import numpy as np

from hierlm.design.terms import ModelDesign
from hierlm.design.weights import sum_log_weights, working_design
from hierlm.objective.gram import GramBlocks, _lambda_rest_entries

#: Largest ``n N^2`` (rows times squared columns of ``[Z X y]``) computed densely here.
MAX_WORK = 3_000_000
#: Largest ``N`` (as :data:`hierlm.objective.numpy_link.MAX_SIZE`).
MAX_SIZE = 120

_DATA: weakref.WeakKeyDictionary[ModelDesign, np.ndarray] = weakref.WeakKeyDictionary()


def dense_data(design: ModelDesign) -> np.ndarray | None:
    """``[Z X y - X a]`` of the working design where :func:`dense_gram` built it, else None.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> _ = dense_gram(d)
    >>> dense_data(d).shape
    (180, 39)
    """
    return _DATA.get(design)


def dense_gram(design: ModelDesign) -> GramBlocks | None:
    """The Gram blocks of a small in-memory design (module docstring), or None where
    the design is too large for this (``N > MAX_SIZE`` or ``n N^2 > MAX_WORK``).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> g, h = dense_gram(d), compute_gram(d)
    >>> bool(np.allclose(g.A11, h.A11)), bool(np.allclose(g.A_RR, h.A_RR))
    (True, True)
    """
    n = design.nobs
    q = sum(t.q for t in design.terms)
    N = q + design.p + 1
    if len(design.y) != n or N > MAX_SIZE or n * N * N > MAX_WORK:
        return None
    sum_log_w = sum_log_weights(design)
    wd = working_design(design)  # rows scaled by sqrt(w), offset subtracted
    D = np.zeros((n, N))
    rows = np.arange(n)[:, None]
    off = 0
    for t in wd.terms:
        D[rows, off + t.codes[:, None] * t.p + np.arange(t.p)] = t.X
        off += t.q
    if wd.p:
        beta_offset = np.linalg.lstsq(wd.X, wd.y, rcond=None)[0]
        D[:, q:q + wd.p] = wd.X
        D[:, -1] = wd.y - wd.X @ beta_offset
    else:
        beta_offset = np.zeros(0)
        D[:, -1] = wd.y
    D.setflags(write=False)
    A = D.T @ D
    first = wd.terms[0]
    l1, p1 = first.n_levels, first.p
    q1 = l1 * p1
    m = N - q1
    # the first term's l1 diagonal blocks of A, through one strided view of them (the
    # same entries as a fancy index of the blocks, without its index arrays)
    A11 = np.ndarray((l1, p1, p1), buffer=A, strides=((N + 1) * p1 * 8, N * 8, 8)).copy()
    AR1 = A[q1:, :q1]
    AR1_blocks = AR1.reshape(m, l1, p1)
    # (arrays' own methods, int64 results kept without further copies: NumPy's function
    # wrappers and astype copies cost 20-40 us a design between fits; nonzero's arrays
    # are strided views of one array, copied as the compiled code's contiguous type)
    nz_level, nz_row = (AR1_blocks != 0.0).any(axis=2).T.nonzero()  # by level, then row
    nz_level = np.ascontiguousarray(nz_level, dtype=np.int64)
    nz_row = np.ascontiguousarray(nz_row, dtype=np.int64)
    nz_val = AR1_blocks[nz_row, nz_level]
    counts = np.bincount(nz_level, minlength=l1).astype(np.int64, copy=False)
    level_ptr = np.zeros(l1 + 1, dtype=np.int64)
    counts.cumsum(out=level_ptr[1:])
    row_order = nz_row.argsort(kind="stable").astype(np.int64, copy=False)
    row_ptr = np.zeros(m + 1, dtype=np.int64)
    np.bincount(nz_row, minlength=m).cumsum(out=row_ptr[1:])
    # the sparse update or the dense product, whichever costs fewer flops (compute_gram's rule)
    dense_r1 = int(counts @ counts) * p1 > 2 * m * m * l1
    lr, lc, lt = _lambda_rest_entries(wd)
    _DATA[design] = D
    return GramBlocks(
        A11=A11, nz_row=nz_row, nz_level=nz_level, nz_val=nz_val, level_ptr=level_ptr,
        row_order=row_order, row_ptr=row_ptr,
        A_R1_dense=np.ascontiguousarray(AR1) if dense_r1 else np.zeros((0, 0)),
        A_RR=np.ascontiguousarray(A[q1:, q1:]), lam_row=lr, lam_col=lc, lam_theta=lt,
        n=wd.nobs, p=wd.p, q_rest=q - q1, beta_offset=beta_offset, sum_log_w=sum_log_w)
