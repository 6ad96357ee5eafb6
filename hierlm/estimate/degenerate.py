"""A response that the model reproduces exactly: no maximum of the likelihood.

If ``y`` lies in the column space of ``[X Z]`` (a response constant within the groups
of a grouping factor, such as the group's number, or exactly linear in ``X``), the
penalized residual ``r^2(theta)`` tends to 0 as theta grows, and with it sigma: the
REML criterion and the ML deviance decrease without bound
(``n log r^2 -> -infinity``).  There is no estimate; an optimizer stops wherever its
tolerance says, with estimates that depend on where (lme4 1.1-31 gives an intercept of
4.571 with sigma 8.7e-8 for ``y`` = the group number of 8 groups of 5, where the limit
is 4.5).  :func:`check_exact_fit` tells this case apart: least squares of ``y`` on
``[X Z]`` (all random-effect columns unpenalized) leaves a residual at rounding level.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from hierlm.design.terms import ModelDesign
from hierlm.design.weights import working_design
from hierlm.errors import DataError
from hierlm.objective.gram import term_matrix

#: ``||y - [X Z] c|| / ||y||`` at or below this is an exact fit: far above double
#: rounding (~1e-15), far below any measured noise.
EXACT_TOL = 1e-9
#: Dense least squares up to this many entries of ``[X Z]``; LSQR beyond.
DENSE_MAX = 2_000_000


def relative_residual(design: ModelDesign, groups: list[int] | None = None) -> float:
    """``||y - [X Z] c|| / ||y||`` at the least-squares ``c``, with ``Z`` the columns
    of the terms ``groups`` (all terms by default).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> round(relative_residual(d), 3)
    0.075
    """
    wd = working_design(design)
    idx = range(len(wd.terms)) if groups is None else groups
    A = sp.hstack([sp.csr_matrix(wd.X), *(term_matrix(wd.terms[k]) for k in idx)]).tocsr()
    ynorm = float(np.linalg.norm(wd.y))
    if ynorm == 0.0:
        return 0.0
    if A.shape[0] * A.shape[1] <= DENSE_MAX:
        coef = np.linalg.lstsq(A.toarray(), wd.y, rcond=None)[0]
        resid = wd.y - A @ coef
    else:
        coef = spla.lsqr(A, wd.y, atol=1e-15, btol=1e-15, iter_lim=20 * A.shape[1])[0]
        resid = wd.y - A @ coef
    return float(np.linalg.norm(resid)) / ynorm


def check_exact_fit(design: ModelDesign) -> None:
    """Raise :class:`~hierlm.errors.DataError` if the model reproduces ``y`` exactly.

    Examples
    --------
    >>> import numpy as np, pandas as pd, hierlm
    >>> d = pd.DataFrame({"g": np.repeat(["a", "b", "c"], 3), "x": np.arange(9.0)})
    >>> d["y"] = d["g"].map({"a": 1.0, "b": 2.0, "c": 3.0})
    >>> check_exact_fit(hierlm.build_design("y ~ x + (1 | g)", d))
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: the response y is reproduced exactly by ... random effects of g ...
    """
    if relative_residual(design) > EXACT_TOL:
        return
    fixed_only = relative_residual(design, []) <= EXACT_TOL
    culprits = [] if fixed_only else sorted({
        t.group for k, t in enumerate(design.terms) if relative_residual(design, [k]) <= EXACT_TOL})
    by = ("by the fixed effects alone" if fixed_only else
          "by the fixed effects and the random effects of "
          + (", ".join(culprits) if culprits else ", ".join(
              sorted({t.group for t in design.terms}))))
    raise DataError(
        f"the response {design.response} is reproduced exactly {by} (residual variance 0, "
        f"e.g. a response constant within groups): the likelihood grows without bound as "
        f"sigma -> 0, so there is no estimate.  Check the response (is it a group-level "
        f"variable?) or remove the term that reproduces it")
