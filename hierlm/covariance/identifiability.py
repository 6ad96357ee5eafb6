"""Structures that are not identified beside the residual variance.

For an observation of group ``g`` whose term row is a unit vector ``e_j`` (an
indicator column, as ``0 + f`` gives) the marginal covariance of the group's
observations is ``X_g Sigma X_g' + sigma^2 I``.  When no two observations of a group
share a column, ``X_g X_g' = I``, so ``(Sigma + delta I, sigma^2 - delta)`` gives the same
likelihood for every small ``delta``.  A structure whose family is closed under adding
``delta I`` then has a flat likelihood along that line: ``diag`` and ``hom`` ``diag``
(variances plus delta), homogeneous ``cs`` and ``toep`` (one variance plus delta, the
covariances unchanged, all correlations scaled alike).  The heterogeneous ``toep`` (one
SD per column) is not closed under it: its ``p (p - 1) / 2`` covariances
``rho_|i-j| s_i s_j`` tie the SDs, so with ``p >= 4`` the ``2 p`` parameters (with
``sigma``) are identified by the ``p (p + 1) / 2`` moments; on Orthodont (4 ages) its
REML optimum is a point, not a ridge (``tests/covariance/test_reference_brute.py``).
"""

from __future__ import annotations

import numpy as np

from hierlm.design.terms import ModelDesign

#: Structures not identified beside the residual with one observation per group and column.
CONFOUNDED = ("diag", "homdiag", "homcs", "homtoep")


def one_per_cell(codes: np.ndarray, X: np.ndarray) -> bool:
    """Whether every row of ``X`` is a unit vector and no group repeats a column.

    Examples
    --------
    >>> one_per_cell(np.array([0, 0, 1, 1]), np.array([[1., 0], [0, 1], [1, 0], [0, 1]]))
    True
    >>> one_per_cell(np.array([0, 0, 1, 1]), np.array([[1., 0], [1, 0], [1, 0], [0, 1]]))
    False
    """
    X = np.asarray(X, dtype=float)
    if X.shape[0] == 0:
        return False
    nonzero = X != 0
    if not (np.all(nonzero.sum(axis=1) == 1) and np.all(X[nonzero] == 1.0)):
        return False
    cell = np.asarray(codes, dtype=np.int64) * X.shape[1] + np.argmax(nonzero, axis=1)
    return bool(np.unique(cell).size == cell.size)


def unidentified_terms(design: ModelDesign) -> list[str]:
    """One message per term whose structure is confounded with the residual variance.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> unidentified_terms(d)
    []
    """
    out = []
    for term in design.terms:
        structure = getattr(term, "structure", "us")
        if structure in CONFOUNDED and one_per_cell(term.codes, term.X):
            out.append(
                f"the {structure} covariance of the term on '{term.group}' is not identifiable "
                f"beside the residual variance: each '{term.group}' has at most one "
                f"observation per column ({', '.join(term.coef_names)}), so a common amount "
                f"of variance moves between the term's variances and sigma^2 without "
                f"changing the likelihood; its SDs and sigma are arbitrary along that line. "
                f"Use replicated observations per cell or a structure such as ar1 or cs")
    return out
