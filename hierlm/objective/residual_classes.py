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
Models with more than :data:`MAX_CLASSES` classes (real times, numeric ``sigma=``
columns), prior weights, or compound symmetry are whitened row by row instead.
"""

from __future__ import annotations

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
    G1: tuple[sp.csr_matrix, ...]
    G2: tuple[sp.csr_matrix, ...]  # symmetrized: G2 + G2'
    G3: tuple[sp.csr_matrix, ...]
    q1: int
    beta_offset: np.ndarray

    def gram(self, rho: float, delta: np.ndarray) -> tuple[GramBlocks, float]:
        """Gram blocks of the whitened design and ``log|R0|`` at ``(rho, delta)``."""
        delta = np.asarray(delta, dtype=float)
        s_i = np.exp(self.v_row @ delta) if delta.size else np.ones(len(self.first))
        s_p = np.exp(self.v_prev @ delta) if delta.size else np.ones(len(self.first))
        a = np.where(self.first, 0.0, np.power(rho, self.gap))
        root = np.sqrt(1.0 - a * a)
        alpha = 1.0 / (s_i * root)
        beta = a / (s_p * root)
        total = None
        for c in range(len(self.first)):
            part = alpha[c] ** 2 * self.G1[c]
            if not self.first[c]:
                part = part - alpha[c] * beta[c] * self.G2[c] + beta[c] ** 2 * self.G3[c]
            total = part if total is None else total + part
        assert total is not None
        logdet = float((self.count * (2.0 * np.log(s_i) + np.log(root * root))).sum())
        return _blocks(self.design, total.tocsr(), self.q1, self.beta_offset), logdet


def _blocks(design: ModelDesign, G: sp.csr_matrix, q1: int, beta_offset: np.ndarray
            ) -> GramBlocks:
    first = design.terms[0]
    p1 = first.p
    g11 = G[:q1, :q1].tocoo()
    A11 = np.zeros((first.n_levels, p1, p1))
    A11[g11.row // p1, g11.row % p1, g11.col % p1] = g11.data
    AR1 = G[q1:, :q1]
    A_RR = np.asarray(G[q1:, q1:].toarray())
    return gram_from_products(design, A11, AR1, A_RR, beta_offset)


def class_gram(design: ModelDesign, rd: ResidualDesign) -> ClassGram | None:
    """The class Gram matrices of a design, or None where the row-by-row path is used.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> cg = class_gram(des, build_residual("ar1(Days | Subject)", None, d, des))
    >>> len(cg.first), cg.count.tolist()
    (2, [18, 162])
    """
    if design.weights is not None or (rd.spec is not None and rd.spec.kind == "cs"):
        return None
    has = rd.prev >= 0
    _, v_id = np.unique(rd.V, axis=0, return_inverse=True) if rd.V.shape[1] else (
        None, np.zeros(len(rd.prev), dtype=np.int64))
    v_id = np.asarray(v_id).ravel()
    prev_id = np.where(has, v_id[np.where(has, rd.prev, 0)], -1)
    keys = np.column_stack([has.astype(float), v_id, prev_id, np.where(has, rd.gap, 0.0)])
    uniq, cls = np.unique(keys, axis=0, return_inverse=True)
    cls = np.asarray(cls).ravel()
    if len(uniq) > MAX_CLASSES:
        return None
    y = design.y if design.offset is None else design.y - design.offset
    if design.p:
        offset = np.linalg.lstsq(design.X, y, rcond=None)[0]
        y = y - design.X @ offset
    else:
        offset = np.zeros(0)
    M = sp.hstack([term_matrix(t) for t in design.terms]
                  + [sp.csr_matrix(np.column_stack([design.X, y]))], format="csr")
    q1 = design.terms[0].q
    G1, G2, G3, first, v_row, v_prev, gap, count = [], [], [], [], [], [], [], []
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
    return ClassGram(design=design, first=np.array(first),
                     v_row=np.array(v_row, dtype=float).reshape(nc, k),
                     v_prev=np.array(v_prev, dtype=float).reshape(nc, k),
                     gap=np.array(gap, dtype=float),
                     count=np.array(count, dtype=float), G1=tuple(G1), G2=tuple(G2),
                     G3=tuple(G3), q1=q1, beta_offset=offset)
