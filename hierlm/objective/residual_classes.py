"""Whitened Gram blocks for AR(1), CAR(1) and log-linear SDs at a cost independent of n.

The whitened row of observation ``i`` (:mod:`hierlm.objective.residual_gram`) is
``u_i = alpha_i m_i - beta_i m_prev(i)``, ``m`` a row of ``[Z X y]``, with

* a group's first row: ``alpha = 1 / s_i``, ``beta = 0``;
* the others: ``a = phi^gap_i``, ``alpha = 1 / (s_i sqrt(1 - a^2))``,
  ``beta = a / (s_prev sqrt(1 - a^2))``;

and ``s_i = exp(v_i' delta)``.  ``alpha`` and ``beta`` depend on the row only through
its *class*: (first or not, ``v_i``, ``v_prev``, gap).  So::

    [Z X y]' R0^-1 [Z X y] = sum_c alpha_c^2 G1_c - alpha_c beta_c (G2_c + G2_c')
                             + beta_c^2 G3_c,
    G1_c = sum_{i in c} m_i m_i',  G2_c = sum_{i in c} m_i m_prev(i)',
    G3_c = sum_{i in c} m_prev(i) m_prev(i)',

three sparse Gram matrices per class computed once.  Equally spaced AR(1) has two
classes (the issue's ``(I + phi^2 D - phi (L + L')) / (1 - phi^2)``); a ``sigma=``
factor multiplies them by its levels.  Each evaluation sums ``3 C`` sparse matrices of
the size of the Gram matrix and splits the sum into blocks: no pass over the rows.

Storage: ``D1``-``D3`` hold class ``c``'s ``G1_c``, ``G2_c + G2_c'``, ``G3_c`` on the
union sparsity pattern as row ``c`` of a ``(C, nnz)`` array, dense up to
:data:`MAX_CLASSES` classes.  Above it (real ``car1`` times, numeric ``sigma=``
columns: up to one class per row) they are SciPy sparse matrices built from the rows'
outer products directly, ``O(n w^2)`` entries for ``w`` stored entries per row of
``[Z X y]``; NUTS uses them (``storage="any"``).  REML/ML sum such models' Gram
matrices over the rows' combinations in compiled code
(:mod:`hierlm.objective.residual_rows`), as they do prior weights and compound
symmetry (whose classes, :mod:`hierlm.objective.residual_cs_classes`, NUTS uses).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.objective.gram import GramBlocks, gram_from_products, term_matrix

#: Most row classes for which the class Gram matrices are kept.
MAX_CLASSES = 64


@dataclass(frozen=True, eq=False)
class ClassGram:
    """The per-class Gram matrices of a design (module docstring)."""

    design: ModelDesign
    first: np.ndarray  # (C,) bool: a group's first row
    v_row: np.ndarray  # (C, k) v of the row
    v_prev: np.ndarray  # (C, k) v of its predecessor
    gap: np.ndarray  # (C,)
    count: np.ndarray  # (C,) rows in the class
    D1: np.ndarray | sp.csr_matrix  # (C, nnz) G1_c's entries on the union pattern
    D2: np.ndarray | sp.csr_matrix  # (C, nnz) G2_c + G2_c'
    D3: np.ndarray | sp.csr_matrix  # (C, nnz) G3_c
    layout: _Layout

    @property
    def sparse(self) -> bool:
        """Whether ``D1``-``D3`` are SciPy sparse matrices (many classes)."""
        return sp.issparse(self.D1)

    def values(self, rho: float, delta: np.ndarray) -> tuple[np.ndarray, float]:
        """The whitened Gram matrix's entries on the union pattern (at
        ``layout.entries``) and ``log|R0|`` at ``(rho, delta)``."""
        delta = np.asarray(delta, dtype=float)
        s_i = np.exp(self.v_row @ delta) if delta.size else np.ones(len(self.first))
        s_p = np.exp(self.v_prev @ delta) if delta.size else np.ones(len(self.first))
        a = np.where(self.first, 0.0, np.power(rho, self.gap))
        root = np.sqrt(1.0 - a * a)
        alpha = 1.0 / (s_i * root)
        beta = a / (s_p * root)
        c2 = np.where(self.first, 0.0, alpha * beta)
        c3 = np.where(self.first, 0.0, beta**2)
        if sp.issparse(self.D1):
            values = self.D1.T @ alpha**2 - self.D2.T @ c2 + self.D3.T @ c3
        else:
            values = alpha**2 @ self.D1 - c2 @ self.D2 + c3 @ self.D3
        logdet = float((self.count * (2.0 * np.log(s_i) + np.log(root * root))).sum())
        return values, logdet

    def gram(self, rho: float, delta: np.ndarray) -> tuple[GramBlocks, float]:
        """Gram blocks of the whitened design and ``log|R0|`` at ``(rho, delta)``."""
        values, logdet = self.values(rho, delta)
        return self.layout.fill(values), logdet


@dataclass(frozen=True, eq=False)
class _Layout:
    """Where each entry of the union sparsity pattern goes in the :class:`GramBlocks`.

    The pattern is the same for every ``(rho, delta)``, so the sorting and grouping of
    :func:`~hierlm.objective.gram.gram_from_products` run once, on entry numbers.
    """

    template: GramBlocks
    entries: tuple[np.ndarray, np.ndarray]  # row, column of each entry in [Z X y]'[Z X y]
    a11: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # entry, level, a, b
    nz: tuple[np.ndarray, np.ndarray]  # flat nz_val slot, entry
    dense: tuple[np.ndarray, np.ndarray]  # flat A_R1_dense slot, entry
    rr: tuple[np.ndarray, np.ndarray]  # flat A_RR slot, entry

    def fill(self, values: np.ndarray) -> GramBlocks:
        t = self.template
        A11 = np.zeros_like(t.A11)
        e, lv, a, b = self.a11
        A11[lv, a, b] = values[e]
        nz_val = np.zeros(t.nz_val.size)
        nz_val[self.nz[0]] = values[self.nz[1]]
        dense = np.zeros(t.A_R1_dense.size)
        dense[self.dense[0]] = values[self.dense[1]]
        A_RR = np.zeros(t.A_RR.size)
        A_RR[self.rr[0]] = values[self.rr[1]]
        return dataclasses.replace(t, A11=A11, nz_val=nz_val.reshape(t.nz_val.shape),
                                   A_R1_dense=dense.reshape(t.A_R1_dense.shape),
                                   A_RR=A_RR.reshape(t.A_RR.shape))


def _layout(design: ModelDesign, pattern: sp.coo_matrix, q1: int, beta_offset: np.ndarray
            ) -> _Layout:
    first = design.terms[0]
    p1 = first.p
    row, col = pattern.row, pattern.col
    entry = np.arange(row.size)
    in11 = (row < q1) & (col < q1)
    a11 = (entry[in11], row[in11] // p1, row[in11] % p1, col[in11] % p1)
    inr1 = (row >= q1) & (col < q1)
    m = pattern.shape[0] - q1
    # entry numbers + 1 as the values: where each lands in nz_val / A_R1_dense
    AR1 = sp.coo_matrix(((entry[inr1] + 1).astype(float), (row[inr1] - q1, col[inr1])),
                        shape=(m, q1))
    inrr = (row >= q1) & (col >= q1)
    rr = ((row[inrr] - q1) * m + (col[inrr] - q1), entry[inrr])
    ids = gram_from_products(design, np.zeros((first.n_levels, p1, p1)), AR1,
                             np.zeros((m, m)), beta_offset)
    nz_flat = ids.nz_val.ravel()
    keep = nz_flat > 0
    nz = (np.flatnonzero(keep), (nz_flat[keep] - 1).astype(np.int64))
    dense_flat = ids.A_R1_dense.ravel()
    keep = dense_flat > 0
    dense = (np.flatnonzero(keep), (dense_flat[keep] - 1).astype(np.int64))
    return _Layout(template=ids, entries=(row, col), a11=a11, nz=nz, dense=dense, rr=rr)


def _on_pattern(X: sp.spmatrix, keys: np.ndarray, n_cols: int) -> np.ndarray:
    """``X``'s entries at the positions of the sorted pattern ``keys`` (row * n + col)."""
    c = sp.coo_matrix(X)
    c.sum_duplicates()
    out = np.zeros(keys.size)
    out[np.searchsorted(keys, c.row.astype(np.int64) * n_cols + c.col)] = c.data
    return out


