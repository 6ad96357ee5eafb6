"""One BLAS thread for the post-fit tables' small dense algebra.

The tables' matrices are ``q x q`` and ``p x p`` with ``q`` in the hundreds: with
OpenBLAS's two threads on this 2-core machine while other processes ran, a
``1296 x 16`` pseudo-inverse took 0.44 s and three ``89 x 89`` triangular solves
0.06 s, against 0.4 ms and well under 1 ms with one thread (the fit limits BLAS the
same way, :meth:`hierlm.Model.fit`).
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from typing import Any

from threadpoolctl import ThreadpoolController


@functools.cache
def _controller() -> ThreadpoolController:
    """One controller per process: finding the BLAS libraries costs milliseconds a call."""
    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager[Any]:
    """A context in which BLAS runs on one thread.

    Examples
    --------
    >>> import numpy as np
    >>> with one_blas_thread():
    ...     float(np.linalg.pinv(np.eye(2))[0, 0])
    1.0
    """
    return _controller().limit(limits=1, user_api="blas")
