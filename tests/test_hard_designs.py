"""Hard but valid designs: each fit must reach the optimum of the dense GLS criterion.

For every design the fitted objective equals the brute-force dense criterion
(:func:`tests.dense.profiled_criterion`) at the fitted theta to 1e-8 relative, no
perturbation of theta within its bounds lowers the dense criterion by more than
1e-6 relative, and the objective is no worse than lme4's.  The lme4 numbers are
hard-coded from lme4 1.1 (``Rscript``), on the CSV files written by ``write_csvs``::

    d <- read.csv("<name>.csv", colClasses = "character")
    d$y <- as.numeric(d$y); if (!is.null(d$x)) d$x <- as.numeric(d$x)
    sprintf("%.10f", REMLcrit(lmer(<formula>, d, REML = TRUE)))
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.estimate.optimize import theta_scale
from hierlm.objective import theta_lower
from tests.dense import dense_lambda, dense_z, profiled_criterion, profiled_criterion_qr


def _rep(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    return np.repeat(values, sizes)


def scaled_data(x_scale: float, y_scale: float, y_shift: float = 0.0) -> pd.DataFrame:
    """Correlated random intercepts and slopes with x and y far from unit scale."""
    rng = np.random.default_rng(1)
    n_g, per = 12, 10
    gi = np.repeat(np.arange(n_g), per)
    u = rng.uniform(0.0, 2.0, size=n_g * per)
    b0, b1 = rng.normal(size=n_g), rng.normal(size=n_g) * 1.5
    y = 10.0 + 3.0 * u + b0[gi] + (b1 + 0.5 * b0)[gi] * u + rng.normal(size=n_g * per) * 0.7
    return pd.DataFrame({"y": y * y_scale + y_shift, "x": u * x_scale,
                         "g": [f"g{i:02d}" for i in gi]})


def near_perfect_data(noise: float) -> pd.DataFrame:
    """Random intercepts of SD 1, residual SD ``noise``: sigma -> 0, theta -> 1/noise."""
    rng = np.random.default_rng(3)
    n_g, per = 15, 8
    gi = np.repeat(np.arange(n_g), per)
    x = rng.normal(size=n_g * per)
    y = 1.0 + 2.0 * x + rng.normal(size=n_g)[gi] + noise * rng.normal(size=n_g * per)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in gi]})


def zero_variance_data() -> pd.DataFrame:
    """Noise centred within each group: equal group means, so the intercept variance is 0."""
    rng = np.random.default_rng(4)
    n_g, per = 10, 6
    gi = np.repeat(np.arange(n_g), per)
    e = rng.normal(size=(n_g, per))
    e -= e.mean(axis=1, keepdims=True)
    x = np.tile(np.arange(per, dtype=float), n_g)
    return pd.DataFrame({"y": 5.0 + e.ravel(), "x": x, "g": [f"g{i:02d}" for i in gi]})


def correlated_slopes_data() -> pd.DataFrame:
    """Slopes exactly proportional to intercepts: correlation +1 (singular)."""
    rng = np.random.default_rng(5)
    n_g, per = 20, 8
    gi = np.repeat(np.arange(n_g), per)
    x = rng.uniform(-1.0, 1.0, size=n_g * per)
    b0 = rng.normal(size=n_g) * 2.0
    y = 1.0 + x + b0[gi] + 0.8 * b0[gi] * x + rng.normal(size=n_g * per) * 0.5
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in gi]})


def unbalanced_data() -> pd.DataFrame:
    """Group sizes from 1 to 1,000 rows."""
    rng = np.random.default_rng(6)
    sizes = np.array([1, 1, 2, 3, 10, 30, 100, 300, 1000])
    gi = _rep(np.arange(len(sizes)), sizes)
    n = len(gi)
    x = rng.normal(size=n)
    b0, b1 = rng.normal(size=len(sizes)), rng.normal(size=len(sizes)) * 0.5
    y = 2.0 + x + b0[gi] + b1[gi] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in gi]})


def categorical_slope_data() -> pd.DataFrame:
    """A 4-level factor whose effects vary by group: ``(0 + f | g)``."""
    rng = np.random.default_rng(7)
    n_g, reps = 25, 4
    g = np.repeat(np.arange(n_g), 4 * reps)
    f = np.tile(np.repeat(np.arange(4), reps), n_g)
    L = np.array([[1.0, 0, 0, 0], [0.6, 0.8, 0, 0], [0.2, 0.3, 0.9, 0], [-0.4, 0.1, 0.2, 0.7]])
    b = rng.normal(size=(n_g, 4)) @ L.T
    y = np.array([0.5, 1.0, -1.0, 2.0])[f] + b[g, f] + rng.normal(size=len(g)) * 0.6
    return pd.DataFrame({"y": y, "f": [f"L{k}" for k in f], "g": [f"g{i:02d}" for i in g]})


def five_terms_data() -> pd.DataFrame:
    """Crossed subjects and items, classes nested in schools, slopes on items."""
    rng = np.random.default_rng(8)
    n = 600
    subj = rng.integers(0, 40, size=n)
    item = rng.integers(0, 30, size=n)
    school = subj % 5
    cls = (subj // 5) % 3
    x = rng.normal(size=n)
    y = (1.0 + 0.5 * x + rng.normal(size=40)[subj] + 0.5 * rng.normal(size=40)[subj] * x
         + rng.normal(size=30)[item] + 0.7 * rng.normal(size=30)[item] * x
         + rng.normal(size=5)[school] + 0.5 * rng.normal(size=15)[school * 3 + cls]
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{i:02d}" for i in subj],
                         "item": [f"i{i:02d}" for i in item],
                         "school": [f"k{i}" for i in school], "cls": [f"c{i}" for i in cls]})


# name: (formula, data, lme4's REML criterion or None, singular?).  lme4 stops short of
# the optimum on x_1e5, x_1e-5 and x_1e5_y_1e-6 (it reports 343.39, 348.34 and
# -2917.07, singular); hierlm must do at least as well as lme4 everywhere.
DESIGNS: dict[str, tuple[str, Callable[[], pd.DataFrame], float, bool | None]] = {
    "x_1e5": ("y ~ x + (1 + x | g)", lambda: scaled_data(1e5, 1.0), 343.3943813072, None),
    "x_1e-5": ("y ~ x + (1 + x | g)", lambda: scaled_data(1e-5, 1.0), 348.3423622051, False),
    "y_1e6": ("y ~ x + (1 + x | g)", lambda: scaled_data(1.0, 1e6), 3577.1910948203, False),
    "x_1e5_y_1e-6": ("y ~ x + (1 + x | g)", lambda: scaled_data(1e5, 1e-6),
                     -2917.0661036489, None),
    "near_perfect": ("y ~ x + (1 | g)", lambda: near_perfect_data(1e-3), -1078.9614483588,
                     False),
    "zero_variance": ("y ~ x + (1 | g)", zero_variance_data, 169.8890478545, True),
    "correlated_slopes": ("y ~ x + (1 + x | g)", correlated_slopes_data, 339.7826400162, True),
    "unbalanced": ("y ~ x + (1 + x | g)", unbalanced_data, 4203.3237845641, False),
    "categorical_slope": ("y ~ f + (0 + f | g)", categorical_slope_data, 895.9500525873,
                          False),
    "five_terms": ("y ~ x + (1 + x | subj) + (1 | item) + (1 | school/cls) + (0 + x | item)",
                   five_terms_data, 2068.8041101486, False),
}
SCALED = ["x_1e5", "x_1e-5", "y_1e6", "x_1e5_y_1e-6"]


def write_csvs(folder: str) -> None:
    """Write every design's data as CSV (to compute the lme4 numbers above)."""
    for name, (_, make, _, _) in DESIGNS.items():
        make().to_csv(f"{folder}/{name}.csv", index=False)