def _row_classes(rd: ResidualDesign) -> tuple[np.ndarray, np.ndarray]:
    """The distinct class keys (first, v id, predecessor's v id, gap) and each row's class."""
    has = rd.prev >= 0
    _, v_id = np.unique(rd.V, axis=0, return_inverse=True) if rd.V.shape[1] else (
        None, np.zeros(len(rd.prev), dtype=np.int64))
    v_id = np.asarray(v_id).ravel()
    prev_id = np.where(has, v_id[np.where(has, rd.prev, 0)], -1)
    keys = np.column_stack([has.astype(float), v_id, prev_id, np.where(has, rd.gap, 0.0)])
    uniq, cls = np.unique(keys, axis=0, return_inverse=True)
    return uniq, np.asarray(cls).ravel()


def _columns(design: ModelDesign) -> tuple[sp.csr_matrix, np.ndarray]:
    """``[Z X y]`` (``y`` less its least-squares fit on ``X``) and that fit's coefficients."""
    y = design.y if design.offset is None else design.y - design.offset
    if design.p:
        offset = np.linalg.lstsq(design.X, y, rcond=None)[0]
        y = y - design.X @ offset
    else:
        offset = np.zeros(0)
    M = sp.hstack([term_matrix(t) for t in design.terms]
                  + [sp.csr_matrix(np.column_stack([design.X, y]))], format="csr")
    return M, offset


