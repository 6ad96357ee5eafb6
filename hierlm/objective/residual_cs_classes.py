"""Whitened Gram blocks for compound symmetry (with log-linear SDs) at a cost independent
of n.

With ``R0 = S C S``, ``C`` block diagonal over the groups with blocks
``C_g = (1 - rho) I + rho 1 1'`` (``k_g`` rows), ``C_g^-1 = (I - c_g 1 1') / (1 - rho)``
with ``c_g = rho / (1 + (k_g - 1) rho)``.  So for ``M = [Z X y]`` and ``m~_i = m_i / s_i``::

    M' R0^-1 M = (sum_i m~_i m~_i' - sum_g c_g t_g t_g') / (1 - rho),   t_g = sum_{i in g} m~_i.

``s_i = exp(v_i' delta)`` depends on the row only through its SD level ``l`` (a distinct
row of ``V``), so with ``G_l = sum_{i: level l} m_i m_i'`` and, per group size ``k`` and
pair of levels ``(l, l')``, ``H_klm = sum_{g: k_g = k} T_gl T_gl'`` (``T_gl`` the sum of
group ``g``'s rows of level ``l``)::

    M' R0^-1 M = (sum_l e^{-2 v_l'delta} G_l
                  - sum_{k,l,l'} c_k e^{-(v_l + v_l')'delta} H_kll') / (1 - rho),
    log|R0| = sum_k n_k ((k - 1) log(1 - rho) + log(1 + (k - 1) rho))
              + 2 sum_l count_l v_l'delta,

``n_k`` the number of groups of size ``k``: sparse Gram matrices computed once, as for
AR(1) in :mod:`hierlm.objective.residual_classes` (whose pattern layout this reuses).
``C`` is positive definite for ``-1 / (k_max - 1) < rho < 1``.  Models with more than
:data:`MAX_CLASSES` classes or prior weights are not taken (None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.objective.gram import GramBlocks
from hierlm.objective.residual_classes import _columns, _Layout, _layout, _on_pattern

#: Most (size, level, level) classes for which the Gram matrices are kept.
MAX_CLASSES = 256


@dataclass(frozen=True, eq=False)
class CSClassGram:
    """The per-class Gram matrices of a compound-symmetry design (module docstring)."""

    design: ModelDesign
    v_level: np.ndarray  # (L, k) v of each SD level
    level_count: np.ndarray  # (L,) rows of each level
    G: np.ndarray  # (L, nnz) G_l on the union pattern
    pair_size: np.ndarray  # (P,) group size k of each (k, l, l') class
    pair_levels: np.ndarray  # (P, 2) its levels (l, l')
    H: np.ndarray  # (P, nnz) H_kll'
    sizes: np.ndarray  # distinct group sizes k
    n_groups: np.ndarray  # groups of each size
    layout: _Layout

    @property
    def k_max(self) -> int:
        return int(self.sizes.max())

    def gram(self, rho: float, delta: np.ndarray) -> tuple[GramBlocks, float]:
        """Gram blocks of the whitened design and ``log|R0|`` at ``(rho, delta)``."""
        delta = np.asarray(delta, dtype=float)
        e = self.v_level @ delta if delta.size else np.zeros(len(self.level_count))
        c = rho / (1.0 + (self.pair_size - 1.0) * rho)
        w_pair = c * np.exp(-(e[self.pair_levels[:, 0]] + e[self.pair_levels[:, 1]]))
        values = (np.exp(-2.0 * e) @ self.G - w_pair @ self.H) / (1.0 - rho)
        logdet = float((self.n_groups * ((self.sizes - 1.0) * np.log(1.0 - rho)
                                         + np.log(1.0 + (self.sizes - 1.0) * rho))).sum()
                       + 2.0 * (self.level_count * e).sum())
        return self.layout.fill(values), logdet


def cs_class_gram(design: ModelDesign, rd: ResidualDesign) -> CSClassGram | None:
    """The class Gram matrices of a ``cs`` design, or None (prior weights, too many
    classes, or not a ``cs`` structure).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> cg = cs_class_gram(des, build_residual("cs(1 | Subject)", None, d, des))
    >>> cg.sizes.tolist(), cg.n_groups.tolist()
    ([10.0], [18.0])
    """
    if design.weights is not None or rd.spec is None or rd.spec.kind != "cs":
        return None
    if rd.V.shape[1]:
        uniq, level = np.unique(rd.V, axis=0, return_inverse=True)
    else:
        uniq, level = np.zeros((1, 0)), np.zeros(len(rd.group), dtype=np.int64)
    level = np.asarray(level).ravel()
    n_lev = len(uniq)
    size_of = np.bincount(rd.group)
    sizes, n_groups = np.unique(size_of, return_counts=True)
    M, offset = _columns(design)
    G = [(M[level == lv].T @ M[level == lv]).tocsr() for lv in range(n_lev)]
    n_groups_all = len(size_of)
    H, pair_size, pair_levels = [], [], []
    for k in sizes:
        groups_k = np.flatnonzero(size_of == k)
        in_k = np.isin(rd.group, groups_k)
        T = []  # T_l: (groups of size k) x columns, the sums of each group's level-l rows
        for lv in range(n_lev):
            rows = np.flatnonzero(in_k & (level == lv))
            agg = sp.csr_matrix((np.ones(rows.size), (rd.group[rows], rows)),
                                shape=(n_groups_all, len(level)))
            T.append((agg @ M).tocsr())
        for a in range(n_lev):
            for b in range(n_lev):
                H.append((T[a].T @ T[b]).tocsr())
                pair_size.append(float(k))
                pair_levels.append((a, b))
    if len(H) > MAX_CLASSES:
        return None
    union = sp.coo_matrix(sum(abs(g) for g in G + H))
    union.sum_duplicates()
    N = union.shape[1]
    keys = union.row.astype(np.int64) * N + union.col
    order = np.argsort(keys)
    pattern = sp.coo_matrix((np.ones(keys.size), (union.row[order], union.col[order])),
                            shape=union.shape)
    keys = keys[order]
    return CSClassGram(
        design=design, v_level=np.asarray(uniq, dtype=float).reshape(n_lev, -1),
        level_count=np.bincount(level, minlength=n_lev).astype(float),
        G=np.stack([_on_pattern(g, keys, N) for g in G]),
        pair_size=np.array(pair_size), pair_levels=np.array(pair_levels, dtype=np.int64),
        H=np.stack([_on_pattern(h, keys, N) for h in H]),
        sizes=sizes.astype(float), n_groups=n_groups.astype(float),
        layout=_layout(design, pattern, design.terms[0].q, offset))
