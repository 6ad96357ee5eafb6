"""Methods of :class:`~hierlm.results.result.FitResult` for the rest of a results section:
estimated marginal means and contrasts, ICC and R^2, cluster-robust covariance.

Thin wrappers over :mod:`hierlm.inference.emmeans`, :mod:`hierlm.inference.icc_r2` and
:mod:`hierlm.inference.robust`, kept apart from ``result.py`` so that each file holds
one concern.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd


class ResultsSectionMixin:
    """emmeans, ICC, R^2 and cluster-robust covariance of a fitted model."""

    def emmeans(self, specs: Any, by: Any = None, ddf: str = "kenward-roger",
                level: float = 0.95, at: Mapping[str, Any] | None = None) -> Any:
        """Estimated marginal means (R's ``emmeans(fit, specs, by = by)``).

        Parameters
        ----------
        specs : str or list of str
            The factor(s) whose means are wanted (``"A"``, ``["A", "B"]`` or
            ``"~ A * B | C"``).
        by : str or list of str, optional
            Factors to give the means (and their contrasts) separately for.
        ddf : {"kenward-roger", "satterthwaite", "asymptotic"}
            Degrees of freedom; Kenward-Roger's also adjusts the SEs (REML fits).
        level : float
            Confidence level of the intervals.
        at : dict, optional
            Values of covariates (default: their mean) or levels of factors to use.

        Returns
        -------
        hierlm.inference.emmeans.EMMeans
            ``.table`` (spec columns, ``emmean, se, df, lower, upper``),
            ``.pairs(adjust)`` and ``.contrast(method)``.  NUTS fits: posterior
            medians, SDs and intervals, without df and p.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.emmeans("Days", at={"Days": [0, 9]}).table["emmean"].round(2).tolist()
        [251.41, 345.61]
        """
        from hierlm.inference.emmeans import emmeans

        return emmeans(self, specs, by=by, ddf=ddf, level=level, at=at)

    def icc(self) -> pd.Series:
        """Adjusted and unadjusted intraclass correlation (``performance::icc``).

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.icc().index.tolist()
        ['adjusted', 'unadjusted']
        """
        from hierlm.inference.icc_r2 import icc

        return icc(self)

    def r2(self) -> pd.Series:
        """Nakagawa's marginal and conditional R^2 (``performance::r2_nakagawa``).

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.r2().round(3).tolist()
        [0.279, 0.799]
        """
        from hierlm.inference.icc_r2 import r2

        return r2(self)

    def vcov_robust(self, type: str = "CR2", cluster: str | None = None) -> pd.DataFrame:
        """Cluster-robust covariance of the fixed effects (``clubSandwich::vcovCR``).

        ``type`` is ``"CR2"`` (bias-reduced) or ``"CR0"``; ``cluster`` a column name
        (default: the outermost grouping factor).

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.vcov_robust().shape
        (2, 2)
        """
        from hierlm.inference.robust import vcov_robust

        return vcov_robust(self, type, cluster)
