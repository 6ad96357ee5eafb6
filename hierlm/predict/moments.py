"""The marginal moments a fitted model implies for a set of rows.

For rows with fixed-effect matrix ``X``, offset ``o``, prior weights ``w`` (1 unless
the model's weights column is among them) and, per random term ``k``, model rows
``z_k`` and grouping labels ``g_k``::

    E[y]          = o + X beta
    Cov(y_r, y_s) = sum_k [g_k,r == g_k,s] z_k,r' Sigma_k z_k,s + [r == s] sigma^2 / w_r

with ``Sigma_k = sigma^2 T_k T_k'``: that is ``sigma^2 (Z Lambda Lambda' Z' + W^{-1})``.
A fit with ``residual=`` / ``sigma=`` replaces the last term by its residual covariance
``sigma^2 S C S`` (:mod:`hierlm.predict.residual_cov`; the rows then need the
structure's time and group columns).
Two rows share a random effect exactly when their labels agree, whether or not the
level was seen in fitting, so no response and no fitted level is needed.  For NUTS
fits both moments are averaged over the posterior draws; as they are linear in
``beta``, ``Sigma_k`` and ``sigma^2``, that is the same formula with their posterior
means (with ``residual=`` / ``sigma=``, the posterior mean of ``sigma^2 S C S``,
averaged draw by draw).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.columns import group_labels
from hierlm.design.frames import as_pandas
from hierlm.predict.terms import coder_of, coder_templates


def marginal_moments(res: Any, rows: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Marginal mean and covariance of the observations ``rows`` describes.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> rows = pd.DataFrame({"Days": [0, 1], "Subject": ["a", "a"]})
    >>> mean, cov = marginal_moments(res, rows)
    >>> bool(np.isclose(cov.iloc[0, 0], res.varcorr.variance_or_cov.iloc[[0, 3]].sum()))
    True
    """
    rows = as_pandas(rows, "rows")  # polars, pyarrow, ... through narwhals
    coder = coder_of(res)
    coded = coder.code(rows, allow_new_levels=True)
    post = None
    if res.is_posterior:
        from hierlm.predict.posterior import posterior_draws

        post = posterior_draws(res, need_b=False)
        Ts = coder_templates(coder, post.theta)
        s2 = post.sigma**2
        Sigmas = [np.mean(s2[:, None, None] * (T @ np.swapaxes(T, 1, 2)), axis=0) for T in Ts]
        beta, sigma2 = post.beta.mean(axis=0), float(s2.mean())
    else:
        Ts = coder_templates(coder, res.theta)
        sigma2 = float(res.sigma) ** 2
        Sigmas = [sigma2 * T @ T.T for T in Ts]
        beta = res.fixef.to_numpy(dtype=np.float64)
    mean = coded.offset + coded.X @ beta
    checked = rows.reset_index(drop=True)
    if len(getattr(res, "residual_parameters", ())):
        from hierlm.predict.residual_cov import residual_covariance

        cov = residual_covariance(res, checked, coded.weights,
                                  draws=post)
    else:
        cov = np.diag(sigma2 / coded.weights)
    for t, zx, S in zip(coder.terms, coded.Z_X, Sigmas, strict=True):
        labels = group_labels(t.factors, checked).to_numpy(dtype=object)
        same = labels[:, None] == labels[None, :]
        cov = cov + same * (zx @ S @ zx.T)
    return (pd.Series(mean, index=rows.index, name="mean"),
            pd.DataFrame(cov, index=rows.index, columns=rows.index))
