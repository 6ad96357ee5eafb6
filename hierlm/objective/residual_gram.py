"""The profiled criterion of a model with residual structure, by whitening.

With residual covariance ``sigma^2 R0``, ``R0 = S C S`` (relative SDs ``S = diag(s)``,
correlation ``C``, see :mod:`hierlm.design.residual_design`), and any ``B`` with
``B' B = R0^-1``, the model ``y = X beta + Z b + e`` becomes ``B y = B X beta + B Z b +
B e`` with ``Var(B e) = sigma^2 I``.  ``log|V| = log|B V B'| + log|R0|`` and
``X'V^-1 X`` is unchanged, so both lme4 criteria are::

    crit(theta, rho, delta) = crit_iid(theta; B[Z X y]) + log|R0|

with ``crit_iid`` today's profiled criterion (:mod:`hierlm.objective.profiled`) on the
whitened columns.  Whitening keeps each row in one level of every random-effects term
because the correlation groups are nested in every grouping factor.  ``B`` per group,
``O(n)`` in all:

* AR(1) with gaps (``ar1``, ``car1``): the errors are a Markov chain; with ``a_i =
  phi^(t_i - t_prev(i))``, ``u_i = (e_i - a_i e_prev(i)) / sqrt(1 - a_i^2)`` (``u_i =
  e_i`` for a group's first row) and ``log|C| = sum log(1 - a_i^2)``;
* compound symmetry: ``C = (1 - rho)(I - J/k) + lam J/k`` with ``lam = 1 + (k - 1) rho``,
  so ``u = (e - mean) / sqrt(1 - rho) + mean / sqrt(lam)`` and ``log|C| = (k - 1)
  log(1 - rho) + log(lam)``;
* ``S`` first: ``e_i / s_i`` with ``s_i = exp(v_i' delta) / sqrt(w_i)`` (prior weights
  ``w``), adding ``2 sum log s_i`` to ``log|R0|``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign


def relative_sd(rd: ResidualDesign, delta: np.ndarray, weights: np.ndarray | None = None
                ) -> np.ndarray:
    """``s_i = exp(v_i' delta) / sqrt(w_i)``: each row's residual SD over sigma.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rd = build_residual(None, "~ I(Days > 4)", d, des)
    >>> relative_sd(rd, np.array([np.log(2.0)]))[[0, 9]].tolist()
    [1.0, 2.0]
    """
    s = np.exp(rd.V @ np.asarray(delta, dtype=float)) if rd.V.shape[1] else np.ones(len(rd.group))
    return s if weights is None else s / np.sqrt(weights)


def whiten(rd: ResidualDesign, rho: float, s: np.ndarray, M: np.ndarray
           ) -> tuple[np.ndarray, float]:
    """``B M`` for the columns of ``M`` (n rows) and ``log|R0|``.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rd = build_residual("ar1(Days | Subject)", None, d, des)
    >>> C = 0.5 ** np.abs(np.subtract.outer(np.arange(10), np.arange(10)))
    >>> B, logdet = whiten(rd, 0.5, np.ones(180), np.eye(180)[:, :10])
    >>> bool(np.allclose(np.linalg.inv(B[:10].T @ B[:10]), C))
    True
    >>> bool(np.isclose(logdet, 18 * np.linalg.slogdet(C)[1]))
    True
    """
    M = np.asarray(M, dtype=float)
    scaled = M / s[:, None]
    logdet = 2.0 * float(np.log(s).sum())
    spec = rd.spec
    if spec is None:
        return scaled, logdet
    if spec.kind == "cs":
        k = rd.group_sizes.astype(float)
        lam = 1.0 + (k - 1.0) * rho
        ng = len(k)
        mean = np.stack([np.bincount(rd.group, weights=col, minlength=ng) for col in scaled.T],
                        axis=1) / k[:, None] if scaled.shape[1] else np.zeros((ng, 0))
        mrow = mean[rd.group]
        out = (scaled - mrow) / np.sqrt(1.0 - rho) + mrow / np.sqrt(lam)[rd.group][:, None]
        logdet += float(((k - 1.0) * np.log1p(-rho) + np.log(lam)).sum())
        return out, logdet
    has = rd.prev >= 0
    a = np.zeros(len(rd.prev))
    a[has] = np.power(rho, rd.gap[has])
    one_minus = 1.0 - a * a
    out = scaled.copy()
    root = np.sqrt(one_minus[has])[:, None]
    out[has] = (scaled[has] - a[has, None] * scaled[rd.prev[has]]) / root
    logdet += float(np.log(one_minus[has]).sum())
    return out, logdet


def whitened_design(design: ModelDesign, rd: ResidualDesign, rho: float,
                    delta: np.ndarray) -> tuple[ModelDesign, float]:
    """The design with ``B`` applied to ``y - offset``, ``X`` and every term's columns
    (no weights, no offset), and ``log|R0|``.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rd = build_residual("cs(1 | Subject)", None, d, des)
    >>> wd, logdet = whitened_design(des, rd, 0.0, np.zeros(0))
    >>> bool(np.allclose(wd.y, des.y)), logdet
    (True, 0.0)
    """
    y = design.y if design.offset is None else design.y - design.offset
    blocks = [y[:, None], design.X, *[t.X for t in design.terms]]
    widths = np.cumsum([0] + [b.shape[1] for b in blocks])
    s = relative_sd(rd, delta, design.weights)
    W, logdet = whiten(rd, rho, s, np.hstack(blocks))
    cols = [np.ascontiguousarray(W[:, widths[i]:widths[i + 1]]) for i in range(len(blocks))]
    terms = tuple(dataclasses.replace(t, X=cols[2 + i],
                                      col_rms=np.sqrt(np.mean(t.X ** 2, axis=0)))
                  for i, t in enumerate(design.terms))
    return dataclasses.replace(design, y=cols[0][:, 0], X=cols[1], terms=terms, weights=None,
                               offset=None), logdet
