"""BLAS and LAPACK calls on blocks of a dense C-ordered matrix, callable from Numba.

The pieces of :mod:`hierlm.objective.dense_parallel`: each function works on blocks of
one ``(m, m)`` C-ordered array ``a`` in place and releases the GIL, so two of them can
run at once on two threads.  BLAS sees a C-ordered array as the Fortran matrix
``F = a'`` (leading dimension ``m``); all offsets here are Fortran ones: the block
``F[i0:, j0:]`` starts at ``a[j0, i0]``.  A lower triangle in C order is an upper
triangle of ``F``, so everything is written for upper triangles
(``S = F'F``, ``F`` upper).
"""

from __future__ import annotations

from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from numba.core import types
from numba.core.extending import get_cython_function_address

from hierlm.objective.jit import lapack
from hierlm.objective.jit.lapack import _ints

_I32P = types.CPointer(types.int32)
_F64P = types.CPointer(types.float64)


def _bind_blas(name: str, args: list[Any]) -> types.ExternalFunction:
    """Declare SciPy's ``cython_blas`` routine ``name`` (as :func:`lapack._bind`)."""
    symbol = f"hierlm_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_blas", name))
    return types.ExternalFunction(symbol, types.void(*args))


_C, _I, _D = _I32P, _I32P, _F64P  # char*, int*, double*
# (transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
_gemm: Any = _bind_blas("dgemm", [_C, _C, _I, _I, _I, _D, _D, _I, _D, _I, _D, _D, _I])
# (uplo, trans, n, k, alpha, a, lda, beta, c, ldc)
_syrk: Any = _bind_blas("dsyrk", [_C, _C, _I, _I, _D, _D, _I, _D, _D, _I])
# (side, uplo, transa, diag, m, n, alpha, a, lda, b, ldb)
_trsm: Any = _bind_blas("dtrsm", [_C, _C, _C, _C, _I, _I, _D, _D, _I, _D, _I])
_trmm: Any = _bind_blas("dtrmm", [_C, _C, _C, _C, _I, _I, _D, _D, _I, _D, _I])
_U, _N, _T, _L, _R = ord("U"), ord("N"), ord("T"), ord("L"), ord("R")


@numba.njit(cache=True)
def _f(x: float) -> np.ndarray:  # pragma: no cover - runs inside Numba
    out = np.empty(1)
    out[0] = x
    return out


@numba.njit(cache=True, nogil=True)
def potrf(a: np.ndarray, i0: int, n: int) -> int:  # pragma: no cover
    """``F[i0:i0+n, i0:i0+n] <- its upper Cholesky factor``; LAPACK's info."""
    info = _ints(0)
    lapack._potrf(_ints(_U).ctypes, _ints(n).ctypes, a[i0:, i0:].ctypes,
                  _ints(a.shape[0]).ctypes, info.ctypes)
    return info[0]


@numba.njit(cache=True, nogil=True)
def trtri(a: np.ndarray, i0: int, n: int) -> int:  # pragma: no cover
    """``F[i0:i0+n, i0:i0+n] <- its inverse`` (upper triangular); LAPACK's info."""
    info = _ints(0)
    lapack._trtri(_ints(_U).ctypes, _ints(_N).ctypes, _ints(n).ctypes, a[i0:, i0:].ctypes,
                  _ints(a.shape[0]).ctypes, info.ctypes)
    return info[0]


@numba.njit(cache=True, nogil=True)
def lauum(a: np.ndarray, i0: int, n: int) -> int:  # pragma: no cover
    """``F[i0:i0+n, i0:i0+n] <- F F'`` (upper triangle, ``F`` upper); LAPACK's info."""
    info = _ints(0)
    lapack._lauum(_ints(_U).ctypes, _ints(n).ctypes, a[i0:, i0:].ctypes,
                  _ints(a.shape[0]).ctypes, info.ctypes)
    return info[0]


@numba.njit(cache=True, nogil=True)
def trsm_left_upper_t(a: np.ndarray, i0: int, c: int, j0: int,
                      n: int) -> None:  # pragma: no cover
    """``F[i0:i0+c, j0:j0+n] <- U^{-T} F[i0:i0+c, j0:j0+n]``, ``U = F[i0:i0+c, i0:i0+c]``."""
    lda = _ints(a.shape[0])
    _trsm(_ints(_L).ctypes, _ints(_U).ctypes, _ints(_T).ctypes, _ints(_N).ctypes,
          _ints(c).ctypes, _ints(n).ctypes, _f(1.0).ctypes, a[i0:, i0:].ctypes, lda.ctypes,
          a[j0:, i0:].ctypes, lda.ctypes)


