"""Numba implementations of hierlm's Ops, for graphs that PyTensor links with Numba.

Importing this package registers them with PyTensor's Numba backend.  Every place
that links a hierlm graph with Numba imports it first
(:attr:`hierlm.objective.graph_cache.CompiledGraph.fn`, the NUTS samplers); graphs
linked with PyTensor's Python VM use the Ops' NumPy ``perform`` instead, so a process
that never links with Numba never imports it.
"""

from hierlm.objective.jit import chol_logdiag, first_block, schur_update

__all__ = ["chol_logdiag", "first_block", "schur_update"]
