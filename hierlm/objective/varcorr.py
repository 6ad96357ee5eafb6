"""Variance components: ``Sigma_i = sigma^2 T_i T_i'`` for each term, as lme4's VarCorr.

Rows follow ``as.data.frame(VarCorr(fit))``: for each term, the variances of its
coefficients, then the covariances of each pair ``(j, k)``, ``j < k``, in column-major
order (``sd_or_corr`` holds the correlation there); the residual row comes last.
A second term on the same grouping factor is named with lme4's suffix (``Subject.1``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierlm.covariance.design import group_labels as term_labels
from hierlm.design.terms import ModelDesign

COLUMNS = ["group", "term1", "term2", "variance_or_cov", "sd_or_corr"]


def group_labels(design: ModelDesign) -> list[str]:
    """lme4's VarCorr group names: a repeated grouping factor gets ``.1``, ``.2``, ...
    (the covariance layer's labels, :func:`hierlm.covariance.design.group_labels`).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days || Subject)", hierlm.load_sleepstudy())
    >>> group_labels(d)
    ['Subject', 'Subject.1']
    """
    return term_labels(design.terms)


def varcorr_table(design: ModelDesign, covariances: list[np.ndarray], sigma: float
                  ) -> pd.DataFrame:
    """Tidy variance-component table from each term's covariance matrix.

    Parameters
    ----------
    design : ModelDesign
        Supplies group and coefficient names.
    covariances : list of ndarray
        ``Sigma_i`` (``p_i x p_i``) for each term, on the response scale.
    sigma : float
        Residual standard deviation.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, term1, term2, variance_or_cov, sd_or_corr``.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
    >>> varcorr_table(d, [np.array([[4.0]])], 3.0)["sd_or_corr"].tolist()
    [2.0, 3.0]
    """
    rows: list[tuple] = []
    for label, term, S in zip(group_labels(design), design.terms, covariances, strict=True):
        sd = np.sqrt(np.clip(np.diag(S), 0.0, None))
        for j, name in enumerate(term.coef_names):
            rows.append((label, name, None, float(S[j, j]), float(sd[j])))
        for j in range(term.p):
            for k in range(j + 1, term.p):
                denom = sd[j] * sd[k]
                corr = float(S[j, k] / denom) if denom > 0 else float("nan")
                rows.append((label, term.coef_names[j], term.coef_names[k], float(S[j, k]), corr))
    rows.append(("Residual", None, None, float(sigma**2), float(sigma)))
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("term1", "term2"):  # keep None (not NaN) where there is no term
        frame[col] = pd.Series([r[COLUMNS.index(col)] for r in rows], dtype=object)
    return frame