@numba.njit(cache=True, nogil=True)
def syrk_t(a: np.ndarray, i0: int, c: int, j0: int, n: int,
           alpha: float) -> None:  # pragma: no cover
    """Upper ``F[j0:j0+n, j0:j0+n] += alpha B'B``, ``B = F[i0:i0+c, j0:j0+n]``."""
    lda = _ints(a.shape[0])
    _syrk(_ints(_U).ctypes, _ints(_T).ctypes, _ints(n).ctypes, _ints(c).ctypes,
          _f(alpha).ctypes, a[j0:, i0:].ctypes, lda.ctypes, _f(1.0).ctypes,
          a[j0:, j0:].ctypes, lda.ctypes)


@numba.njit(cache=True, nogil=True)
def gemm_t(a: np.ndarray, i0: int, c: int, j0: int, n0: int, j1: int, n1: int,
           alpha: float) -> None:  # pragma: no cover
    """``F[j0:j0+n0, j1:j1+n1] += alpha B0'B1``, ``Bk = F[i0:i0+c, jk:jk+nk]``."""
    lda = _ints(a.shape[0])
    _gemm(_ints(_T).ctypes, _ints(_N).ctypes, _ints(n0).ctypes, _ints(n1).ctypes,
          _ints(c).ctypes, _f(alpha).ctypes, a[j0:, i0:].ctypes, lda.ctypes,
          a[j1:, i0:].ctypes, lda.ctypes, _f(1.0).ctypes, a[j1:, j0:].ctypes, lda.ctypes)


@numba.njit(cache=True, nogil=True)
def trmm_left(a: np.ndarray, i0: int, c: int, j0: int, n: int) -> None:  # pragma: no cover
    """``F[i0:i0+c, j0:j0+n] <- U F[i0:i0+c, j0:j0+n]``, ``U = F[i0:i0+c, i0:i0+c]`` upper."""
    lda = _ints(a.shape[0])
    _trmm(_ints(_L).ctypes, _ints(_U).ctypes, _ints(_N).ctypes, _ints(_N).ctypes,
          _ints(c).ctypes, _ints(n).ctypes, _f(1.0).ctypes, a[i0:, i0:].ctypes, lda.ctypes,
          a[j0:, i0:].ctypes, lda.ctypes)


@numba.njit(cache=True, nogil=True)
def trmm_right(a: np.ndarray, r0: int, r: int, j0: int, n: int, trans: bool, alpha: float,
               b: np.ndarray, ldb: int) -> None:  # pragma: no cover
    """``B <- alpha B op(U)`` for the ``r x n`` Fortran block ``B`` starting at the flat
    position 0 of ``b`` (leading dimension ``ldb``), ``U = F[j0:j0+n, j0:j0+n]`` upper,
    ``op(U) = U'`` when ``trans``.  ``r0`` is unused (the caller's offset is in ``b``)."""
    lda = _ints(a.shape[0])
    _trmm(_ints(_R).ctypes, _ints(_U).ctypes, _ints(_T if trans else _N).ctypes,
          _ints(_N).ctypes, _ints(r).ctypes, _ints(n).ctypes, _f(alpha).ctypes,
          a[j0:, j0:].ctypes, lda.ctypes, b.ctypes, _ints(ldb).ctypes)


@numba.njit(cache=True, nogil=True)
def syrk_n_into(a: np.ndarray, i0: int, c: int, b: np.ndarray, ldb: int,
                n: int) -> None:  # pragma: no cover
    """Upper ``F[i0:i0+c, i0:i0+c] += B B'`` for the ``c x n`` Fortran block ``B`` at the
    start of ``b`` (leading dimension ``ldb``)."""
    lda = _ints(a.shape[0])
    _syrk(_ints(_U).ctypes, _ints(_N).ctypes, _ints(c).ctypes, _ints(n).ctypes,
          _f(1.0).ctypes, b.ctypes, _ints(ldb).ctypes, _f(1.0).ctypes, a[i0:, i0:].ctypes,
          lda.ctypes)


@numba.njit(cache=True, nogil=True)
def copy_block(a: np.ndarray, i0: int, r: int, j0: int, n: int, out: np.ndarray,
               to_a: bool) -> None:  # pragma: no cover
    """Copy the Fortran block ``F[i0:i0+r, j0:j0+n]`` to ``out`` (C shape ``(n, r)``, the
    same block as a Fortran ``r x n`` matrix with leading dimension ``r``), or back."""
    for j in range(n):
        for i in range(r):
            if to_a:
                a[j0 + j, i0 + i] = out[j, i]
            else:
                out[j, i] = a[j0 + j, i0 + i]
