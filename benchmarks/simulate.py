"""Reproducible simulated data sets for the hierlm benchmark suite.

Two generators, both vectorised numpy with a fixed default seed:

* :func:`simulate_movielens` -- a MovieLens-1M-sized crossed design
  (1,000,209 ratings, 6,040 users, 3,706 items) with skewed activity per user
  and per item, every user with at least 20 ratings and no duplicate
  user-item pair.  The response is continuous by default
  (``3.5 + user + item + noise``); ``rounded=True`` rounds and clips it to 1..5.
  Model: ``rating ~ 1 + (1|user) + (1|item)``.
* :func:`simulate_maximal` -- a subjects x items psycholinguistic design
  (40 x 50, every subject sees every item once) with three +/-0.5 contrasts in
  a counterbalanced 2x2x2 Latin square, fitted with the "maximal" model
  ``y ~ 1 + c1 + c2 + c3 + (1 + c1 + c2 + c3 | subj) + (1 + c1 + c2 + c3 | item)``.

Both return the data frame and a dictionary with the true parameter values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ML1M_RATINGS = 1_000_209
ML1M_USERS = 6_040
ML1M_ITEMS = 3_706
ML1M_MIN_PER_USER = 20
ML1M_MAX_PER_USER = 2_314


def _user_counts(
    rng: np.random.Generator, n_users: int, n_items: int, n_ratings: int, min_per_user: int,
    max_per_user: int,
) -> np.ndarray:
    """Ratings per user: ``min_per_user`` plus a lognormal excess, summing to ``n_ratings``.

    The lognormal (median excess 76, sigma 1.14) mimics ML-1M (median 96, mean 166
    ratings per user).  A scale factor is found by bisection so that the capped
    counts add up exactly, then rounded by largest remainder.
    """
    cap = min(max_per_user, n_items)
    if not n_users * min_per_user <= n_ratings <= n_users * cap:
        raise ValueError("n_ratings is incompatible with the per-user bounds")
    excess = rng.lognormal(mean=np.log(76.0), sigma=1.14, size=n_users)

    def total(f: float) -> float:
        return float(np.minimum(min_per_user + f * excess, cap).sum())

    lo, hi = 0.0, 1.0
    while total(hi) < n_ratings:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(mid) < n_ratings else (lo, mid)
    target = np.minimum(min_per_user + hi * excess, cap)
    counts = np.floor(target).astype(np.int64)
    short = n_ratings - int(counts.sum())
    if short > 0:
        frac = np.where(counts < cap, target - counts, -1.0)
        counts[np.argsort(-frac, kind="stable")[:short]] += 1
    elif short < 0:
        counts[np.argsort(-counts, kind="stable")[:-short]] -= 1
    return counts


def _pairs(
    rng: np.random.Generator, counts: np.ndarray, item_logw: np.ndarray, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per user, weighted sampling without replacement (Gumbel top-k)."""
    n_users, n_items = counts.size, item_logw.size
    users, items = [], []
    cols = np.arange(n_items)
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        keys = item_logw[None, :] + rng.gumbel(size=(stop - start, n_items)).astype(np.float32)
        order = np.argsort(-keys, axis=1)
        take = cols[None, :] < counts[start:stop, None]
        users.append(np.repeat(np.arange(start, stop), counts[start:stop]))
        items.append(order[take])
    return np.concatenate(users), np.concatenate(items)


def _cover_items(
    users: np.ndarray, items: np.ndarray, n_items: int, counts: np.ndarray
) -> None:
    """Give every item at least one rating, in place, keeping totals and distinctness.

    For each item nobody rated, the most active user swaps one of their ratings of
    the most-rated item for it.  (Rarely needed; a handful of items at most.)
    """
    item_counts = np.bincount(items, minlength=n_items)
    missing = np.flatnonzero(item_counts == 0)
    heavy = np.argsort(-counts, kind="stable")
    for k, j in enumerate(missing):
        u = heavy[k]
        rows = np.flatnonzero(users == u)
        donor = rows[np.argmax(item_counts[items[rows]])]
        item_counts[items[donor]] -= 1
        items[donor] = j
        item_counts[j] += 1


