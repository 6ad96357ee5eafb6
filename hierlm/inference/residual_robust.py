"""The residual part of the working covariance for cluster-robust SEs.

For a fit with ``residual=`` / ``sigma=`` the marginal covariance of cluster ``j`` in
units of ``sigma^2`` is ``V_j = K_j K_j' + R0_j`` (``K = Z Lambda``), with ``R0_j = S_j
C_j S_j``: ``S_j`` the rows' relative residual SDs ``s_i = exp(v_i' delta)``
(:func:`hierlm.objective.residual_gram.relative_sd`) and ``C_j`` the correlation of the
rows, ``phi^|t_i - t_k|`` (``ar1``, ``car1``) or ``rho`` (``cs``) for two rows of one
correlation group and 0 otherwise.  That is clubSandwich's working model for an nlme
``lme`` fit (its ``targetVariance``).  The correlation groups must lie within the
clusters, so that ``V`` is block diagonal over them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hierlm.design.residual_design import ResidualDesign
from hierlm.objective.residual_gram import relative_sd


def residual_blocks(res: Any, rd: ResidualDesign | None) -> Callable[[np.ndarray], np.ndarray]:
    """``idx -> R0_j``, the residual covariance over ``sigma^2`` of the rows ``idx``
    (the identity without a residual structure).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, residual="ar1(Days | Subject)")
    >>> R0 = residual_blocks(res, res.model.residual)(np.arange(10))
    >>> bool(np.isclose(R0[0, 2], res.residual_parameters["rho"] ** 2))
    True
    """
    if rd is None:
        return lambda idx: np.eye(len(idx))
    par = res.residual_parameters.to_numpy(dtype=float)
    rho = float(par[0]) if rd.spec is not None else 0.0
    s = relative_sd(rd, par[rd.n_corr:])
    kind = None if rd.spec is None else rd.spec.kind

    def block(idx: np.ndarray) -> np.ndarray:
        g, t = rd.group[idx], rd.time[idx]
        if kind is None:
            C = np.eye(len(idx))
        elif kind == "cs":
            C = np.full((len(idx), len(idx)), rho) + (1.0 - rho) * np.eye(len(idx))
        else:
            C = np.power(rho, np.abs(t[:, None] - t[None, :]))
        C = np.where(g[:, None] == g[None, :], C, 0.0)
        return np.asarray(s[idx, None] * C * s[None, idx])

    return block
