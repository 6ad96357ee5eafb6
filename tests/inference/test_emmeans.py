"""Estimated marginal means and contrasts against R's emmeans 1.8.4-1 (with pbkrtest and
lmerTest for the df), on a two-factor design with interaction, nlme's Oats split plot,
ChickWeight with a numeric covariate and random slopes, and crossed random effects
(``tests/data/reference/make_results_section.R``).

Tolerances: estimates 1e-4 absolute; SE and df 2e-3 relative; p 3e-3 absolute.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import MethodError
from tests.conftest import REFERENCE, reference_file

DTYPES = {"twofactor": {"subject": str}, "oats": {"nf": str, "Block": str},
          "chickweight": {"Diet": str, "Chick": str}, "crossed": {},
          "sleepstudy": {"Subject": str}, "sleepstudy_slope_only": {"Subject": str},
          "dyestuff2": {"Batch": str}, "large20k": {}}
CONTRASTS = {"pairs_tukey": ("pairwise", "tukey"), "pairs_holm": ("pairwise", "holm"),
             "pairs_bonferroni": ("pairwise", "bonferroni"),
             "pairs_sidak": ("pairwise", "sidak"), "pairs_none": ("pairwise", "none"),
             "revpairwise": ("revpairwise", None), "trt_vs_ctrl": ("trt.vs.ctrl", None),
             "poly": ("poly", None)}
CUSTOM = {"a1 vs rest": [1, -0.5, -0.5], "a2 - a3": [0, 1, -1]}


def cases() -> dict:
    return reference_file("results_section.json")["cases"]


def data_of(name: str) -> pd.DataFrame:
    case = cases()[name]
    return pd.read_csv(REFERENCE / "data" / case["data"], dtype=DTYPES[name])


_FITS: dict[str, hierlm.FitResult] = {}


def fit_of(name: str) -> hierlm.FitResult:
    if name not in _FITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[name] = hierlm.fit(cases()[name]["formula"], data_of(name))
    return _FITS[name]


def _close(got: pd.Series, want: pd.Series, what: str) -> None:
    a, b = got.to_numpy(float), want.to_numpy(float)
    if what in ("estimate", "emmean"):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4, err_msg=what)
    elif what in ("se", "df"):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=0, err_msg=what)
    elif what == "p":
        np.testing.assert_allclose(a, b, rtol=0, atol=3e-3, err_msg=what)
    else:  # t and interval ends follow from the above
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=1e-4, err_msg=what)


def _same_keys(got: pd.Series, want: pd.Series) -> None:
    if pd.api.types.is_numeric_dtype(want):
        np.testing.assert_allclose(got.to_numpy(float), want.to_numpy(float))
    else:
        assert got.astype(str).tolist() == want.astype(str).tolist()


PARAMS = [(name, i, ddf) for name in ("twofactor", "oats", "chickweight", "crossed")
          for i in range(len(cases()[name]["emmeans"]))
          for ddf in ("kenward_roger", "satterthwaite", "asymptotic")]


@pytest.mark.parametrize("name,i,ddf", PARAMS)
def test_emmeans_match_r(name: str, i: int, ddf: str) -> None:
    spec = cases()[name]["emmeans"][i]
    want = spec[ddf]
    em = fit_of(name).emmeans(spec["specs"], by=spec["by"], ddf=ddf.replace("_", "-"),
                              at=spec["at"])
    table = pd.DataFrame(want["table"])
    keys = [c for c in table.columns if c not in ("emmean", "se", "df", "lower", "upper")]
    assert list(em.table.columns) == keys + ["emmean", "se", "df", "lower", "upper"]
    for k in keys:
        _same_keys(em.table[k], table[k])
    if ddf == "asymptotic":
        assert np.all(np.isinf(em.table["df"]))
        table["df"] = np.inf
    for c in ("emmean", "se", "df", "lower", "upper"):
        _close(em.table[c], table[c], c)
    for key, (method, adjust) in CONTRASTS.items():
        if not want.get(key) or pd.DataFrame(want[key])["estimate"].isna().all():
            continue  # e.g. R's "(nothing)" for a single level
        _check_contrast(em.contrast(method, adjust=adjust), pd.DataFrame(want[key]), ddf)
    if "custom_w" in want:
        _check_contrast(em.contrast(CUSTOM), pd.DataFrame(want["custom_w"]), ddf)


def _check_contrast(got: pd.DataFrame, want: pd.DataFrame, ddf: str) -> None:
    assert got["contrast"].tolist() == want["contrast"].tolist()
    by = [c for c in want.columns if c not in ("contrast", "estimate", "se", "df", "t", "p")]
    assert list(got.columns) == ["contrast", *by, "estimate", "se", "df", "t", "p"]
    for c in by:
        _same_keys(got[c], want[c])
    if ddf == "asymptotic":
        want = want.assign(df=np.inf)
    for c in ("estimate", "se", "df", "t", "p"):
        _close(got[c], want[c], c)


def test_pairs_is_pairwise_contrast_with_tukey() -> None:
    em = fit_of("twofactor").emmeans("A")
    pd.testing.assert_frame_equal(em.pairs(), em.contrast("pairwise", adjust="tukey"))


def test_tukey_intervals_use_the_studentized_range() -> None:
    """Half-width / se of a Tukey interval is the studentized range quantile / sqrt 2
    (R: qtukey(0.95, 3, df) / sqrt(2)); Bonferroni's is qt(1 - 0.05 / 6, df)."""
    import scipy.stats

    em = fit_of("twofactor").emmeans("A")
    p = em.pairs(intervals=True)
    half = (p["upper"] - p["estimate"]) / p["se"]
    q = [scipy.stats.studentized_range.ppf(0.95, 3, d) / np.sqrt(2) for d in p["df"]]
    np.testing.assert_allclose(half, q, rtol=1e-6)
    b = em.pairs("bonferroni", intervals=True)
    np.testing.assert_allclose((b["upper"] - b["estimate"]) / b["se"],
                               scipy.stats.t.ppf(1 - 0.05 / 6, b["df"]), rtol=1e-10)


