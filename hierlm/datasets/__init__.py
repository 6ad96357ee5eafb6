"""Datasets shipped with hierlm."""

from __future__ import annotations

from importlib import resources

import pandas as pd


def load_sleepstudy() -> pd.DataFrame:
    """Reaction times in a sleep-deprivation study (lme4's ``sleepstudy``).

    180 rows: ``Reaction`` (ms), ``Days`` of deprivation (0-9), ``Subject`` (18 labels,
    as strings).  Belenky et al. (2003), J. Sleep Research 12, 1-12.

    Examples
    --------
    >>> df = load_sleepstudy()
    >>> df.shape, df["Subject"].nunique()
    ((180, 3), 18)
    """
    path = resources.files("hierlm.datasets") / "sleepstudy.csv"
    with path.open("r") as fh:
        return pd.read_csv(fh, dtype={"Subject": str})
