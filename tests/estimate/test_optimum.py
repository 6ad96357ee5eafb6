"""The default REML/ML fit reaches the best optimum that many starts find.

The profiled criterion is even in a template diagonal whose column has no other
non-zero entry (a scalar term, or the last diagonal of a template): its derivative
there is exactly zero, so a first-order method that lands on that bound stops even
where the bound is a maximum along that coordinate.  These tests simulate small
designs with few groups and true variances of 0 and small values, where that
happens, and compare the default fit with the best of 12 random starts of the same
optimizer (an optimum found independently of the default start).  Where that
optimum lies on the boundary, the default fit must be flagged singular.

The designs are the five structures of the issue: ``(0 + x | g)``,
``(1 | g) + (0 + x | g)``, ``(1 + x | g)``, ``(1 + x | g) + (1 | h)`` and
``(1 + x + z | g)``: 40 random designs of each (200 in all), by REML and by ML.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.objective import theta_lower

STRUCTURES = {
    "slope": "y ~ x + (0 + x | g)",
    "uncorrelated": "y ~ x + (1 | g) + (0 + x | g)",
    "correlated": "y ~ x + (1 + x | g)",
    "crossed": "y ~ x + (1 + x | g) + (1 | h)",
    "three": "y ~ x + z + (1 + x + z | g)",
}
N_DESIGNS = 40  # per structure
N_STARTS = 10
REL_TOL = 1e-6
SD_CHOICES = np.array([0.0, 0.0, 0.05, 0.2, 0.5, 1.0])


def simulate(structure: str, seed: int) -> pd.DataFrame:
    """A small design with few groups; true SDs drawn from {0, 0.05, 0.2, 0.5, 1}."""
    rng = np.random.default_rng([seed, len(structure)])
    n_g = int(rng.integers(4, 41))
    per = rng.integers(2, 9, size=n_g)
    g = np.repeat(np.arange(n_g), per)
    n = len(g)
    binary = rng.random() < 0.3
    x = rng.integers(0, 2, size=n).astype(float) if binary else rng.normal(size=n)
    z = rng.normal(size=n)
    n_h = int(rng.integers(3, 11))
    h = rng.integers(0, n_h, size=n)
    h[:n_h] = np.arange(n_h)
    sd = rng.choice(SD_CHOICES, size=3)
    corr = rng.uniform(-0.9, 0.9)
    a = rng.normal(size=n_g)
    b = corr * a + np.sqrt(1 - corr**2) * rng.normal(size=n_g)
    c = rng.normal(size=n_g)
    y = (1.0 + 0.5 * x + sd[0] * a[g] + sd[1] * b[g] * x + sd[2] * c[g] * z
         + rng.choice(SD_CHOICES[2:]) * rng.normal(size=n_h)[h] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"g{i}" for i in g],
                         "h": [f"h{i}" for i in h]})


def _quiet_fit(model: hierlm.Model, method: str, start: np.ndarray | None = None
               ) -> hierlm.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(method, start=start)


def best_of_starts(model: hierlm.Model, method: str, rng: np.random.Generator
                   ) -> hierlm.FitResult:
    """The fit with the lowest criterion over ``N_STARTS`` random starts (diagonals in
    (0.05, 2), other entries N(0, 0.5^2))."""
    lower = theta_lower(model.design)
    best = None
    for _ in range(N_STARTS):
        start = np.where(lower == 0.0, rng.uniform(0.05, 2.0, size=lower.size),
                         rng.normal(scale=0.5, size=lower.size))
        res = _quiet_fit(model, method, start)
        if best is None or res.objective < best.objective:
            best = res
    assert best is not None
    return best


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_default_fit_reaches_best_of_many_starts(structure: str) -> None:
    failures = []
    false_convergence = []
    unflagged = []
    n_singular = 0
    for seed in range(N_DESIGNS):
        data = simulate(structure, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = hierlm.Model(STRUCTURES[structure], data)
        for method in ("reml", "ml"):
            res = _quiet_fit(model, method)
            best_fit = best_of_starts(model, method, np.random.default_rng(seed))
            best = min(best_fit.objective, res.objective)
            gap = res.objective - best
            if gap > REL_TOL * max(1.0, abs(best)):
                failures.append((seed, method, round(gap, 6)))
                if res.converged:
                    false_convergence.append((seed, method))
            elif best_fit.is_singular and best_fit.objective <= res.objective:
                # the multi-start optimum lies on the boundary: the default fit says so
                n_singular += 1
                if not res.is_singular:
                    unflagged.append((seed, method))
    assert n_singular > 0  # the designs include true variances of 0
    assert not unflagged, f"singular optimum not flagged: {unflagged}"
    assert not failures, f"{len(failures)} of {2 * N_DESIGNS} fits above the best: {failures}"
    assert not false_convergence