def test_rank_deficient_cells_are_not_estimable() -> None:
    """An empty cell of a two-factor design: its mean and the marginal mean over it are
    NaN (emmeans' nonEst); the other cells are the cell-mean model's, fitted densely."""
    d = data_of("twofactor")
    d = d[~((d.A == "a3") & (d.B == "b2"))].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("y ~ A * B + (1 | subject)", d)
        cell = hierlm.fit("y ~ 0 + AB + (1 | subject)", d.assign(AB=d.A + d.B))
    t = res.emmeans(["A", "B"], ddf="asymptotic").table
    miss = (t.A == "a3") & (t.B == "b2")
    assert t.loc[miss, "emmean"].isna().all() and t.loc[~miss, "emmean"].notna().all()
    want = cell.fixef.rename(lambda s: s.removeprefix("AB"))
    got = t[~miss].set_index(t.A[~miss] + t.B[~miss])["emmean"]
    np.testing.assert_allclose(got, want[got.index], atol=1e-6)
    marg = res.emmeans("A", ddf="asymptotic").table.set_index("A")["emmean"]
    assert np.isnan(marg["a3"]) and np.isfinite(marg[["a1", "a2"]]).all()
    pairs = res.emmeans("A", ddf="asymptotic").pairs()
    assert pairs.set_index("contrast").loc["a1 - a3"].isna().all()


def test_kenward_roger_on_a_20000_row_design_matches_r_in_seconds() -> None:
    """20,000 rows, 200 groups with random intercepts and slopes: emmeans' default turns
    Kenward-Roger off above 3,000 rows (df = inf); with the limit raised, pbkrtest gives
    these df (37 s in R on the reference machine).  hierlm works with q x q blocks."""
    import time

    case = cases()["large20k"]
    assert all(v is None for v in case["emmeans_default_df"])  # R's asymptotic fallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit(case["formula"], pd.read_csv(REFERENCE / "data" / case["data"]))
    t0 = time.perf_counter()
    em = res.emmeans("A")
    p = em.pairs()
    took = time.perf_counter() - t0
    want = case["emmeans"][0]["kenward_roger"]
    for c in ("emmean", "se", "df"):
        _close(em.table[c], pd.DataFrame(want["table"])[c], c)
    _check_contrast(p, pd.DataFrame(want["pairs_tukey"]), "kenward_roger")
    assert took < 30, took


