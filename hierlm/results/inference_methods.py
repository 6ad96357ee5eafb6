"""Methods of :class:`~hierlm.results.result.FitResult` for tests and intervals after
the fit: t and F tables, contrasts, random-term LRTs, confidence intervals, profiles
and the parametric bootstrap.

Thin wrappers over :mod:`hierlm.inference` (each imported on first call, so that
``import hierlm`` stays light), kept apart from ``result.py`` so that each file holds
one concern.
"""

from __future__ import annotations

from typing import Any

import pandas as pd


class InferenceMixin:
    """Tests and intervals of a fitted model (the record's fields are the caller's)."""

    residual_parameters: pd.Series
    method: str

    @property
    def is_likelihood_fit(self) -> bool:  # the record's (FitRecord.is_likelihood_fit)
        raise NotImplementedError

    def _require_rows(self, what: str) -> None:  # FitResult's
        raise NotImplementedError

    def coef_table(self, ddf: str = "satterthwaite", vcov: str | None = None,
                   cluster: str | None = None) -> pd.DataFrame:
        """Fixed effects with t tests: ``estimate, se, df, t, p`` by coefficient.

        ``vcov="CR2"``: cluster-robust SEs and df instead (:mod:`hierlm.inference.robust`).

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger", "none"}
            Denominator df: Satterthwaite's (lmerTest's default), Kenward-Roger's
            (REML fits, as pbkrtest) or none (z tests, df = inf).  The first two
            need :attr:`model`.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.coef_table().round(3).loc["Days", ["se", "df"]].tolist()
        [1.546, 17.0]
        """
        if str(ddf).lower().startswith("kenward"):
            self._require_rows("Kenward-Roger df")
        if vcov is None:
            from hierlm.inference.anova import coef_table

            return coef_table(self, ddf)
        # only here: robust.py imports scipy.stats, 0.4-1.4 s in a new process
        from hierlm.inference.robust import robust_coef_table

        return robust_coef_table(self, vcov, cluster)

    def anova(self, ddf: str = "satterthwaite", type: int | str = 3) -> pd.DataFrame:
        """F tests of each fixed-effect term: ``num_df, den_df, F, p`` (lmerTest's
        ``anova``; ``type`` 3 or 1).

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.anova().round(2).loc["Days", "F"]
        np.float64(45.85)
        """
        self._require_rows("anova()")
        from hierlm.inference.anova import anova_table

        return anova_table(self, ddf, type)

    def contrast(self, L: Any, ddf: str = "satterthwaite", joint: bool = True
                 ) -> pd.DataFrame:
        """Test ``L beta = 0`` (rows of ``L``: contrasts over the coefficients in
        ``fixef`` order): one F test (``joint=True``) or a t test per row.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.contrast([[0, 1]]).round(2)["den_df"].tolist()
        [17.0]
        """
        if str(ddf).lower().startswith("kenward"):
            self._require_rows("Kenward-Roger df")
        from hierlm.inference.anova import contrast

        return contrast(self, L, ddf, joint)

    def ranova(self) -> pd.DataFrame:
        """lmerTest's likelihood-ratio tests for removing or reducing each random term.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> int(res.ranova()["df"].iloc[1])
        2
        """
        self._require_rows("ranova()")
        from hierlm.inference.lrt import ranova

        return ranova(self)

    def confint(self, method: str = "profile", level: float = 0.95, **kwargs: Any
                ) -> pd.DataFrame:
        """Confidence intervals ``lower, upper`` by parameter (lme4's names).

        Parameters
        ----------
        method : {"profile", "wald", "bootstrap"}
            Profile likelihood (lme4's default), Wald (fixed effects only; NaN for
            the variance parameters, as lme4) or parametric bootstrap.
        level : float
            Confidence level.
        **kwargs
            For ``"bootstrap"``: ``n``, ``seed``, ``kind``, ``progressbar``, ``n_jobs``.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.confint("wald").loc["Days"].round(3).tolist()
        [7.438, 13.497]
        """
        if method == "bootstrap":
            self._require_rows("confint('bootstrap')")
        from hierlm.inference.confint import confint

        return confint(self, method, level, **kwargs)

    def profile(self, **kwargs: Any) -> pd.DataFrame:
        """Profile traces: zeta against each parameter, in long form (lme4's
        ``as.data.frame(profile(fit))``: ``parameter, value, zeta``).

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.profile().columns.tolist()
        ['parameter', 'value', 'zeta']
        """
        from hierlm.inference.fitted import has_residual_structure
        from hierlm.inference.profile import profile_table
        from hierlm.inference.residual_profiler import residual_profile_table

        if has_residual_structure(self):
            return residual_profile_table(self, **kwargs)
        return profile_table(self, **kwargs)

    def bootstrap(self, n: int, seed: int | None = None, progressbar: bool = True,
                  n_jobs: int | None = None) -> Any:
        """Parametric bootstrap: ``n`` replicates simulated from the fit and refitted.

        Returns a :class:`hierlm.inference.bootstrap.Bootstrap` with ``.replicates``
        and ``.confint(level, kind)``.  ``n_jobs`` processes refit blocks of
        replicates at once (default: all cores; the replicates do not depend on it).

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.bootstrap(5, seed=1, progressbar=False).replicates.shape
        (5, 7)
        """
        self._require_rows("bootstrap()")
        if len(self.residual_parameters) and not self.is_likelihood_fit:
            from hierlm.errors import MethodError

            raise MethodError(f"bootstrap needs a REML or ML fit, not {self.method}")
        if len(self.residual_parameters):  # residual= / sigma=: refit with the structure
            from hierlm.inference.residual_bootstrap import residual_bootstrap

            return residual_bootstrap(self, n, seed=seed)
        from hierlm.inference.bootstrap import bootstrap

        return bootstrap(self, n, seed=seed, progressbar=progressbar, n_jobs=n_jobs)
