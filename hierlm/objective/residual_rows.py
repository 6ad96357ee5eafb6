"""Whitened Gram blocks row by row in O(n) per evaluation: CAR(1) with many distinct
gaps, compound symmetry, prior weights.

Where the rows do not fall into a few classes (:mod:`hierlm.objective.residual_classes`)
the whitened Gram matrix ``[Z X y]' R0^-1 [Z X y] = sum_r c_r x_r x_r'`` is summed over
*combinations* ``x_r = sum_{i in S_r} w_ri m_i`` of rows ``m_i`` of ``M = [Z X y]``
(:mod:`hierlm.objective.residual_gram` gives ``B``):

* AR(1) / CAR(1) (and no correlation): one combination per row, ``S_i = {i, prev(i)}``,
  ``w = (1 / (s_i r_i), -a_i / (s_prev r_i))`` with ``a_i = phi^gap_i``, ``r_i = sqrt(1
  - a_i^2)`` (``w = 1 / s_i`` for a group's first row), ``c = 1``;
* compound symmetry: with ``e_i = m_i / s_i``, group ``g`` of ``k`` rows and ``lam = 1 +
  (k - 1) rho``, ``sum_i u_i u_i' = sum_i e_i e_i' / (1 - rho) + (1 / lam - 1 / (1 -
  rho)) t_g t_g' / k`` with ``t_g = sum_{i in g} e_i``: one combination per row (``c = 1 /
  (1 - rho)``) and one per group (``c = (1 / lam - 1 / (1 - rho)) / k``);

``s_i = exp(v_i' delta) / sqrt(w_i)`` with prior weights ``w``.  Once per model the
stored entries of each combination's rows get a *slot* (combination, column) and every
pair of a combination's slots its entry of the union sparsity pattern; the layout into
:class:`~hierlm.objective.gram.GramBlocks` is :mod:`hierlm.objective.residual_classes`'s.
Each evaluation computes the weights (``O(n)``), ``x`` on the slots and ``c_r x_a x_b``
into the pattern: ``O(n w^2)`` for ``w`` stored entries per row, and no whitened design
and no new Gram products.  ``log|R0|`` is :func:`~hierlm.objective.residual_gram.whiten`'s.

The two loops are a Numba kernel (:mod:`hierlm.objective.residual_rows_jit`; one
signature, compiled once per install, loaded from the disk cache) for models of at
least :data:`KERNEL_NOBS` rows or where Numba is already imported; otherwise, or
where Numba cannot be loaded, the same sums run as ``np.bincount`` (the same values
to 1e-12, tested).

Per-evaluation time of ``crit(theta, z)`` at a new ``z`` (the residual parameters:
the whitened Gram blocks, the compiled objective, one REML criterion), 2,000 subjects
x 8 visits at irregular real times (16,000 rows, every gap distinct), ``y ~ x + time +
(1 + time | id)``, best of 5-10 after a warm-up, one process on the shared 2-core
machine at load 2.2-2.6 (``python -m benchmarks.residual_rows_eval --repeats 10``):

* ``car1(time | id)``: row-by-row NumPy whitening (``whitened_design`` +
  ``compile_objective``) 7.0-11.1 ms -> 2.1-2.2 ms with the kernel (the kernel alone
  1.1 ms; the ``np.bincount`` form 4.8-6.2 ms);
* ``cs(1 | id)``: 6.4-6.5 ms -> 2.1 ms (kernel alone 1.2-1.3 ms; bincount 4.8-5.0 ms);
* the setup, once per model: 115-139 ms (``car1``), 144-260 ms (``cs``);
* a whole REML fit of the ``car1`` model 0.41 s -> 0.27 s, of the ``cs`` model 0.215 s
  -> 0.19 s (second runs, alternated).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.objective.gram import GramBlocks
from hierlm.objective.residual_classes import _columns, _Layout, _layout
from hierlm.objective.residual_gram import relative_sd

#: Models of at least this many rows load the kernel (Numba's import costs ~1 s once).
KERNEL_NOBS = 2000

Kernel = Callable[..., None]
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def kernel() -> Kernel | None:
    """The Numba kernel, loaded (compiled once per install) on first use; None where
    Numba cannot be loaded (then the ``np.bincount`` form runs).

    Examples
    --------
    >>> fn = kernel()
    >>> x, v = np.empty(1), np.empty(1)
    >>> one = np.zeros(1, dtype=np.int64)
    >>> fn(one, one, np.array([2.0]), np.array([3.0]), one, one, one, one,
    ...    np.array([0.5]), x, v)
    >>> v.tolist()
    [18.0]
    """
    with _LOCK:
        if "kernel" in _STATE or "failed" in _STATE:
            return _STATE.get("kernel")
        try:
            from hierlm.objective import numba_cache

            numba_cache.prepare()
            from hierlm.objective.residual_rows_jit import row_gram_kernel

            z = np.zeros(1, dtype=np.int64)
            row_gram_kernel(z, z, np.ones(1), np.ones(1), z, z, z, z, np.ones(1),
                            np.empty(1), np.empty(1))
        except Exception:  # noqa: BLE001 - any failure of Numba: the NumPy form goes on
            _STATE["failed"] = True
            return None
        _STATE["kernel"] = row_gram_kernel
        return row_gram_kernel


@dataclass(frozen=True, eq=False)
class RowGram:
    """The combinations, slots and pairs of a design (module docstring)."""

    design: ModelDesign
    rd: ResidualDesign
    combo_rows: np.ndarray  # (L,) row of each combination member
    member_order: np.ndarray  # (L,) members in _combinations' order, as stored
    ent_slot: np.ndarray  # (E,) slot of each stored entry of a member's row
    ent_l: np.ndarray  # (E,) its member
    ent_val: np.ndarray  # (E,) its value
    slot_combo: np.ndarray  # (S,) combination of each slot
    pair_a: np.ndarray  # (P,) first slot of each pair
    pair_b: np.ndarray  # (P,) second slot
    pair_entry: np.ndarray  # (P,) entry of the union pattern
    n_entries: int
    layout: _Layout
    use_kernel: bool

    def weights(self, rho: float, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The members' weights ``w``, the combinations' ``c`` and ``log|R0|``."""
        rd, n = self.rd, self.design.nobs
        s = relative_sd(rd, delta, self.design.weights)
        logdet = 2.0 * float(np.log(s).sum())
        if rd.spec is not None and rd.spec.kind == "cs":
            k = rd.group_sizes.astype(float)
            lam = 1.0 + (k - 1.0) * rho
            w = 1.0 / s[self.combo_rows]
            coef = np.concatenate([np.full(n, 1.0 / (1.0 - rho)),
                                   (1.0 / lam - 1.0 / (1.0 - rho)) / k])
            logdet += float(((k - 1.0) * np.log1p(-rho) + np.log(lam)).sum())
            return w, coef, logdet
        has = rd.prev >= 0 if rd.spec is not None else np.zeros(n, dtype=bool)
        a = np.zeros(n)
        a[has] = np.power(rho, rd.gap[has])
        root = np.sqrt(1.0 - a * a)
        w = np.empty(len(self.combo_rows))
        w[:n] = 1.0 / (s * root)
        prev = rd.prev[has]
        w[n:] = -a[has] / (s[prev] * root[has])
        logdet += float(np.log(root[has] ** 2).sum())
        return w[self.member_order], np.ones(n), logdet

    def values(self, rho: float, delta: np.ndarray) -> tuple[np.ndarray, float]:
        """The whitened Gram matrix's entries on the union pattern and ``log|R0|``."""
        w, coef, logdet = self.weights(rho, np.asarray(delta, dtype=float))
        fn = kernel() if self.use_kernel else None
        if fn is not None:
            x = np.empty(self.slot_combo.size)
            out = np.empty(self.n_entries)
            fn(self.ent_slot, self.ent_l, self.ent_val, w, self.slot_combo, self.pair_a,
               self.pair_b, self.pair_entry, coef, x, out)
            return out, logdet
        return numpy_values(self, w, coef), logdet

    def gram(self, rho: float, delta: np.ndarray) -> tuple[GramBlocks, float]:
        """Gram blocks of the whitened design and ``log|R0|`` at ``(rho, delta)``.

        Examples
        --------
        >>> import hierlm
        >>> from hierlm.design.residual_design import build_residual
        >>> from hierlm.objective.residual_gram import whitened_design
        >>> from hierlm.objective import compile_objective
        >>> d = hierlm.load_sleepstudy()
        >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
        >>> rd = build_residual("cs(1 | Subject)", None, d, des)
        >>> gram, logdet = row_gram(des, rd).gram(0.4, np.zeros(0))
        >>> wd, want = whitened_design(des, rd, 0.4, np.zeros(0))
        >>> theta = np.array([0.5])
        >>> bool(np.isclose(compile_objective(des, gram)(theta, True) + logdet,
        ...                 compile_objective(wd)(theta, True) + want, rtol=1e-12))
        True
        """
        values, logdet = self.values(rho, delta)
        return self.layout.fill(values), logdet