def class_gram(design: ModelDesign, rd: ResidualDesign, *, storage: str = "few"
               ) -> ClassGram | None:
    """The class Gram matrices of a design, or None where the row-by-row path is used.

    Parameters
    ----------
    design, rd : ModelDesign, ResidualDesign
        The model and its residual structure.
    storage : {"few", "any", "dense", "sparse"}
        ``"few"`` (REML/ML): dense ``D1``-``D3`` up to :data:`MAX_CLASSES` classes, None
        above; ``"any"`` (NUTS): dense up to :data:`MAX_CLASSES`, sparse above;
        ``"dense"`` / ``"sparse"``: that storage for any number of classes.  Prior
        weights and ``cs`` give None whatever the storage.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> cg = class_gram(des, build_residual("ar1(Days | Subject)", None, d, des))
    >>> len(cg.first), cg.count.tolist()
    (2, [18.0, 162.0])
    >>> d["t"] = d["Days"] + np.random.default_rng(0).uniform(0, 0.5, len(d))
    >>> rd = build_residual("car1(t | Subject)", None, d, des)
    >>> class_gram(des, rd) is None, class_gram(des, rd, storage="any").D1.shape[0]
    (True, 163)
    """
    if storage not in ("few", "any", "dense", "sparse"):
        raise ValueError(f"unknown storage {storage!r}")
    if design.weights is not None or (rd.spec is not None and rd.spec.kind == "cs"):
        return None
    uniq, cls = _row_classes(rd)
    many = len(uniq) > MAX_CLASSES
    if many and storage == "few":
        return None
    if storage == "sparse" or (many and storage == "any"):
        return _sparse_class_gram(design, rd, uniq, cls)
    M, offset = _columns(design)
    q1 = design.terms[0].q
    G1: list[sp.csr_matrix] = []
    G2: list[sp.csr_matrix] = []
    G3: list[sp.csr_matrix] = []
    first, v_row, v_prev, gap, count = [], [], [], [], []
    for c in range(len(uniq)):
        idx = np.flatnonzero(cls == c)
        Mi = M[idx]
        G1.append((Mi.T @ Mi).tocsr())
        is_first = not bool(uniq[c, 0])
        if is_first:
            G2.append(sp.csr_matrix(G1[-1].shape))
            G3.append(sp.csr_matrix(G1[-1].shape))
        else:
            Mp = M[rd.prev[idx]]
            cross = (Mi.T @ Mp).tocsr()
            G2.append((cross + cross.T).tocsr())
            G3.append((Mp.T @ Mp).tocsr())
        first.append(is_first)
        v_row.append(rd.V[idx[0]])
        v_prev.append(rd.V[rd.prev[idx[0]]] if not is_first else rd.V[idx[0]])
        gap.append(uniq[c, 3])
        count.append(len(idx))
    k, nc = rd.V.shape[1], len(first)
    union = sp.coo_matrix(sum(abs(g) for g in G1 + G2 + G3))
    union.sum_duplicates()  # sorted by row, then column
    N = union.shape[1]
    keys = union.row.astype(np.int64) * N + union.col
    order = np.argsort(keys)
    pattern = sp.coo_matrix((np.ones(keys.size), (union.row[order], union.col[order])),
                            shape=union.shape)
    keys = keys[order]
    stack = [np.stack([_on_pattern(g, keys, N) for g in G]) for G in (G1, G2, G3)]
    return ClassGram(design=design, first=np.array(first),
                     v_row=np.array(v_row, dtype=float).reshape(nc, k),
                     v_prev=np.array(v_prev, dtype=float).reshape(nc, k),
                     gap=np.array(gap, dtype=float), count=np.array(count, dtype=float),
                     D1=stack[0], D2=stack[1], D3=stack[2],
                     layout=_layout(design, pattern, q1, offset))


