"""The Numba kernel of :mod:`hierlm.objective.residual_rows`: whitened Gram entries.

One signature for every model (index and value arrays of any length), so it is
compiled once per install and then loaded from Numba's disk cache (``cache=True``),
never per model.  Only :func:`hierlm.objective.residual_rows.kernel` imports this
module, when a model is large enough for the kernel to pay for loading Numba.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def row_gram_kernel(ent_slot: np.ndarray, ent_l: np.ndarray, ent_val: np.ndarray,
                    weight: np.ndarray, slot_combo: np.ndarray, pair_a: np.ndarray,
                    pair_b: np.ndarray, pair_entry: np.ndarray, coef: np.ndarray,
                    x: np.ndarray, values: np.ndarray) -> None:  # pragma: no cover
    """``x[slot] = sum weight[l] m`` over the stored entries, then ``values[e] += coef_c
    x_a x_b`` over the pairs (``x`` and ``values`` are overwritten)."""
    x[:] = 0.0
    for t in range(ent_slot.shape[0]):
        x[ent_slot[t]] += weight[ent_l[t]] * ent_val[t]
    values[:] = 0.0
    for p in range(pair_a.shape[0]):
        a = pair_a[p]
        values[pair_entry[p]] += coef[slot_combo[a]] * x[a] * x[pair_b[p]]