def fit_strict(formula: str, data: pd.DataFrame) -> tuple[hierlm.Model, hierlm.FitResult]:
    """Fit by REML with a ConvergenceWarning turned into an error."""
    model = hierlm.Model(formula, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hierlm.SingularFitWarning)
        warnings.simplefilter("error", hierlm.ConvergenceWarning)
        res = model.fit("reml")
    return model, res


def assert_dense_minimum(design: hierlm.design.terms.ModelDesign, theta: np.ndarray,
                         objective: float, reml: bool = True) -> None:
    """The objective is the dense criterion at theta, and no nearby theta is lower."""
    at = profiled_criterion(design, theta, reml)
    assert objective == pytest.approx(at, rel=1e-8)
    lower = theta_lower(design)
    step = 1e-3 * (np.abs(theta) + theta_scale(design))
    rng = np.random.default_rng(0)
    moves = [s * e for e in np.eye(len(theta)) for s in (1.0, -1.0)]
    moves += [rng.normal(size=len(theta)) for _ in range(2)]
    for move in moves:
        other = np.maximum(theta + move * step, lower)
        assert profiled_criterion(design, other, reml) >= at - 1e-6 * abs(at), move


@pytest.mark.parametrize("name", list(DESIGNS))
def test_hard_design_reaches_dense_optimum(name: str) -> None:
    formula, make, lme4_crit, singular = DESIGNS[name]
    model, res = fit_strict(formula, make())
    assert res.converged
    assert res.objective <= lme4_crit + 1e-6 * abs(lme4_crit)
    assert_dense_minimum(model.design, res.theta, res.objective)
    assert np.all(np.isfinite(res.fixef_se)) and np.isfinite(res.sigma) and res.sigma > 0
    if singular is not None:
        assert res.is_singular == singular


def test_rescaling_x_and_y_leaves_the_fit_equivariant() -> None:
    """Scaling x by c and y by k scales theta's slope rows by 1/c, sigma by k, beta likewise."""
    _, base = fit_strict("y ~ x + (1 + x | g)", scaled_data(1.0, 1.0))
    for xs, ys in [(1e5, 1.0), (1e-5, 1.0), (1.0, 1e6), (1e5, 1e-6)]:
        _, res = fit_strict("y ~ x + (1 + x | g)", scaled_data(xs, ys))
        np.testing.assert_allclose(res.theta * [1.0, xs, xs], base.theta, rtol=1e-4, atol=1e-6)
        assert res.sigma == pytest.approx(base.sigma * ys, rel=1e-6)
        np.testing.assert_allclose(res.fixef.to_numpy() / ys * [1.0, xs],
                                   base.fixef.to_numpy(), rtol=1e-6)
        sd = res.varcorr["sd_or_corr"].to_numpy()
        np.testing.assert_allclose(sd / [ys, ys / xs, 1.0, ys], base.varcorr["sd_or_corr"],
                                   rtol=1e-4)


