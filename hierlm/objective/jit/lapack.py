"""LAPACK's ``dpotrf``, ``dtrtri`` and ``dlauum``, callable from Numba-compiled code.

The dense Schur factor needs ``L = chol(S)`` and, for the gradient,
``L^{-1}`` (``dtrtri``) and ``Y'Y`` for a lower-triangular ``Y`` (``dlauum``):
``m^3/3`` flops each, against about ``4 m^3`` for the generic reverse-mode Cholesky
gradient built from a matrix product and two triangular solves.  Numba exposes only
``np.linalg``'s routines, so the three are bound here from SciPy's
``cython_lapack`` (the library NumPy, SciPy and PyTensor's Numba backend use).

All three work on a C-ordered ``(m, m)`` array in place.  A C-ordered lower
triangle is a Fortran-ordered upper triangle, so each routine is called with
``uplo = 'U'``.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from numba.core import types
from numba.core.extending import get_cython_function_address


def source_version(*paths: Path) -> int:
    """Salt for PyTensor's on-disk cache of graphs that use hierlm's Numba kernels: a
    checksum of the kernels' source, so a changed kernel never reuses a stale graph."""
    return zlib.crc32(b"".join(p.read_bytes() for p in paths)) & 0x7FFFFFFF


KERNEL_VERSION = source_version(*(Path(__file__).parent / f for f in (
    "lapack.py", "chol_logdiag.py", "schur_update.py", "first_block.py")),
    *(Path(__file__).parent.parent / f for f in (
        "chol_logdiag.py", "schur_update.py", "first_block.py")))

_I32P = types.CPointer(types.int32)
_F64P = types.CPointer(types.float64)
_U = ord("U")
_N = ord("N")


def _bind(name: str, n_char_args: int) -> types.ExternalFunction:
    """Declare SciPy's ``cython_lapack`` routine ``name`` as an external symbol.

    The address is registered with LLVM's symbol table under a fixed name at import,
    so compiled code refers to the symbol, not to a process-specific pointer, and
    Numba can cache it on disk.
    """
    symbol = f"hierlm_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_lapack", name))
    return types.ExternalFunction(
        symbol, types.void(*([_I32P] * (n_char_args + 1)), _F64P, _I32P, _I32P))


_potrf: Any = _bind("dpotrf", 1)  # (uplo, n, a, lda, info)
_trtri: Any = _bind("dtrtri", 2)  # (uplo, diag, n, a, lda, info)
_lauum: Any = _bind("dlauum", 1)  # (uplo, n, a, lda, info)


@numba.njit(cache=True)
def _ints(*values: int) -> np.ndarray:  # pragma: no cover - runs inside Numba
    out = np.empty(len(values), dtype=np.int32)
    for i, v in enumerate(values):
        out[i] = v
    return out


@numba.njit(cache=True)
def potrf_lower(a: np.ndarray) -> int:  # pragma: no cover - runs inside Numba
    """``a <- chol(a)`` (lower, upper triangle zeroed); returns LAPACK's info."""
    n = a.shape[0]
    uplo, nn, info = _ints(_U), _ints(n), _ints(0)
    _potrf(uplo.ctypes, nn.ctypes, a.ctypes, nn.ctypes, info.ctypes)
    for i in range(n):
        for j in range(i + 1, n):
            a[i, j] = 0.0
    return info[0]


@numba.njit(cache=True)
def trtri_lower(a: np.ndarray) -> int:  # pragma: no cover - runs inside Numba
    """``a <- a^{-1}`` for lower-triangular ``a``; returns LAPACK's info."""
    n = a.shape[0]
    uplo, diag, nn, info = _ints(_U), _ints(_N), _ints(n), _ints(0)
    _trtri(uplo.ctypes, diag.ctypes, nn.ctypes, a.ctypes, nn.ctypes, info.ctypes)
    return info[0]


@numba.njit(cache=True)
def lauum_lower(a: np.ndarray) -> int:  # pragma: no cover - runs inside Numba
    """Lower triangle of ``a <- a'a`` for lower-triangular ``a``; returns info."""
    n = a.shape[0]
    uplo, nn, info = _ints(_U), _ints(n), _ints(0)
    _lauum(uplo.ctypes, nn.ctypes, a.ctypes, nn.ctypes, info.ctypes)
    return info[0]
