"""New responses simulated from a fitted model, as lme4's ``simulate``.

For the rows (the fitting rows, or ``newdata``), each simulation draws::

    y* = o + X beta-hat + sum_k z_k' b*_k[g_k] + e*,   e*_r ~ N(0, sigma-hat^2 / w_r)

(with ``residual=`` / ``sigma=``, ``e*`` has the fitted residual covariance, drawn
group by group: :mod:`hierlm.predict.residual_cov`).

With ``re_form="~0"`` (the default, lme4's ``re.form = NA``) every level of every term
gets a new ``b*_k ~ N(0, Sigma_k)``, ``Sigma_k = sigma-hat^2 T_k T_k'``, in each
simulation; with ``re_form=None`` the fitted conditional modes are used for the levels
seen in fitting (new levels still get new draws); a formula keeps the modes of the
terms it names.  NUTS fits simulate from their point estimates (posterior means of
``beta`` and ``b``, the ``theta`` and ``sigma`` of ``res``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.columns import group_labels
from hierlm.design.frames import as_pandas
from hierlm.errors import MethodError
from hierlm.predict.terms import coder_of, coder_templates, ranef_arrays, select_terms


def simulate(res: Any, nsim: int = 1, seed: int | np.random.Generator | None = None,
             newdata: pd.DataFrame | None = None, re_form: str | None = "~0") -> pd.DataFrame:
    """``nsim`` simulated responses per row: a DataFrame ``sim_1 ... sim_nsim``.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> sims = simulate(res, nsim=3, seed=1)
    >>> sims.shape, list(sims.columns)
    ((180, 3), ['sim_1', 'sim_2', 'sim_3'])
    """
    if isinstance(nsim, bool) or not isinstance(nsim, int | np.integer) or nsim < 1:
        raise MethodError(f"nsim must be a positive integer, got {nsim!r}")
    if newdata is not None:
        newdata = as_pandas(newdata, "newdata")  # polars, pyarrow, ... through narwhals
    rng = np.random.default_rng(seed)
    coder = coder_of(res)
    kept = select_terms(coder, re_form)
    rows = coder.code(newdata, allow_new_levels=True)
    frame = coder.frame if newdata is None else newdata.reset_index(drop=True)
    beta = res.fixef.to_numpy(dtype=np.float64)
    sigma = float(res.sigma)
    Ts = coder_templates(coder, res.theta)
    modes = ranef_arrays(res)
    n = rows.X.shape[0]
    out = np.tile((rows.offset + rows.X @ beta)[:, None], (1, nsim))
    for k, (t, zx, codes) in enumerate(zip(coder.terms, rows.Z_X, rows.codes, strict=True)):
        labels = group_labels(t.factors, frame).to_numpy(dtype=object)
        uniq, inv = np.unique(labels, return_inverse=True)
        # one new draw per distinct level and simulation: b = sigma T z
        z = rng.standard_normal((len(uniq), t.p, nsim))
        b = sigma * np.einsum("ij,ljs->lis", Ts[k], z)[inv]  # (n, p, nsim)
        if k in kept:
            seen = codes >= 0
            b[seen] = modes[k][codes[seen]][:, :, None]
        out += np.einsum("ij,ijs->is", zx, b)
    if len(getattr(res, "residual_parameters", ())):  # residual= / sigma=: correlated errors
        from hierlm.predict.residual_cov import residual_draws

        out += residual_draws(res, None if newdata is None else frame, rows.weights, nsim, rng)
    else:
        out += sigma / np.sqrt(rows.weights)[:, None] * rng.standard_normal((n, nsim))
    index = res.row_labels if newdata is None and res.row_labels is not None else (
        pd.RangeIndex(n) if newdata is None else newdata.index)
    return pd.DataFrame(out, index=index, columns=[f"sim_{i + 1}" for i in range(nsim)])