def test_numeric_covariate_at_its_mean_and_at() -> None:
    """Written out from the coefficients: Diet 1 at mean(Time); Diet 2 at Time = 10."""
    res = fit_of("chickweight")
    b = res.fixef
    m = data_of("chickweight").Time.mean()
    t = res.emmeans("Diet", ddf="asymptotic").table
    assert t["emmean"].iloc[0] == pytest.approx(b["(Intercept)"] + b["Time"] * m, abs=1e-8)
    t = res.emmeans("Diet", by="Time", at={"Time": [10]}, ddf="asymptotic").table
    inter = [n for n in b.index if "Time" in n and "2" in n][0]
    want = b["(Intercept)"] + b["Diet2"] + 10 * (b["Time"] + b[inter])
    assert t.set_index("Diet").loc["2", "emmean"] == pytest.approx(want, abs=1e-8)


@pytest.mark.parametrize("kwargs,msg", [
    ({"specs": "nope"}, "not a variable"), ({"specs": "A", "ddf": "fast"}, "unknown ddf"),
    ({"specs": "A", "level": 2}, "level"), ({"specs": "A", "at": {"A": ["zz"]}}, "level"),
    ({"specs": ["A", "A"]}, "repeat"), ({"specs": 3}, "column name"),
])
def test_bad_emmeans_input(kwargs: dict, msg: str) -> None:
    with pytest.raises(MethodError, match=msg):
        fit_of("twofactor").emmeans(**kwargs)


def test_bad_contrast_input() -> None:
    em = fit_of("twofactor").emmeans("A")
    with pytest.raises(MethodError, match="3 finite weights"):
        em.contrast({"x": [1, -1]})
    with pytest.raises(MethodError, match="unknown contrast"):
        em.contrast("helmert")
    with pytest.raises(MethodError, match="unknown adjust"):
        em.pairs("scheffe")


def test_kenward_roger_needs_reml_and_data_unchanged() -> None:
    d = data_of("twofactor")
    before = d.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = hierlm.fit("y ~ A * B + (1 | subject)", d, method="ml")
    with pytest.raises(MethodError, match="REML"):
        ml.emmeans("A")
    assert ml.emmeans("A", ddf="satterthwaite").table["df"].notna().all()
    pd.testing.assert_frame_equal(d, before)


def test_dropped_collinear_covariate_estimability() -> None:
    """x2 = 2 x is dropped: the grid at the means lies in the row space; x2 = 5 with
    x = 1 does not, so its mean is NaN rather than a silently wrong number."""
    d = data_of("sleepstudy").assign(x2=lambda f: 2.0 * f.Days)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("Reaction ~ Days + x2 + (1 | Subject)", d)
    assert list(res.fixef.index) == ["(Intercept)", "Days"]
    ok = res.emmeans("Days", ddf="asymptotic").table["emmean"].iloc[0]
    assert ok == pytest.approx(res.fixef["(Intercept)"] + res.fixef["Days"] * 4.5)
    bad = res.emmeans("Days", at={"Days": [1.0], "x2": [5.0]}, ddf="asymptotic").table
    assert bad["emmean"].isna().all()


def test_categorical_level_order_is_kept_and_means_do_not_change() -> None:
    d = data_of("twofactor")
    d["A"] = pd.Categorical(d["A"], categories=["a3", "a1", "a2"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("y ~ A * B + (1 | subject)", d)
    t = res.emmeans("A").table
    assert t["A"].astype(str).tolist() == ["a3", "a1", "a2"]
    ref = fit_of("twofactor").emmeans("A").table.set_index("A")
    np.testing.assert_allclose(t["emmean"], ref.loc[["a3", "a1", "a2"], "emmean"], atol=1e-6)
    assert res.emmeans("A").pairs()["contrast"].iloc[0] == "a3 - a1"
