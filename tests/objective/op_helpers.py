"""Shared helpers for the Op tests: SPD matrices, symmetric finite differences."""

from __future__ import annotations

import numpy as np


def spd(rng: np.random.Generator, m: int) -> np.ndarray:
    A = rng.normal(size=(m, m))
    return A @ A.T + np.eye(m)


def sym_fd(f, X: np.ndarray, h: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Central differences of f along symmetric perturbations ``E_ij + E_ji``, halved."""
    out = np.zeros_like(X)
    for idx in np.ndindex(*X.shape):
        E = np.zeros_like(X)
        E[idx] += h / 2
        E[idx[:-2] + (idx[-1], idx[-2])] += h / 2
        out[idx] = (f(X + E) - f(X - E)) / (2 * h)
    return out


def link_modes() -> list:  # type: ignore[type-arg]
    """Both links of hierlm's Ops, for ``pytest.mark.parametrize``: PyTensor's Python VM
    (the Ops' NumPy ``perform``) and Numba (the kernels of ``hierlm.objective.jit``)."""
    import pytest

    import hierlm.objective.jit  # noqa: F401 - registers the Numba kernels
    from hierlm.objective.graph_cache import rewrite_mode

    return [pytest.param(rewrite_mode("vm"), id="vm"), pytest.param("NUMBA", id="numba")]