def test_zero_variance_is_flagged_not_fatal() -> None:
    model = hierlm.Model("y ~ x + (1 | g)", zero_variance_data())
    with pytest.warns(hierlm.SingularFitWarning):
        res = model.fit("reml")
    assert res.is_singular and res.theta[0] == 0.0
    assert res.varcorr["sd_or_corr"].iloc[0] == 0.0
    assert np.all(res.ranef()["value"] == 0.0)


def test_correlated_slopes_reach_correlation_one() -> None:
    _, res = fit_strict("y ~ x + (1 + x | g)", correlated_slopes_data())
    corr = res.varcorr.dropna(subset=["term2"])["sd_or_corr"].iloc[0]
    assert abs(corr) > 0.999


def test_five_terms_follow_lme4_order() -> None:
    """lme4 orders ties in reverse formula order once it reorders (``rev(order(nl))``)."""
    _, res = fit_strict(DESIGNS["five_terms"][0], five_terms_data())
    assert res.varcorr["group"].tolist() == [
        "subj", "subj", "subj", "item", "item.1", "cls:school", "school", "Residual"]
    # lme4: as.data.frame(VarCorr(fit))$sdcor
    np.testing.assert_allclose(
        res.varcorr["sd_or_corr"],
        [0.98955706, 0.54311744, 0.02806358, 0.72601290, 1.03260332, 0.75835083, 0.94999489,
         1.02653323], rtol=2e-3)


def test_singularity_check_is_scale_invariant() -> None:
    _, res = fit_strict("y ~ x + (1 + x | g)", scaled_data(1e5, 1.0))
    assert not res.is_singular


def test_response_with_large_offset() -> None:
    model, res = fit_strict("y ~ x + (1 + x | g)", scaled_data(1.0, 1.0, y_shift=1e6))
    assert_dense_minimum(model.design, res.theta, res.objective)


def test_near_perfect_fit_at_1e_6_is_closer_to_the_optimum_than_lme4() -> None:
    """Residual SD 1e-6 of the signal (theta ~ 1e6).

    The optimizer's Gram-based criterion carries about ``eps * (signal / sigma)^2 ~ 1e-4``
    relative error in ``r^2`` (0.05 units of the criterion here), so theta is found to
    about 1% only; against the stable QR criterion
    (:func:`tests.dense.profiled_criterion_qr`) it is within 1e-6 relative of the
    optimum (-2515.77759 at theta 1.1157e6); lme4 1.1 stops at theta 1.0422e6,
    criterion -2515.65876 by the same QR evaluation (lme4 reports -2515.66457 and warns
    "nearly unidentifiable").  The reported criterion, sigma and beta are evaluated at
    that theta from residuals (:mod:`hierlm.estimate.stable_pls`), so they must agree
    with a dense Householder least-squares solution at the same theta to within the
    problem's own conditioning: relative errors of order ``eps * kappa``, with
    ``kappa`` the condition number of the column-equilibrated augmented matrix
    ``[Z Lambda, X; I, 0]`` (about 6e6 here; the Gram route's errors are of order
    ``eps * kappa^2``).
    """
    model = hierlm.Model("y ~ x + (1 | g)", near_perfect_data(1e-6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hierlm.ConvergenceWarning)
        res = model.fit("reml")
    design = model.design
    at = profiled_criterion_qr(design, res.theta, True)
    optimum = -2515.777587458706  # scipy minimize_scalar on profiled_criterion_qr
    assert at <= profiled_criterion_qr(design, np.array([1042161.287]), True)
    assert at == pytest.approx(optimum, rel=1e-6)
    ZL = dense_z(design) @ dense_lambda(design, res.theta)
    q, p, n = ZL.shape[1], design.p, design.nobs
    A = np.block([[ZL, design.X], [np.eye(q), np.zeros((q, p))]])
    b = np.concatenate([design.y, np.zeros(q)])
    coef = np.linalg.lstsq(A, b, rcond=None)[0]
    resid = b - A @ coef
    kappa = np.linalg.cond(A / np.linalg.norm(A, axis=0))
    rel = 100 * np.finfo(float).eps * kappa  # relative error in r^2 of either evaluation
    assert 1e6 < kappa < 1e8
    # criterion: (n - p) log r^2 + log-determinants; r^2 to `rel` relative
    assert abs(res.objective - at) <= (n - p) * rel
    assert res.sigma == pytest.approx(np.sqrt(resid @ resid / (n - p)), rel=rel)
    beta = coef[q:]
    assert np.all(np.abs(res.fixef.to_numpy() - beta) <= rel * np.abs(beta))