def _outer_entries(M: sp.csr_matrix, r1: np.ndarray, r2: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every product ``M[r1[k], a] M[r2[k], b]`` of stored entries: ``(k, a, b, value)``.

    The entries of the outer products ``m_r1 m_r2'``, all pairs at once (vectorised
    CSR index arithmetic: SciPy has no batched outer product of sparse rows).
    """
    ip, ix, dv = M.indptr, M.indices, M.data
    n1, n2 = ip[r1 + 1] - ip[r1], ip[r2 + 1] - ip[r2]
    per = n1 * n2
    k = np.repeat(np.arange(len(r1)), per)
    j = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
    a = ip[r1][k] + j // n2[k]
    b = ip[r2][k] + j % n2[k]
    return k, ix[a], ix[b], dv[a] * dv[b]


def _sparse_class_gram(design: ModelDesign, rd: ResidualDesign, uniq: np.ndarray,
                       cls: np.ndarray) -> ClassGram:
    """:func:`class_gram` with ``D1``-``D3`` as sparse ``(C, nnz)`` matrices.

    Class ``c``'s row holds only its rows' outer-product entries, so the storage is
    ``O(n w^2)`` (``w`` stored entries per row of ``[Z X y]``) however many classes.
    """
    M, offset = _columns(design)
    M.eliminate_zeros()  # the pattern: positions of nonzero products, as the dense path's
    n, N = M.shape
    nc = len(uniq)
    rows = np.arange(n)
    has = np.flatnonzero(rd.prev >= 0)
    prev = rd.prev[has]
    k1, a1, b1, v1 = _outer_entries(M, rows, rows)
    k2, a2, b2, v2 = _outer_entries(M, has, prev)
    k3, a3, b3, v3 = _outer_entries(M, prev, prev)
    parts = [(cls[k1], a1, b1, v1),
             (np.concatenate([cls[has][k2]] * 2), np.concatenate([a2, b2]),
              np.concatenate([b2, a2]), np.concatenate([v2, v2])),  # G2_c + G2_c'
             (cls[has][k3], a3, b3, v3)]
    flat = [c_a.astype(np.int64) * N + c_b for _, c_a, c_b, _ in parts]
    keys, where = np.unique(np.concatenate(flat), return_inverse=True)
    where = np.asarray(where).ravel()
    bounds = np.cumsum([0] + [f.size for f in flat])
    D = [sp.csr_matrix((v, (c, where[bounds[i]:bounds[i + 1]])), shape=(nc, keys.size))
         for i, (c, _, _, v) in enumerate(parts)]  # duplicates summed
    pattern = sp.coo_matrix((np.ones(keys.size), (keys // N, keys % N)), shape=(N, N))
    first = uniq[:, 0] == 0
    row0 = np.unique(cls, return_index=True)[1]  # each class's first row
    pred = np.where(first, row0, rd.prev[row0])
    return ClassGram(design=design, first=first, v_row=np.asarray(rd.V[row0], dtype=float),
                     v_prev=np.asarray(rd.V[pred], dtype=float), gap=uniq[:, 3].copy(),
                     count=np.bincount(cls, minlength=nc).astype(float),
                     D1=D[0], D2=D[1], D3=D[2],
                     layout=_layout(design, pattern, design.terms[0].q, offset))
