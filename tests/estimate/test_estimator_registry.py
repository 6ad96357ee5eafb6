"""Estimators behind one protocol: fit() looks the method up; the record answers its kind.

A new method is a new file (``tests/estimate/reml_from_ml.py``, registering itself when
imported); ``hierlm.fit`` and the modules after the fit are not edited for it.  Its
numbers are checked against lme4 and pbkrtest (``tests/data/reference``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hierlm
from hierlm.errors import MethodError
from hierlm.estimate.estimator import Estimator, FitProblem
from hierlm.estimate.kind import ML, NUTS, REML, Criterion, EstimatorKind, kind_of
from hierlm.estimate.profiled_estimator import REML_ESTIMATOR
from hierlm.estimate.record import FitRecord
from hierlm.estimate.registry import estimator, estimator_names, register, unregister
from tests.conftest import dataset, inference_reference, reference

FORMULA = "Reaction ~ 1 + Days + (1 + Days | Subject)"


@pytest.fixture(scope="module")
def plugin() -> Iterator[Any]:
    """The test-only estimator module, imported (and so registered) for these tests."""
    mod = importlib.import_module("tests.estimate.reml_from_ml")
    register(mod.ESTIMATOR, replace=True)  # registered again if an earlier test removed it
    yield mod
    unregister(mod.ESTIMATOR.name)


def test_the_builtin_estimators_follow_the_protocol() -> None:
    assert estimator_names()[:3] == ("reml", "ml", "nuts")
    for name, kind in (("reml", REML), ("ml", ML), ("nuts", NUTS)):
        est = estimator(name.upper())  # case-insensitive, as method= always was
        assert isinstance(est, Estimator)
        assert est.name == name and est.kind is kind
    assert (REML.is_reml, REML.is_ml, REML.is_likelihood_fit, REML.posterior) == (
        True, False, True, False)
    assert (ML.is_reml, ML.is_ml, ML.is_likelihood_fit, ML.posterior) == (
        False, True, True, False)
    assert (NUTS.is_reml, NUTS.is_ml, NUTS.is_likelihood_fit, NUTS.posterior) == (
        False, False, False, True)


def test_records_answer_their_kind() -> None:
    data = hierlm.load_sleepstudy()
    m = hierlm.Model(FORMULA, data)
    reml, ml = m.fit("reml"), m.fit("ml")
    assert (reml.method, reml.kind, reml.is_reml, reml.is_ml) == ("REML", REML, True, False)
    assert (ml.method, ml.kind, ml.is_ml, ml.is_likelihood_fit) == ("ML", ML, True, True)
    assert not reml.is_posterior and not ml.is_posterior


def test_a_new_estimator_in_its_own_file_is_fitted_by_name(plugin: Any) -> None:
    ref = reference()["sleepstudy_slopes_reml"]
    res = hierlm.fit(FORMULA, dataset("sleepstudy"), method="reml-from-ml")
    assert isinstance(res, hierlm.FitResult)
    assert res.method == "REML-ML" and res.kind is plugin.KIND
    assert res.is_reml and res.is_likelihood_fit and not res.is_posterior
    # its estimates are the REML optimum: lme4's REML criterion and fixed effects
    assert res.objective == pytest.approx(ref["deviance_or_reml"], rel=1e-6)
    for name, value in ref["fixef"].items():
        assert res.fixef[name] == pytest.approx(value, rel=1e-4)
    assert res.sigma == pytest.approx(ref["sigma"], rel=2e-3)


def test_modules_after_the_fit_treat_the_new_kind_by_its_criterion(plugin: Any) -> None:
    """Kenward-Roger needs a REML fit: asked by kind, the new label is one."""
    ref = inference_reference()["sleepstudy_slopes"]
    res = hierlm.fit(FORMULA, dataset("sleepstudy"), method="reml-from-ml")
    kr = res.coef_table(ddf="kenward-roger")
    for row in ref["coef_kenward_roger"]:
        assert kr.loc[row["term"], "se"] == pytest.approx(row["se"], rel=2e-3)
        assert kr.loc[row["term"], "df"] == pytest.approx(row["df"], rel=2e-3)
    sat = res.coef_table()
    for row in ref["coef_satterthwaite"]:
        assert sat.loc[row["term"], "df"] == pytest.approx(row["df"], rel=2e-3)
    text = res.summary()
    assert text.splitlines()[0] == "Linear mixed model fit by REML ['hierlm']"
    assert "REML criterion at convergence: 1743.6283" in text


def test_a_saved_fit_of_the_new_kind_loads_with_its_kind(plugin: Any, tmp_path: Path) -> None:
    res = hierlm.fit(FORMULA, dataset("sleepstudy"), method="reml-from-ml")
    res.save(str(tmp_path / "fit.hierlm"))
    back = hierlm.load(str(tmp_path / "fit.hierlm"))
    assert back.method == "REML-ML" and back.kind is plugin.KIND and back.is_reml
    assert back.objective == res.objective


def test_unknown_methods_and_labels_are_one_clear_error() -> None:
    with pytest.raises(MethodError, match="unknown method 'bayes'; use one of reml, ml, nuts"):
        estimator("bayes")
    with pytest.raises(MethodError, match="unknown estimation method 'MOM'"):
        kind_of("MOM")


@dataclass(frozen=True)
class _Mislabelled:
    name: str = "mislabelled"
    kind: EstimatorKind = EstimatorKind("MISLABELLED", Criterion.REML)

    def fit(self, problem: FitProblem, *, start: np.ndarray | None = None,
            options: dict[str, Any] | None = None, **kwargs: Any) -> FitRecord:
        return REML_ESTIMATOR.fit(problem)  # labelled "REML", not its kind's label


def test_registration_is_checked() -> None:
    with pytest.raises(MethodError, match="needs name, kind and fit"):
        register(object())  # type: ignore[arg-type]
    with pytest.raises(MethodError, match="already registered"):
        register(_Mislabelled(name="REML"))
    with pytest.raises(MethodError, match="already registered as"):
        register(_Mislabelled(kind=EstimatorKind("REML", None, posterior=True)))
    with pytest.raises(MethodError, match="non-empty word"):
        register(_Mislabelled(name=" "))
    assert "mislabelled" not in estimator_names()


def test_a_record_must_carry_its_estimators_label() -> None:
    register(_Mislabelled())
    try:
        with pytest.raises(MethodError, match="labelled 'REML', not its kind's 'MISLABELLED'"):
            hierlm.fit(FORMULA, hierlm.load_sleepstudy(), method="mislabelled")
    finally:
        unregister("mislabelled")
    assert "mislabelled" not in estimator_names()


def test_a_record_of_an_unregistered_label_says_so_when_asked_its_kind() -> None:
    res = hierlm.fit(FORMULA, hierlm.load_sleepstudy())
    other = dataclasses.replace(res, method="MOM")
    assert repr(other).startswith("<hierlm.FitResult MOM:")  # the label itself is kept
    with pytest.raises(MethodError, match="unknown estimation method 'MOM'.*import the module"):
        other.summary()
