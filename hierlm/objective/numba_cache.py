"""Numba's on-disk cache made safe to use: unwritable or damaged, it only costs time.

PyTensor keeps Numba's machine code under ``<base_compiledir>/numba``
(``pytensor.link.numba.cache.NUMBA_CACHE_PATH``), creating that folder when the
module is imported, and Numba reads its cache files with ``pickle``.  Two ways this
failed:

* a compile directory that cannot be written (an empty read-only folder given as
  ``PYTENSOR_FLAGS=base_compiledir=...``): importing the module raised
  ``PermissionError`` / ``OSError``;
* a damaged cache file (a truncated index ``.nbi`` or data ``.nbc``, e.g. after a
  full disk or a killed process): Numba raised ``UnpicklingError``.

:func:`prepare` (called before hierlm first uses Numba) points the cache at a fresh
temporary folder when the configured one cannot be written, so this process compiles
and nothing is kept across processes, and makes Numba treat a cache file that cannot
be unpickled as absent, so the function is compiled again and the file rewritten.
"""

from __future__ import annotations

import functools
import pickle
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytensor

__all__ = ["prepare"]

_MODULE = "pytensor.link.numba.cache"
#: What unpickling a damaged file raises (truncated, overwritten, or from elsewhere).
DAMAGED = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
           ImportError, IndexError, KeyError)
_LOCK = threading.Lock()


def writable_dir(folder: Path) -> bool:
    """Whether ``folder`` exists or can be made, and a file can be created in it.

    Examples
    --------
    >>> import tempfile
    >>> writable_dir(Path(tempfile.mkdtemp()) / "new")
    True
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


def _import_cache_module() -> Any:
    """``pytensor.link.numba.cache``, imported with a temporary compile directory
    when the configured one cannot be written."""
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    config = pytensor.config
    if writable_dir(Path(config.base_compiledir) / "numba"):
        import pytensor.link.numba.cache as module

        return module
    fallback = Path(tempfile.mkdtemp(prefix="hierlm-compiledir-"))
    # The module makes its folder from ``config.base_compiledir`` on import, and that
    # setting cannot be changed once read: its value is swapped for the import only.
    param = type(config).__dict__["base_compiledir"]
    configured = param.val
    param.val = fallback
    try:
        import pytensor.link.numba.cache as module
    finally:
        param.val = configured
    module.NUMBA_CACHE_PATH = fallback / "numba"
    return module


def _tolerate_damaged_files() -> None:
    """Numba's cache file reader with a damaged file read as a missing one."""
    from numba.core.caching import IndexDataCacheFile

    load_index, load_data = IndexDataCacheFile._load_index, IndexDataCacheFile._load_data
    if getattr(load_index, "_hierlm", False):
        return

    @functools.wraps(load_index)
    def _load_index(self: Any) -> Any:
        try:
            return load_index(self)
        except DAMAGED:
            return {}  # as for a missing index: compiled again, index rewritten

    @functools.wraps(load_data)
    def _load_data(self: Any, name: str) -> Any:
        try:
            return load_data(self, name)
        except DAMAGED as exc:
            # ``load`` reads an OSError as a data file removed under the index
            raise OSError(f"damaged Numba cache file {name}") from exc

    _load_index._hierlm = True  # type: ignore[attr-defined]
    IndexDataCacheFile._load_index = _load_index  # type: ignore[method-assign]
    IndexDataCacheFile._load_data = _load_data  # type: ignore[method-assign]


def prepare() -> Path:
    """Make Numba's cache usable (see the module docstring); returns its folder.

    Examples
    --------
    >>> prepare().name
    'numba'
    """
    with _LOCK:
        module = _import_cache_module()
        _tolerate_damaged_files()
    return Path(module.NUMBA_CACHE_PATH)
