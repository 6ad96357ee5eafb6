"""Contrast coefficients and multiplicity adjustments of estimated marginal means (emmeans).

Contrasts of ``k`` means ``m`` (rows ``w`` of weights, ``w' m``), as emmeans' ``.emmc``
functions: ``pairwise`` (``m_i - m_j``, ``i < j``), ``revpairwise`` (``m_j - m_i``,
``j > i``), ``trt.vs.ctrl`` (``m_j - m_1``), ``poly`` (orthogonal polynomials of
``1..k`` from a QR of the Vandermonde matrix, each scaled to integers as emmeans does)
and a dict of named weight vectors.

Adjusted p-values of a family of ``m`` t statistics (each with its own df ``nu``):

* ``tukey``: ``P(Q_{k,nu} > sqrt(2) |t|)``, ``Q`` the studentized range of ``k`` means
  (R's ``ptukey``; scipy's ``studentized_range``); intervals ``+- q_{k,nu}(level) / sqrt 2``;
* ``sidak``: ``1 - (1 - p)^m``; ``bonferroni``: ``min(1, m p)``; ``holm``: step-down
  ``max_{j <= i} min(1, (m - j + 1) p_(j))``;
* ``dunnettx``: emmeans' approximation to Dunnett's test,
  ``1 - [w F_tukey(sqrt 2 |t|; (1 + sqrt(1 + 8 m)) / 2, nu) + (1 - w) F_F(t^2; 1, nu)^m]``
  with ``w = (m - 1) / m``;
* ``none``: ``2 P(T_nu > |t|)``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.stats

from hierlm.errors import MethodError

ADJUST = ("tukey", "holm", "bonferroni", "sidak", "dunnettx", "none")


def contrast_weights(method: object, labels: Sequence[str]
                     ) -> tuple[list[str], np.ndarray, str]:
    """Names, weights (rows over the ``k`` means) and emmeans' default adjustment.

    Examples
    --------
    >>> names, W, adj = contrast_weights("pairwise", ["a", "b", "c"])
    >>> names, W.tolist(), adj
    (['a - b', 'a - c', 'b - c'], [[1.0, -1.0, 0.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0]], 'tukey')
    >>> contrast_weights("poly", ["1", "2", "3"])[1].tolist()
    [[-1.0, 0.0, 1.0], [1.0, -2.0, 1.0]]
    """
    k = len(labels)
    rows: list[tuple[str, np.ndarray]] = []
    if isinstance(method, Mapping):
        for name, w in method.items():
            v = np.asarray(w, dtype=float)
            if v.shape != (k,) or not np.all(np.isfinite(v)):
                raise MethodError(f"contrast '{name}' needs {k} finite weights (one per mean), "
                                  f"got {w!r}")
            rows.append((str(name), v))
        adjust = "none"
    elif method == "pairwise":
        rows = [(f"{labels[i]} - {labels[j]}", _pair(k, i, j))
                for i in range(k) for j in range(i + 1, k)]
        adjust = "tukey"
    elif method == "revpairwise":
        rows = [(f"{labels[j]} - {labels[i]}", _pair(k, j, i))
                for j in range(1, k) for i in range(j)]
        adjust = "tukey"
    elif method == "trt.vs.ctrl":
        rows = [(f"{labels[j]} - {labels[0]}", _pair(k, j, 0)) for j in range(1, k)]
        adjust = "dunnettx"
    elif method == "poly":
        if k < 2:
            raise MethodError("polynomial contrasts need at least 2 levels")
        P = _poly(k)
        rows = [(_POLY_NAMES[d], P[:, d]) for d in range(P.shape[1])]
        adjust = "none"
    else:
        raise MethodError(f"unknown contrast method {method!r}; use 'pairwise', 'revpairwise', "
                          f"'trt.vs.ctrl', 'poly' or a dict of named weight vectors")
    if not rows:
        raise MethodError(f"contrast method {method!r} gives no contrast of {k} mean(s)")
    return [r[0] for r in rows], np.array([r[1] for r in rows]), adjust


_POLY_NAMES = ("linear", "quadratic", "cubic", "quartic", "degree 5", "degree 6")


def _pair(k: int, i: int, j: int) -> np.ndarray:
    v = np.zeros(k)
    v[i], v[j] = 1.0, -1.0
    return v


def _poly(k: int) -> np.ndarray:
    """R's ``poly(1:k)`` columns, scaled to integers as emmeans' ``poly.emmc``."""
    x = np.arange(1, k + 1, dtype=float)
    V = np.vander(x - x.mean(), min(6, k - 1) + 1, increasing=True)
    Q, _ = np.linalg.qr(V)
    out = []
    for j in range(1, Q.shape[1]):
        con = Q[:, j] * np.sign(Q[-1, j])
        con = con / np.min(con[con > 0.01])
        z = np.max(np.abs(con - np.round(con)))
        while z > 0.05:
            con = con / z
            z = np.max(np.abs(con - np.round(con)))
        out.append(np.round(con) + 0.0)  # no -0.0
    return np.array(out).T


def _f1_cdf(x: float, df: float) -> float:
    """``F(1, df)``'s distribution function; ``chi^2_1``'s at ``df = inf``."""
    if np.isinf(df):
        return float(scipy.stats.chi2.cdf(x, 1))
    return float(scipy.stats.f.cdf(x, 1, df))


def _two_sided(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    return np.asarray(2.0 * scipy.stats.t.sf(np.abs(t), df))


def adjust_p(t: np.ndarray, df: np.ndarray, adjust: str, n_means: int) -> np.ndarray:
    """Adjusted p-values of one family of t statistics (see the module docstring).

    Examples
    --------
    >>> round(float(adjust_p(np.array([-1.08389192437488]), np.array([113.0505]),
    ...                      "tukey", 3)[0]), 4)
    0.526
    """
    t, df = np.asarray(t, dtype=float), np.asarray(df, dtype=float)
    m = t.size
    p = _two_sided(t, df)
    if adjust == "none" or m == 0:
        return p
    if adjust == "tukey":
        if n_means < 2:
            return p
        return np.array([scipy.stats.studentized_range.sf(np.sqrt(2) * abs(ti), n_means, d)
                         for ti, d in zip(t, df, strict=True)])
    if adjust == "sidak":
        return np.asarray(1.0 - (1.0 - p) ** m)
    if adjust == "bonferroni":
        return np.minimum(1.0, m * p)
    if adjust == "holm":
        order = np.argsort(p)
        stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
        out = np.empty(m)
        out[order] = stepped
        return out
    if adjust == "dunnettx":
        kk = (1 + np.sqrt(1 + 8 * m)) / 2
        wt = (m - 1) / m
        cdf = np.array([wt * scipy.stats.studentized_range.cdf(np.sqrt(2) * abs(ti), kk, d)
                        + (1 - wt) * _f1_cdf(ti**2, d) ** m
                        for ti, d in zip(t, df, strict=True)])
        return np.asarray(1.0 - cdf)
    raise MethodError(f"unknown adjust {adjust!r}; use one of {', '.join(ADJUST)}")


def critical_value(df: float, adjust: str, level: float, n_means: int, m: int) -> float:
    """Half-width multiplier of a simultaneous interval: ``tukey``, ``sidak``,
    ``bonferroni`` or ``none`` (``holm`` has none; emmeans then uses ``bonferroni``).

    Examples
    --------
    >>> round(critical_value(float("inf"), "none", 0.95, 3, 3), 4)
    1.96
    """
    alpha = 1.0 - level
    if adjust == "tukey" and n_means >= 2:
        return _tukey_quantile(float(level), int(n_means), float(df)) / float(np.sqrt(2))
    if adjust == "sidak":
        alpha = 1.0 - level ** (1.0 / m)
    elif adjust in ("bonferroni", "holm"):
        alpha = alpha / m
    elif adjust not in ("none", "tukey"):
        raise MethodError(f"no simultaneous interval for adjust {adjust!r}")
    return float(scipy.stats.t.ppf(1.0 - alpha / 2.0, df))


@functools.lru_cache(maxsize=256)
def _tukey_quantile(level: float, n_means: int, df: float) -> float:
    """The studentized range quantile (slow to invert: contrasts sharing a df reuse it)."""
    return float(scipy.stats.studentized_range.ppf(level, n_means, df))


def check_adjust(adjust: Any) -> str:
    """The adjustment's name, or MethodError."""
    if not isinstance(adjust, str) or adjust.lower() not in ADJUST:
        raise MethodError(f"unknown adjust {adjust!r}; use one of {', '.join(ADJUST)}")
    return adjust.lower()
