"""Whitened Gram blocks for compound symmetry with a row-varying SD, linear in weights.

:mod:`hierlm.objective.residual_cs_classes` groups the rows by (group size, SD level);
a numeric ``sigma=`` column gives one SD level per row and too many classes.  Then, as
there (``m~_i = m_i / s_i``, ``c_g = rho / (1 + (k_g - 1) rho)``, ``t_g = sum_{i in g}
m~_i``)::

    M' R0^-1 M = (sum_i m~_i m~_i' - sum_g c_g t_g t_g') / (1 - rho)
               = sum_i (1 - c_g) / ((1 - rho) s_i^2) m_i m_i'
                 - sum_{g, i < j in g} c_g / ((1 - rho) s_i s_j) (m_i m_j' + m_j m_i'),

a weighted sum of constant sparse matrices, one per row and one per pair of rows of a
group: ``D`` holds their entries on the union sparsity pattern (``sum_g k_g (k_g + 1) /
2`` rows, each with the ``w^2`` entries of its outer products for ``w`` stored entries
per row of ``M = [Z X y]``), and the Gram matrix is ``D' weights``: in a PyTensor graph
one sparse-by-dense product differentiated in the weights (NUTS,
:mod:`hierlm.estimate.nuts_residual`).  ``log|R0| = sum_g ((k_g - 1) log(1 - rho) +
log(1 + (k_g - 1) rho)) + 2 sum_i log s_i`` with ``s_i = exp(v_i' delta)``.  Prior
weights are not taken (None).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.objective.gram import GramBlocks
from hierlm.objective.residual_classes import _columns, _Layout, _layout, _outer_entries

#: Most pairs of rows (``sum_g k_g (k_g + 1) / 2``) taken.
MAX_PAIRS = 2_000_000


@dataclass(frozen=True, eq=False)
class CSPairGram:
    """The per-row and per-pair Gram matrices of a ``cs`` design (module docstring)."""

    design: ModelDesign
    V: np.ndarray  # (n, k) the sigma= model matrix
    row_i: np.ndarray  # (P,) first row of each pair (the row itself for a single)
    row_j: np.ndarray  # (P,) second row
    size: np.ndarray  # (P,) its group's size
    single: np.ndarray  # (P,) bool: i == j
    D: sp.csr_matrix  # (P, nnz) entries on the union pattern
    sizes: np.ndarray  # distinct group sizes
    n_groups: np.ndarray  # groups of each size
    layout: _Layout

    @property
    def k_max(self) -> int:
        return int(self.sizes.max())

    def weights(self, rho: float, delta: np.ndarray) -> tuple[np.ndarray, float]:
        """Each row of ``D``'s weight and ``log|R0|``."""
        delta = np.asarray(delta, dtype=float)
        e = self.V @ delta if delta.size else np.zeros(self.V.shape[0])
        c = rho / (1.0 + (self.size - 1.0) * rho)
        inv = np.exp(-(e[self.row_i] + e[self.row_j])) / (1.0 - rho)
        w = np.where(self.single, (1.0 - c) * inv, -c * inv)
        logdet = float((self.n_groups * ((self.sizes - 1.0) * np.log(1.0 - rho)
                                         + np.log(1.0 + (self.sizes - 1.0) * rho))).sum()
                       + 2.0 * e.sum())
        return w, logdet

    def gram(self, rho: float, delta: np.ndarray) -> tuple[GramBlocks, float]:
        """Gram blocks of the whitened design and ``log|R0|`` at ``(rho, delta)``.

        Examples
        --------
        >>> import hierlm
        >>> from hierlm.design.residual_design import build_residual
        >>> from hierlm.objective.residual_gram import whitened_design
        >>> from hierlm.objective import compile_objective
        >>> d = hierlm.load_sleepstudy()
        >>> d["x"] = np.linspace(-1, 1, len(d))
        >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
        >>> rd = build_residual("cs(1 | Subject)", "~ x", d, des)
        >>> gram, logdet = cs_pair_gram(des, rd).gram(0.3, np.array([0.2]))
        >>> wd, want = whitened_design(des, rd, 0.3, np.array([0.2]))
        >>> theta = np.array([0.5])
        >>> bool(np.isclose(compile_objective(des, gram)(theta, True) + logdet,
        ...                 compile_objective(wd)(theta, True) + want, rtol=1e-12))
        True
        """
        w, logdet = self.weights(rho, delta)
        return self.layout.fill(self.D.T @ w), logdet


def cs_pair_gram(design: ModelDesign, rd: ResidualDesign) -> CSPairGram | None:
    """The pair Gram matrices of a ``cs`` design; None with prior weights, without
    random terms, with more than :data:`MAX_PAIRS` pairs or without ``cs``.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> cg = cs_pair_gram(des, build_residual("cs(1 | Subject)", None, d, des))
    >>> int(cg.single.sum()), len(cg.single)  # 180 rows, 18 x 45 pairs
    (180, 990)
    """
    if (design.weights is not None or not design.terms or rd.spec is None
            or rd.spec.kind != "cs"):
        return None
    size_of = np.bincount(rd.group)
    if int((size_of * (size_of + 1) // 2).sum()) > MAX_PAIRS:
        return None
    order = np.argsort(rd.group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(size_of)])
    ri, rj = [], []
    for k in np.unique(size_of):
        # the group's pairs of rows (i <= j), row-major; not theta's layout, which only
        # the covariance layer indexes
        a, b = np.nonzero(np.triu(np.ones((int(k), int(k)), dtype=bool)))
        first = starts[:-1][size_of == k]
        ri.append(order[(first[:, None] + a[None, :]).ravel()])
        rj.append(order[(first[:, None] + b[None, :]).ravel()])
    row_i, row_j = np.concatenate(ri), np.concatenate(rj)
    M, offset = _columns(design)
    M.eliminate_zeros()
    N = M.shape[1]
    k1, a1, b1, v1 = _outer_entries(M, row_i, row_j)
    off = np.flatnonzero(row_i != row_j)
    k2, a2, b2, v2 = _outer_entries(M, row_j[off], row_i[off])  # m_j m_i' of the pairs
    pair = np.concatenate([k1, off[k2]])
    flat = np.concatenate([a1.astype(np.int64) * N + b1, a2.astype(np.int64) * N + b2])
    keys, where = np.unique(flat, return_inverse=True)
    D = sp.csr_matrix((np.concatenate([v1, v2]), (pair, np.asarray(where).ravel())),
                      shape=(row_i.size, keys.size))  # duplicates summed
    pattern = sp.coo_matrix((np.ones(keys.size), (keys // N, keys % N)), shape=(N, N))
    sizes, n_groups = np.unique(size_of, return_counts=True)
    return CSPairGram(design=design, V=np.asarray(rd.V, dtype=float), row_i=row_i,
                      row_j=row_j, size=size_of[rd.group[row_i]].astype(float),
                      single=row_i == row_j, D=D, sizes=sizes.astype(float),
                      n_groups=n_groups.astype(float),
                      layout=_layout(design, pattern, design.terms[0].q, offset))
