"""Numba implementations of hierlm's Ops, for graphs that PyTensor links with Numba.

Importing this package registers them with PyTensor's Numba backend.  Every place
that links a hierlm graph with Numba imports it first
(:attr:`hierlm.objective.graph_cache.CompiledGraph.fn`, the NUTS samplers); graphs
linked with PyTensor's Python VM use the Ops' NumPy ``perform`` instead, so a process
that never links with Numba never imports it.  Numba's cache is made safe to use first
(:func:`hierlm.objective.numba_cache.prepare`).
"""

from hierlm.objective import numba_cache

numba_cache.prepare()

from hierlm.objective.jit import chol_logdiag, first_block, schur_update  # noqa: E402

__all__ = ["chol_logdiag", "first_block", "schur_update"]
