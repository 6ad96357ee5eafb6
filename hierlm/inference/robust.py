"""Cluster-robust (sandwich) covariance of beta-hat: clubSandwich's CR2 for lmer fits.

With clusters ``j`` (levels of the outermost grouping factor, in which every other
grouping factor is nested), the working model is the fitted marginal covariance in
units of ``sigma^2``, ``V_j = Z_j Lambda Lambda' Z_j' + I``, ``W_j = V_j^-1``, and
``M = (sum_j X_j' W_j X_j)^-1``.  With the marginal residuals ``e_j = y_j - X_j beta-hat``
(clubSandwich's ``vcov_CR`` with ``inverse_var = TRUE``; with ``residual=`` / ``sigma=``
the identity in ``V_j`` is the residual covariance ``R0_j``,
:mod:`hierlm.inference.residual_robust`)::

    V^CR = M [sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j] M,

where CR0 has ``A_j = I`` and CR2 (Bell & McCaffrey; Pustejovsky & Tipton 2018)
``A_j = R_j' G_j^{-1/2} R_j`` with ``V_j = R_j' R_j`` (upper Cholesky factor) and
``G_j = R_j (I - X_j M X_j' W_j) V_j R_j'`` (the inverse square root over the
eigenvalues above 1e-12, as clubSandwich's ``matrix_power``).

The Satterthwaite df of coefficient ``i`` (``coef_test(test = "Satterthwaite")``): with
``E_j = M X_j' W_j A_j``, ``G_j = E_j R_j'`` and ``H_j = E_j X_j L_M`` (``M = L_M L_M'``),
the ``J x J`` matrix ``P_i[j, k] = delta_jk ||G_j[i]||^2 - H_j[i] . H_k[i]`` gives

    df_i = (tr P_i)^2 / sum(P_i^2).

Every matrix is per cluster (``n_j x n_j``); nothing is ``n x n``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.stats

from hierlm.covariance.layout import templates
from hierlm.errors import MethodError
from hierlm.inference.fitted import require_model
from hierlm.inference.residual_robust import residual_blocks
from hierlm.objective.gram import term_matrix

TYPES = ("CR0", "CR2")


def _inv_sqrt(G: np.ndarray) -> np.ndarray:
    w, U = np.linalg.eigh(0.5 * (G + G.T))
    wp = np.where(w > 1e-12, 1.0 / np.sqrt(np.where(w > 1e-12, w, 1.0)), 0.0)
    return np.asarray((U * wp) @ U.T)


def _clusters(res: Any, design: Any, cluster: str | None) -> tuple[np.ndarray, str]:
    codes = [t.codes for t in design.terms]
    if not codes:
        raise MethodError("cluster-robust SEs need a model with random effects")
    if cluster is None:
        # clubSandwich's get_outer_group: the grouping factor with the fewest levels
        k = int(np.argmin([t.n_levels for t in design.terms]))
        cl, name = codes[k], design.terms[k].group
    else:
        frame = getattr(res.coder, "frame", None)
        if not isinstance(cluster, str) or frame is None or cluster not in frame.columns:
            raise MethodError(f"cluster must name a predictor or grouping column of the "
                              f"model, got {cluster!r}")
        cl = pd.factorize(frame[cluster].to_numpy())[0]
        name = cluster
    for t in design.terms:
        per = pd.Series(cl).groupby(t.codes).nunique()
        if (per > 1).any():
            raise MethodError(f"cluster-robust SEs need every grouping factor nested in the "
                              f"cluster '{name}', but '{t.group}' is not (crossed random "
                              f"effects: clubSandwich refuses them too)")
    if len(np.unique(cl)) < 2:
        raise MethodError(f"cluster '{name}' has a single level")
    return np.asarray(cl), name


def robust_parts(res: Any, type: str = "CR2", cluster: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """``(V^CR, df)``: the cluster-robust covariance of beta-hat and each coefficient's
    Satterthwaite df, and the cluster's name.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> V, df, name = robust_parts(res)
    >>> name, np.sqrt(np.diag(V)).round(3).tolist(), df.round(2).tolist()
    ('Subject', [6.825, 1.546], [17.0, 17.0])
    """

    kind = type.upper() if isinstance(type, str) else None
    if kind not in TYPES:
        raise MethodError(f"unknown robust vcov type {type!r}; use 'CR2' or 'CR0'")
    model = require_model(res, "cluster-robust SEs", residual_ok=True)
    design = model.design
    if design.weights is not None:
        raise MethodError("cluster-robust SEs of a model with prior weights are not "
                          "supported (neither are they by clubSandwich)")
    cl, name = _clusters(res, design, cluster)
    R0 = residual_blocks(res, getattr(model, "residual", None))
    X = design.X
    Z = sp.hstack([term_matrix(t) for t in design.terms], format="csr")
    Lam = sp.block_diag([sp.kron(sp.identity(t.n_levels), sp.csr_matrix(T))
                         for t, T in zip(design.terms, templates(design, res.theta),
                                         strict=True)], format="csr")
    K = (Z @ Lam).tocsr()
    offset = 0.0 if design.offset is None else design.offset
    e = design.y - offset - X @ res.fixef.to_numpy()
    groups = [np.flatnonzero(cl == g) for g in np.unique(cl)]
    p = X.shape[1]
    parts = []
    XWX = np.zeros((p, p))
    for idx in groups:
        Kj = K[idx]
        Kj = Kj[:, np.unique(Kj.indices)].toarray()
        Vj = Kj @ Kj.T + R0(idx)
        Rj = sla.cholesky(Vj, lower=False)
        WXj = sla.cho_solve((Rj, False), X[idx])
        XWX += X[idx].T @ WXj
        parts.append((idx, Vj, Rj, WXj))
    M = np.linalg.inv(XWX)
    M = 0.5 * (M + M.T)
    LM = np.linalg.cholesky(M)
    meat = np.zeros((p, p))
    Gn, H = [], []
    for idx, Vj, Rj, WXj in parts:
        Xj = X[idx]
        if kind == "CR2":
            IH = np.eye(len(idx)) - Xj @ M @ WXj.T
            G = Rj @ IH @ Vj @ Rj.T
            A = Rj.T @ _inv_sqrt(G) @ Rj
        else:
            A = np.eye(len(idx))
        E = WXj.T @ A                                # X_j' W_j A_j
        u = E @ e[idx]
        meat += np.outer(u, u)
        ME = M @ E
        Gn.append(np.sum((ME @ Rj.T) ** 2, axis=1))  # ||G_j[i]||^2
        H.append(ME @ Xj @ LM)                       # p x p
    V = M @ meat @ M
    Hs = np.stack(H)                                 # J x p x p
    df = np.empty(p)
    for i in range(p):
        Pm = -Hs[:, i, :] @ Hs[:, i, :].T
        Pm[np.diag_indices_from(Pm)] += np.array([g[i] for g in Gn])
        df[i] = np.trace(Pm) ** 2 / float(np.sum(Pm**2))
    return 0.5 * (V + V.T), df, name


def vcov_robust(res: Any, type: str = "CR2", cluster: str | None = None) -> pd.DataFrame:
    """Cluster-robust covariance of beta-hat (clubSandwich's ``vcovCR``), by coefficient.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> vcov_robust(res).shape
    (2, 2)
    """
    V, _, _ = robust_parts(res, type, cluster)
    names = list(res.fixef.index)
    return pd.DataFrame(V, index=names, columns=names)


def robust_coef_table(res: Any, type: str = "CR2", cluster: str | None = None
                      ) -> pd.DataFrame:
    """``estimate, se, df, t, p`` with cluster-robust SEs and Satterthwaite df
    (clubSandwich's ``coef_test(fit, vcov = "CR2", test = "Satterthwaite")``).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> robust_coef_table(res).round(3).loc["Days", ["se", "df"]].tolist()
    [1.546, 17.0]
    """
    V, df, _ = robust_parts(res, type, cluster)
    est = res.fixef.to_numpy()
    se = np.sqrt(np.diag(V))
    t = est / se
    p = 2.0 * scipy.stats.t.sf(np.abs(t), df)
    return pd.DataFrame({"estimate": est, "se": se, "df": df, "t": t, "p": p},
                        index=list(res.fixef.index))