def simulate_movielens(
    seed: int = 20240601,
    n_users: int = ML1M_USERS,
    n_items: int = ML1M_ITEMS,
    n_ratings: int = ML1M_RATINGS,
    rounded: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate a MovieLens-1M-sized crossed users x items data set.

    Parameters
    ----------
    seed : int
        numpy ``default_rng`` seed; the same seed gives the same data.
    n_users, n_items, n_ratings : int
        Sizes; the defaults are those of MovieLens 1M.
    rounded : bool
        Round the rating to an integer and clip it to 1..5 (as in MovieLens).
        The default leaves it continuous, so ``rating ~ 1 + (1|user) + (1|item)``
        is the true model.

    Returns
    -------
    data : DataFrame
        Columns ``user`` and ``item`` (strings, "1".."n") and ``rating``.
    truth : dict
        Intercept, the two random-effect standard deviations and sigma.
    """
    rng = np.random.default_rng(seed)
    min_per_user = min(ML1M_MIN_PER_USER, n_items)
    counts = _user_counts(rng, n_users, n_items, n_ratings, min_per_user, ML1M_MAX_PER_USER)
    item_logw = rng.normal(0.0, 1.0, size=n_items).astype(np.float32)  # lognormal popularity
    users, items = _pairs(rng, counts, item_logw)
    if n_ratings >= n_items:
        _cover_items(users, items, n_items, counts)
    truth: dict[str, Any] = {
        "(Intercept)": 3.5, "sd_user": 0.4, "sd_item": 0.5, "sigma": 0.9,
        "seed": seed, "rounded": rounded,
    }
    u_eff = rng.normal(0.0, truth["sd_user"], size=n_users)
    i_eff = rng.normal(0.0, truth["sd_item"], size=n_items)
    noise = rng.normal(0.0, truth["sigma"], size=users.size)
    rating = truth["(Intercept)"] + u_eff[users] + i_eff[items] + noise
    if rounded:
        rating = np.clip(np.rint(rating), 1.0, 5.0)
    data = pd.DataFrame({
        "user": (users + 1).astype(str),
        "item": (items + 1).astype(str),
        "rating": np.round(rating, 4),
    })
    return data, truth


# True values for the maximal design: fixed effects, random-effect sds and correlations.
MAXIMAL_BETA = (6.0, 0.08, -0.05, 0.03)
MAXIMAL_SD_SUBJ = (0.30, 0.10, 0.08, 0.05)
MAXIMAL_SD_ITEM = (0.20, 0.08, 0.06, 0.04)
MAXIMAL_CORR_SUBJ = (
    (1.0, 0.4, -0.3, 0.2),
    (0.4, 1.0, 0.1, -0.2),
    (-0.3, 0.1, 1.0, 0.3),
    (0.2, -0.2, 0.3, 1.0),
)
MAXIMAL_CORR_ITEM = (
    (1.0, -0.3, 0.2, 0.1),
    (-0.3, 1.0, 0.25, 0.0),
    (0.2, 0.25, 1.0, -0.2),
    (0.1, 0.0, -0.2, 1.0),
)
MAXIMAL_SIGMA = 0.30


def _draw_effects(rng: np.random.Generator, n: int, sd: tuple[float, ...],
                  corr: tuple[tuple[float, ...], ...]) -> np.ndarray:
    cov = np.outer(sd, sd) * np.asarray(corr)
    return rng.standard_normal((n, len(sd))) @ np.linalg.cholesky(cov).T


def simulate_maximal(
    seed: int = 20240602, n_subj: int = 40, n_item: int = 50
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate a crossed subjects x items design for the maximal random-effects model.

    Every subject sees every item once.  The eight cells of the 2x2x2 design
    (contrasts ``c1, c2, c3`` coded -0.5/+0.5) are counterbalanced as a Latin
    square: subject ``s`` sees item ``i`` in cell ``(s + i) mod 8``, so every
    contrast varies within subject and within item.  Subject and item effects
    (intercept and three slopes) are drawn from correlated 4-variate normals.

    Returns
    -------
    data : DataFrame
        Columns ``subj``, ``item`` (strings), ``c1, c2, c3`` and ``y``.
    truth : dict
        ``beta``, ``sd_subj``, ``corr_subj``, ``sd_item``, ``corr_item``, ``sigma``.
    """
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    cell = (subj + item) % 8
    contrasts = np.stack([((cell >> k) & 1) - 0.5 for k in range(3)], axis=1)
    x = np.column_stack([np.ones(subj.size), contrasts])
    b_subj = _draw_effects(rng, n_subj, MAXIMAL_SD_SUBJ, MAXIMAL_CORR_SUBJ)
    b_item = _draw_effects(rng, n_item, MAXIMAL_SD_ITEM, MAXIMAL_CORR_ITEM)
    mu = x @ np.asarray(MAXIMAL_BETA) + np.sum(x * (b_subj[subj] + b_item[item]), axis=1)
    y = mu + rng.normal(0.0, MAXIMAL_SIGMA, size=subj.size)
    data = pd.DataFrame({
        "subj": np.char.add("s", (subj + 1).astype(str)),
        "item": np.char.add("i", (item + 1).astype(str)),
        "c1": contrasts[:, 0], "c2": contrasts[:, 1], "c3": contrasts[:, 2],
        "y": np.round(y, 6),
    })
    truth: dict[str, Any] = {
        "beta": dict(zip(["(Intercept)", "c1", "c2", "c3"], MAXIMAL_BETA, strict=True)),
        "sd_subj": list(MAXIMAL_SD_SUBJ), "corr_subj": [list(r) for r in MAXIMAL_CORR_SUBJ],
        "sd_item": list(MAXIMAL_SD_ITEM), "corr_item": [list(r) for r in MAXIMAL_CORR_ITEM],
        "sigma": MAXIMAL_SIGMA, "seed": seed,
    }
    return data, truth
