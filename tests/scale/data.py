"""Simulated crossed and nested designs written as partitioned parquet datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CROSSED = "y ~ x + (1 + x | user) + (1 | item)"
NESTED = "y ~ treat + x + (1 | hosp/patient)"


def crossed_frame(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    """Users (text labels) crossed with items (integers); a few missing responses."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, 120, n)
    it = rng.integers(0, 40, n)
    x = rng.normal(size=n)
    y = (50 + 2 * x + 1.5 * rng.normal(size=120)[u] + 0.1 * x * rng.normal(size=120)[u]
         + rng.normal(size=40)[it] + rng.normal(size=n))
    y[rng.choice(n, 7, replace=False)] = np.nan  # dropped in both paths
    return pd.DataFrame({"y": y, "x": x, "user": [f"u{v:03d}" for v in u], "item": it,
                         "part": it % 5})


def nested_frame(n: int = 2400, seed: int = 2) -> pd.DataFrame:
    """Patients within hospitals, a three-level text predictor."""
    rng = np.random.default_rng(seed)
    hosp = rng.integers(0, 12, n)
    patient = rng.integers(0, 25, n)  # labels repeat across hospitals: nesting matters
    treat = rng.choice(["placebo", "low", "high"], n)
    x = rng.normal(size=n)
    effect = pd.Series({"placebo": 0.0, "low": 0.5, "high": 1.2})[treat].to_numpy()
    y = (10 + effect + 0.3 * x + rng.normal(size=12)[hosp]
         + 0.7 * rng.normal(size=(12, 25))[hosp, patient] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "treat": treat, "hosp": [f"h{v}" for v in hosp],
                         "patient": patient, "part": hosp % 4})


def write_partitioned(df: pd.DataFrame, path: Path) -> Path:
    """``df`` as a hive-partitioned parquet dataset of many small row groups."""
    df.to_parquet(path, partition_cols=["part"], row_group_size=128)
    return path
