"""The bootstrap's compiled quasi-Newton loop, now a stage of the package's one theta
optimizer: :mod:`hierlm.estimate.quasi_newton_loop` (kept here by name for callers of
``hierlm.inference.refit_compiled.CompiledLoop``)."""

from hierlm.estimate.quasi_newton_loop import CompiledLoop

__all__ = ["CompiledLoop"]
