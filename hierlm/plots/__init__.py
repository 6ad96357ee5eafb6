"""Plots of a fitted model (matplotlib, the optional extra ``hierlm[plots]``).

* :func:`caterpillar`: the random effects of each group, sorted, with intervals
  (conditional modes for REML/ML, posterior means and quantiles for NUTS).
* :func:`emmeans`, :func:`emmeans_pairs`: estimated marginal means with intervals,
  and their pairwise comparisons.
* :func:`forest`: several fits (REML beside NUTS, say) in one ArviZ forest plot.
* :func:`variance_decomposition`: each variance component as a share of their sum.
* :func:`profile_zeta`: lme4's profile plot, ``zeta`` against each parameter.
* :func:`trajectories`: the response of each group against a covariate, with the
  conditional fit as one line per group (and per level of ``by``).

Axes carry the model's own names (terms, groups, parameters).  Each function returns
the matplotlib figure, so it can be restyled or saved.  For a NUTS fit's own
diagnostics use ArviZ's plots on ``res.idata`` (``az.plot_trace``, ...).
"""

from __future__ import annotations

from hierlm.plots.caterpillar_plot import caterpillar
from hierlm.plots.emmeans_plot import emmeans
from hierlm.plots.emmeans_plot import pairs as emmeans_pairs
from hierlm.plots.forest_plot import forest
from hierlm.plots.profile_plot import profile_zeta
from hierlm.plots.trajectory_plot import trajectories
from hierlm.plots.variance_plot import variance_decomposition

__all__ = [
    "caterpillar", "emmeans", "emmeans_pairs", "forest", "profile_zeta", "trajectories",
    "variance_decomposition",
]
