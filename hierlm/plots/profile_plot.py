"""lme4's profile plot: ``zeta`` against each parameter, with the lines
``zeta = +/- z_(1+level)/2`` whose crossings are the profile interval.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from scipy import stats

from hierlm.plots.common import pyplot


def profile_zeta(profile: pd.DataFrame, level: float = 0.95) -> Any:
    """lme4's profile plot: ``zeta`` against each parameter's value.

    Parameters
    ----------
    profile : pandas.DataFrame
        Long form with columns ``parameter``, ``value`` and ``zeta`` (``res.profile()``).
    level : float
        The horizontal lines ``zeta = +/- z_(1+level)/2``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import hierlm.plots, pandas as pd, numpy as np
    >>> x = np.linspace(-2, 2, 9)
    >>> prof = pd.DataFrame({"parameter": "sigma", "value": 25 + x, "zeta": x})
    >>> hierlm.plots.profile_zeta(prof).axes[0].get_xlabel()
    'sigma'
    """
    plt = pyplot()
    missing = {"parameter", "value", "zeta"} - set(profile.columns)
    if missing:
        from hierlm.errors import MethodError

        raise MethodError(f"profile table lacks column(s) {', '.join(sorted(missing))}")
    params = list(dict.fromkeys(profile["parameter"]))
    ncol = min(3, len(params))
    nrow = -(-len(params) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.8 * nrow), squeeze=False)
    z = stats.norm.ppf(0.5 + level / 2)
    for ax, name in zip(axes.flat, params, strict=False):
        rows = profile[profile["parameter"] == name].sort_values("value")
        ax.plot(rows["value"], rows["zeta"], "-", color="C0")
        for sign in (-1, 1):
            ax.axhline(sign * z, color="0.5", lw=0.8, ls="--")
        ax.axhline(0.0, color="0.7", lw=0.6)
        ax.set_xlabel(str(name))
        ax.set_ylabel("zeta")
    for ax in list(axes.flat)[len(params):]:
        ax.set_visible(False)
    fig.suptitle(f"Profile zeta; dashed lines at +/- {z:.2f} ({level:.0%} interval)")
    fig.tight_layout()
    return fig
