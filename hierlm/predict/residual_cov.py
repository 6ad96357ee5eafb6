"""The residual covariance of a fit with ``residual=`` / ``sigma=``, for any rows.

For rows ``r, s`` with correlation groups ``g``, times ``t``, log-SD rows ``v`` and
prior weights ``w``::

    Cov(e_r, e_s) = sigma^2 s_r s_s C_rs,   s_r = exp(v_r' delta) / sqrt(w_r)
    C_rs = [g_r == g_s] phi^|t_r - t_s|          (ar1, car1)
    C_rs = [g_r == g_s] (rho + (1 - rho)[r == s]) (cs)

and ``C = I`` without a structure.  Two rows share a group when their labels are equal,
whether or not the group was seen in fitting.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.residual_design import ResidualDesign
from hierlm.errors import DataError, MethodError


def residual_design_of(res: Any) -> ResidualDesign:
    """The residual structure of a fit (``res.model.residual``), or a MethodError."""
    model = getattr(res, "model", None)
    rd = None if model is None else getattr(model, "residual", None)
    if rd is None:
        raise MethodError("the residual structure of this fit is not available: a result "
                          "read from disk has no model; refit it with residual= / sigma=")
    return rd


def _rho_delta(res: Any, rd: ResidualDesign) -> tuple[float, np.ndarray]:
    par = res.residual_parameters.to_numpy(dtype=float)
    return (float(par[0]) if rd.spec is not None else 0.0), par[rd.n_corr:]


def rows_of(res: Any, frame: pd.DataFrame | None, weights: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group labels, times and relative SDs ``s`` of the fitting rows (``frame`` None)
    or of new rows."""
    rd = residual_design_of(res)
    _, delta = _rho_delta(res, rd)
    spec = rd.spec
    if frame is None:
        group, time, V = rd.group.astype(object), rd.time, rd.V
    else:
        need = [c for c in (spec.columns if spec is not None else ()) if c not in frame.columns]
        if need:
            raise DataError(f"rows need the residual structure's column(s): {', '.join(need)}")
        group = (frame[spec.group].astype(str).to_numpy(dtype=object) if spec is not None
                 else np.arange(len(frame)).astype(object))
        time = (frame[spec.time].to_numpy(dtype=float) if spec is not None and spec.time
                else np.zeros(len(frame)))
        V = rd.v_of(frame)
    if spec is None:
        group = np.arange(len(time)).astype(object)
    s = (np.exp(V @ delta) if V.shape[1] else np.ones(len(time))) / np.sqrt(weights)
    return group, time, s


def _corr(kind: str | None, rho: float, t: np.ndarray) -> np.ndarray:
    n = len(t)
    if kind is None:
        return np.eye(n)
    if kind == "cs":
        return np.full((n, n), rho) + (1.0 - rho) * np.eye(n)
    return np.power(rho, np.abs(t[:, None] - t[None, :]))


def residual_covariance(res: Any, frame: pd.DataFrame | None, weights: np.ndarray,
                        draws: Any = None) -> np.ndarray:
    """The dense residual covariance ``sigma^2 S C S`` of the rows (module docstring).

    ``draws`` (a NUTS fit's :class:`~hierlm.predict.posterior.PosteriorDraws`): its
    posterior mean instead, ``sigma^2 S C S`` averaged over the draws of ``sigma``,
    the correlation and the log SD ratios.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, residual="ar1(Days | Subject)")
    >>> rows = pd.DataFrame({"Days": [0, 2], "Subject": ["a", "a"]})
    >>> R = residual_covariance(res, rows, np.ones(2))
    >>> bool(np.isclose(R[0, 1], res.sigma**2 * res.residual_parameters["rho"] ** 2))
    True
    """
    rd = residual_design_of(res)
    rho, _ = _rho_delta(res, rd)
    group, time, s = rows_of(res, frame, weights)
    kind = None if rd.spec is None else rd.spec.kind
    same = group[:, None] == group[None, :]
    if draws is not None:
        V = rd.V if frame is None else rd.v_of(frame)
        n = len(draws.sigma)
        rhos = np.zeros(n) if draws.rho is None else draws.rho
        deltas = np.zeros((n, 0)) if draws.log_sd_ratio is None else draws.log_sd_ratio
        out = np.zeros((len(time), len(time)))
        for sig, r, delta in zip(draws.sigma, rhos, deltas, strict=True):
            sd = (np.exp(V @ delta) if V.shape[1] else np.ones(len(time))) / np.sqrt(weights)
            out += sig**2 * sd[:, None] * np.where(same, _corr(kind, r, time), 0.0) * sd[None, :]
        return out / n
    C = np.where(same, _corr(kind, rho, time), 0.0)
    return float(res.sigma) ** 2 * s[:, None] * C * s[None, :]


def residual_draws(res: Any, frame: pd.DataFrame | None, weights: np.ndarray, nsim: int,
                   rng: np.random.Generator) -> np.ndarray:
    """``nsim`` draws of the residuals of the rows, shape ``(n, nsim)``, one group at a time.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, residual="cs(1 | Subject)")
    >>> residual_draws(res, None, np.ones(180), 3, np.random.default_rng(1)).shape
    (180, 3)
    """
    rd = residual_design_of(res)
    rho, _ = _rho_delta(res, rd)
    group, time, s = rows_of(res, frame, weights)
    kind = None if rd.spec is None else rd.spec.kind
    out = rng.standard_normal((len(time), nsim))
    if kind is not None:
        _, inv = np.unique(group.astype(str), return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.flatnonzero(np.diff(inv[order])) + 1
        for idx in np.split(order, bounds):
            L = np.linalg.cholesky(_corr(kind, rho, time[idx]))
            out[idx] = L @ out[idx]
    return float(res.sigma) * s[:, None] * out
