"""Read a saved result back as a :class:`~hierlm.results.result.FitResult`.

The fields are read and checked by :func:`hierlm.results.io.read_record`; this module
gives them the result's face.  It lies above both :mod:`hierlm.results.result` (whose
``save`` writes through :mod:`hierlm.results.io`) and :mod:`hierlm.results.io`.
"""

from __future__ import annotations

import os

from hierlm.results.io import read_record
from hierlm.results.result import FitResult


def load(path: str | os.PathLike[str]) -> FitResult:
    """Load a result written by :func:`hierlm.results.io.save` or :meth:`FitResult.save`.

    Parameters
    ----------
    path : str or path-like
        The directory that ``save`` wrote.

    Returns
    -------
    FitResult
        Equal to the saved result field by field: pandas objects with their index and
        dtypes, numpy arrays bit for bit, and the NUTS ``idata``.  Its ``model`` is None
        (the compiled graph is not saved).

    Raises
    ------
    ResultFileError
        If ``path`` is not a saved result, was written with an incompatible
        ``format_version``, or is damaged.

    Examples
    --------
    >>> import hierlm
    >>> hierlm.load("no/such/dir")
    Traceback (most recent call last):
    ...
    hierlm.errors.ResultFileError: 'no/such/dir' is not a saved hierlm result (no result.json)
    """
    return FitResult.from_record(read_record(path))
