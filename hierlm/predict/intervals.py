"""Prediction-error variances from the full factor (Henderson's mixed-model equations).

Given theta and sigma, ``(beta-hat, u-hat)`` solve the system whose matrix is the
factor of the fit without its response row::

    Omega = [[Lambda'Z'WZ Lambda + I, Lambda'Z'WX], [X'WZ Lambda, X'WX]] = L L'

and ``Var([u-hat - u; beta-hat - beta]) = sigma^2 Omega^{-1}``.  A row with fixed-effect
row ``x`` and random-effect row ``z`` (zero outside the kept terms and for levels not
seen in fitting) has ``v = [Lambda'z; x]`` and::

    Var(x'beta-hat + z'b-hat - x'beta - z'b | theta, sigma) = sigma^2 |L^{-1} v|^2

hierlm's ``L`` is blocked (:mod:`hierlm.objective.gram`): ``L = [[L11, 0], [B L11^{-T},
L_R]]`` with ``L11 L11' = M`` block diagonal and ``B = blockdiag(Lambda_R', I) A_R1
Lambda_1``; so ``L^{-1} v = [w_1; w_R]`` with::

    w_1 = L11^{-1} v_1,    w_R = L_R^{-1} (v_R - B M^{-1} v_1)

computed level by level for ``w_1`` and by one triangular solve for ``w_R``.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from hierlm.design.newdata import CodedRows
from hierlm.estimate.conditional import ConditionalSampler
from hierlm.objective.profiled import ProfiledObjective

_CHUNK = 2048


def prediction_error_variance(objective: ProfiledObjective, theta: np.ndarray, sigma: float,
                              rows: CodedRows) -> np.ndarray:
    """``Var(x'beta-hat + z'b-hat - x'beta - z'b | theta, sigma)`` for each coded row.

    Only the terms in ``rows.terms`` enter ``z``; rows with a level not seen in fitting
    (code ``-1``) have ``z = 0`` for that term.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> rows = res.coder.code(None, terms=())
    >>> pev = prediction_error_variance(res.model.objective, res.theta, res.sigma, rows)
    >>> x = rows.X[:1]
    >>> bool(np.isclose(pev[0], (x @ res.vcov.to_numpy() @ x.T)[0, 0]))
    True
    """
    cs = ConditionalSampler(objective)
    f = cs.factor(np.asarray(theta, dtype=float))
    design = objective.design
    n = rows.X.shape[0]
    out = np.empty(n)
    for s in range(0, n, _CHUNK):
        sl = slice(s, min(n, s + _CHUNK))
        V = _u_rows(design, f.Ts, rows, sl)
        out[sl] = _quad(cs, f, V)
    return sigma**2 * out


def _u_rows(design: object, Ts: list[np.ndarray], rows: CodedRows, sl: slice) -> np.ndarray:
    """``[Lambda'z; x]`` for the rows ``sl``, as columns of a ``(q + p, k)`` matrix."""
    terms = design.terms  # type: ignore[attr-defined]
    q = sum(t.q for t in terms)
    X = rows.X[sl]
    k = X.shape[0]
    V = np.zeros((q + X.shape[1], k))
    V[q:] = X.T
    starts = np.concatenate([[0], np.cumsum([t.q for t in terms])])
    cols = np.arange(k)
    for ti, zx, codes in zip(rows.terms, rows.Z_X, rows.codes, strict=True):
        t, T = terms[ti], Ts[ti]
        c = codes[sl]
        ok = c >= 0
        vals = zx[sl] @ T  # (k, p): rows of z'Lambda for the row's level
        for j in range(t.p):
            V[starts[ti] + c[ok] * t.p + j, cols[ok]] += vals[ok, j]
    return V


def _quad(cs: ConditionalSampler, f: object, V: np.ndarray) -> np.ndarray:
    """``|L^{-1} v|^2`` for each column ``v`` of ``V`` (see the module docstring)."""
    L1, L_R = f.L1, f.L_R  # type: ignore[attr-defined]
    T1, lam_rest = f.Ts[0], f.lam_rest  # type: ignore[attr-defined]
    l1, p1, qr = cs.l1, cs.p1, cs.q_rest
    q1 = l1 * p1
    k = V.shape[1]
    v1 = V[:q1].reshape(l1, p1, k)
    w1 = np.linalg.solve(L1, v1)
    t = np.linalg.solve(np.swapaxes(L1, 1, 2), w1)  # M^{-1} v_1
    s1 = np.einsum("ij,ljk->lik", T1, t).reshape(q1, k)  # Lambda_1 M^{-1} v_1
    B = np.asarray(cs.A1R.T @ s1)[:-1]  # A_R1 Lambda_1 M^{-1} v_1, response row dropped
    if qr:
        B[:qr] = lam_rest.T @ B[:qr]
    w_R = sla.solve_triangular(L_R[:-1, :-1], V[q1:] - B, lower=True)
    return np.asarray((w1**2).sum(axis=(0, 1)) + (w_R**2).sum(axis=0))
