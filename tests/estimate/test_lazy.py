"""Fields computed on first read: same values, once, under threads, through copies."""

from __future__ import annotations

import dataclasses
import pickle
import threading
import time

import numpy as np
import pytest

import hierlm
from hierlm.estimate.frequentist import fitted_values, ranef_frame
from hierlm.estimate.lazy import Deferred, deferred, lazy_fields, stored_fields


@dataclasses.dataclass(frozen=True)
class _Rec:
    a: int
    table: list


lazy_fields(_Rec, "table")


def test_computed_once_under_threads():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.05)
        return [1, 2, 3]

    rec = _Rec(1, deferred(slow))
    got: list[list] = []
    threads = [threading.Thread(target=lambda: got.append(rec.table)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(g is got[0] for g in got) and got[0] == [1, 2, 3]


def test_frozen_replace_pickle_and_plain_values():
    rec = _Rec(1, deferred(lambda: [4]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.table = [5]  # type: ignore[misc]
    assert isinstance(stored_fields(rec)["table"], Deferred)
    assert dataclasses.replace(rec, a=2).table == [4]
    assert pickle.loads(pickle.dumps(_Rec(1, deferred(lambda: [6])))).table == [6]
    assert _Rec(3, [7]).table == [7]  # a plain value passes through


def test_lazy_fields_rejects_unknown_names():
    with pytest.raises(TypeError, match="no dataclass field"):
        lazy_fields(_Rec, "nope")


def test_fit_tables_deferred_until_read_and_equal_to_eager():
    res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    for name in ("ranef_table", "varcorr", "fitted_values"):
        assert isinstance(vars(res)[name], Deferred)
    # the eager computations, from the same estimates
    m = res.model
    from hierlm.estimate.stable_pls import stable_estimates

    obj = m.objective
    est, _ = stable_estimates(obj, res.theta, *obj.evaluate(res.theta, True)[2:], reml=True)
    sd = [np.sqrt(np.clip(np.diagonal(v, axis1=1, axis2=2), 0.0, None)) for v in est.cond_var]
    eager = ranef_frame(m.design, est.b, sd)
    assert res.ranef_table.equals(eager)
    np.testing.assert_array_equal(res.fitted_values, fitted_values(m.design, est.beta, est.b))
    assert not isinstance(vars(res)["ranef_table"], Deferred)
    # lme4's SDs and correlation (tests/test_reference.py checks every case)
    vc = res.varcorr
    np.testing.assert_allclose(vc["sd_or_corr"].to_numpy()[:3], [24.741, 5.922, 0.066],
                               atol=1e-3)


def test_fixed_effect_tables_and_covariance_parameters_deferred_until_read():
    """The record's p-indexed tables, the covariance parameters and the (empty) residual
    parameters are built on first read; their values are lme4's
    (tests/data/reference/lme4_reference.json)."""
    res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    names = ("fixef", "fixef_se", "vcov", "covariance_parameters", "residual_parameters")
    for name in names:
        assert isinstance(vars(res)[name], Deferred)
    # lme4 4.1 (sleepstudy_slopes_reml): fixef, standard errors, SDs and correlation
    np.testing.assert_allclose(res.fixef.to_numpy(), [251.405104848485, 10.467285959596],
                               rtol=1e-7)
    np.testing.assert_allclose(res.fixef_se.to_numpy(), [6.82459669495491, 1.54578964390598],
                               rtol=1e-5)
    assert res.fixef.index.tolist() == res.vcov.index.tolist() == ["(Intercept)", "Days"]
    assert res.vcov.columns.tolist() == ["(Intercept)", "Days"]
    np.testing.assert_array_equal(np.sqrt(np.diag(res.vcov.to_numpy())), res.fixef_se.to_numpy())
    np.testing.assert_allclose(res.covariance_parameters.to_numpy(), [24.741, 0.066, 5.922],
                               atol=1e-3)
    assert res.residual_parameters.empty  # no residual= or sigma=
    assert res.residual_parameters.name == "residual_parameters"
    for name in names:
        assert not isinstance(vars(res)[name], Deferred)
    assert res.fixef is res.fixef  # computed once