def numpy_values(rg: RowGram, w: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """The kernel's sums as ``np.bincount`` (the fallback; the same values)."""
    x = np.bincount(rg.ent_slot, weights=w[rg.ent_l] * rg.ent_val,
                    minlength=rg.slot_combo.size)
    return np.bincount(rg.pair_entry,
                       weights=coef[rg.slot_combo[rg.pair_a]] * x[rg.pair_a] * x[rg.pair_b],
                       minlength=rg.n_entries)


def _combinations(rd: ResidualDesign, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each member's row and combination (the module docstring's ``S_r``), members of
    one combination adjacent."""
    rows = np.arange(n)
    if rd.spec is not None and rd.spec.kind == "cs":
        order = np.argsort(rd.group, kind="stable")
        return (np.concatenate([rows, order]),
                np.concatenate([rows, n + rd.group[order]]))
    has = np.flatnonzero(rd.prev >= 0) if rd.spec is not None else np.zeros(0, dtype=np.int64)
    return np.concatenate([rows, rd.prev[has]]), np.concatenate([rows, has])


def row_gram(design: ModelDesign, rd: ResidualDesign,
             use_kernel: bool | None = None) -> RowGram | None:
    """The :class:`RowGram` of a design (None without random terms).

    ``use_kernel``: the Numba kernel (default: at least :data:`KERNEL_NOBS` rows, or
    Numba already imported).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rg = row_gram(des, build_residual("ar1(Days | Subject)", None, d, des))
    >>> rg.combo_rows.size  # 180 rows and 162 predecessors
    342
    """
    if not design.terms:
        return None
    if use_kernel is None:
        use_kernel = design.nobs >= KERNEL_NOBS or "numba" in sys.modules
    M, offset = _columns(design)
    M.eliminate_zeros()
    n, N = M.shape
    members, combo = _combinations(rd, n)
    order = np.argsort(combo, kind="stable")
    members, combo = members[order], combo[order]
    # the stored entries of each member's row
    ip, ix, dv = M.indptr, M.indices, M.data
    per = ip[members + 1] - ip[members]
    ent_l = np.repeat(np.arange(members.size), per)
    pos = ip[members][ent_l] + np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
    ent_col = ix[pos]
    slot_keys, ent_slot = np.unique(combo[ent_l].astype(np.int64) * N + ent_col,
                                    return_inverse=True)
    slot_combo, slot_col = slot_keys // N, slot_keys % N
    # every pair of a combination's slots
    starts = np.searchsorted(slot_combo, np.arange(int(combo.max()) + 1 if combo.size else 0))
    width = np.diff(np.append(starts, slot_combo.size))
    sq = width * width
    c = np.repeat(np.arange(width.size), sq)
    j = np.arange(int(sq.sum())) - np.repeat(np.cumsum(sq) - sq, sq)
    pair_a = starts[c] + j // width[c]
    pair_b = starts[c] + j % width[c]
    keys, pair_entry = np.unique(slot_col[pair_a] * N + slot_col[pair_b], return_inverse=True)
    pattern = sp.coo_matrix((np.ones(keys.size), (keys // N, keys % N)), shape=(N, N))
    i64 = np.int64
    return RowGram(design=design, rd=rd, combo_rows=members.astype(i64),
                   member_order=order.astype(i64),
                   ent_slot=np.asarray(ent_slot, dtype=i64).ravel(), ent_l=ent_l.astype(i64),
                   ent_val=np.ascontiguousarray(dv[pos], dtype=float),
                   slot_combo=slot_combo.astype(i64), pair_a=pair_a.astype(i64),
                   pair_b=pair_b.astype(i64),
                   pair_entry=np.asarray(pair_entry, dtype=i64).ravel(),
                   n_entries=int(keys.size),
                   layout=_layout(design, pattern, design.terms[0].q, offset),
                   use_kernel=bool(use_kernel))
