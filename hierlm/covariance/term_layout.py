"""theta's layout within one term: where each of its entries sits in the term's template.

A term with ``p`` coefficients per level has a lower-triangular ``p x p`` template
``T`` (``Sigma = sigma^2 T T'``).  Its slice of theta is ``T``'s lower triangle read
column by column (lme4's packing, :func:`hierlm.covariance.layout.tril_colmajor`), so
entry ``k`` of the slice is ``T[rows[k], cols[k]]``; the diagonal entries have the
lower bound 0.  ``T`` and ``T D`` (``D`` a diagonal of signs) give the same
``Sigma``: :meth:`TermLayout.canonical_signs` picks the one with a non-negative
diagonal.

Every covariance object (:class:`hierlm.covariance.base.Covariance`) is a
:class:`TermLayout`; code that knows only a term's size (the shape-keyed PyTensor
graphs) asks ``TermLayout(p)``.  No module outside the covariance layer indexes
theta itself.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from hierlm.covariance.layout import tril_colmajor


@functools.cache
def _index(p: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = tril_colmajor(p)
    rows.flags.writeable = False
    cols.flags.writeable = False
    return rows, cols


@functools.cache
def _diagonal(p: int) -> tuple[int, ...]:
    """Positions of a ``p x p`` template's diagonal in its theta slice (Python ints)."""
    rows, cols = _index(p)
    return tuple(int(k) for k in np.flatnonzero(rows == cols))


class TermLayout:
    """Positions of a ``p``-coefficient term's theta entries in its template.

    Parameters
    ----------
    p : int
        Coefficients per level of the term.

    Examples
    --------
    >>> lay = TermLayout(2)
    >>> [a.tolist() for a in lay.template_index()], lay.diagonal_index().tolist()
    ([[0, 1, 1], [0, 0, 1]], [0, 2])
    >>> lay.unpack(np.array([1.0, 0.5, 2.0])).tolist()
    [[1.0, 0.0], [0.5, 2.0]]
    """

    p: int

    def __init__(self, p: int) -> None:
        self.p = int(p)

    def template_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column in the template of each theta entry (read-only arrays)."""
        return _index(self.p)

    def diagonal_index(self) -> np.ndarray:
        """Positions, in the term's theta slice, of the template's diagonal entries.

        Examples
        --------
        >>> TermLayout(3).diagonal_index().tolist()
        [0, 3, 5]
        """
        return np.array(_diagonal(self.p), dtype=np.int64)

    def unpack(self, theta: np.ndarray) -> np.ndarray:
        """The template ``T`` from the term's theta slice (leading dimensions kept).

        Examples
        --------
        >>> TermLayout(2).unpack(np.array([[1.0, 0.5, 2.0], [3.0, 0.0, 1.0]])).shape
        (2, 2, 2)
        """
        theta = np.asarray(theta, dtype=float)
        rows, cols = self.template_index()
        if theta.ndim == 0 or theta.shape[-1] != len(rows):
            raise ValueError(f"a {self.p}-coefficient term has {len(rows)} theta entries, "
                             f"got shape {theta.shape}")
        T = np.zeros((*theta.shape[:-1], self.p, self.p))
        T[..., rows, cols] = theta
        return T

    def pack(self, T: Any) -> Any:
        """The term's theta slice from its template ``T`` (``(..., p, p)``; a NumPy array
        or a PyTensor tensor).

        Examples
        --------
        >>> TermLayout(2).pack(np.array([[1.0, 0.0], [0.5, 2.0]])).tolist()
        [1.0, 0.5, 2.0]
        """
        rows, cols = self.template_index()
        return T[..., rows, cols]

    def canonical_signs(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flip the template columns with a negative diagonal (``T T'`` is unchanged):
        the flipped slice and a mask of the entries whose sign changed.

        Examples
        --------
        >>> out, flipped = TermLayout(2).canonical_signs(np.array([-1.0, 0.5, 2.0]))
        >>> out.tolist(), flipped.tolist()
        ([1.0, -0.5, 2.0], [True, True, False])
        """
        out = np.array(theta, dtype=float)
        flipped = np.zeros(out.shape, dtype=bool)
        diag = _diagonal(self.p)
        values = out.tolist()
        if not any(values[k] < 0 for k in diag):  # (the usual case: nothing to flip)
            return out, flipped
        _, cols = self.template_index()
        for j, k in enumerate(diag):
            if out[k] < 0:
                col = cols == j
                out[col] = -out[col]
                flipped[col] = True
        return out, flipped

    def generators(self) -> np.ndarray:
        """For each theta entry ``(a, b)``, the derivative of a symmetric ``p x p`` matrix
        by its ``(a, b)`` entry: ``E_ab + E_ba`` (``E_aa`` on the diagonal), shape
        ``(g, p, p)`` (Kenward-Roger's generators of a term's covariance).

        Examples
        --------
        >>> TermLayout(2).generators()[1].tolist()
        [[0.0, 1.0], [1.0, 0.0]]
        """
        rows, cols = self.template_index()
        g = len(rows)
        E = np.zeros((g, self.p, self.p))
        E[np.arange(g), rows, cols] = 1.0
        E[np.arange(g), cols, rows] = 1.0
        return E
