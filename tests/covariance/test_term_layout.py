"""theta's layout operations of the covariance layer, against brute-force constructions.

The reference is written out entry by entry from lme4's packing (``getME(fit, "theta")``
is the lower triangle of each template read column by column, terms in formula order),
not from the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from hierlm.covariance.design import DesignCovariance, column_rms
from hierlm.covariance.layout import templates, theta_lower
from hierlm.covariance.term_layout import TermLayout


def _brute_template(p: int, theta: np.ndarray) -> np.ndarray:
    T = np.zeros((p, p))
    k = 0
    for j in range(p):          # column by column
        for i in range(j, p):   # down the column from the diagonal
            T[i, j] = theta[k]
            k += 1
    return T


@pytest.mark.parametrize("p", [1, 2, 3, 5])
def test_unpack_pack_match_the_packing(p: int) -> None:
    rng = np.random.default_rng(p)
    lay = TermLayout(p)
    th = rng.normal(size=p * (p + 1) // 2)
    T = _brute_template(p, th)
    np.testing.assert_array_equal(lay.unpack(th), T)
    np.testing.assert_array_equal(lay.pack(T), th)
    rows, cols = lay.template_index()
    np.testing.assert_array_equal(T[rows, cols], th)
    diag = [k for k, (i, j) in enumerate(zip(rows, cols, strict=True)) if i == j]
    assert lay.diagonal_index().tolist() == diag
    draws = rng.normal(size=(4, 3, th.size))
    np.testing.assert_array_equal(lay.unpack(draws)[2, 1], _brute_template(p, draws[2, 1]))


def test_unpack_refuses_a_wrong_length() -> None:
    with pytest.raises(ValueError, match="3 theta entries"):
        TermLayout(2).unpack(np.zeros(4))


@pytest.mark.parametrize("p", [2, 3, 4])
def test_canonical_signs_keep_the_covariance(p: int) -> None:
    rng = np.random.default_rng(10 + p)
    lay = TermLayout(p)
    th = rng.normal(size=p * (p + 1) // 2)
    out, flipped = lay.canonical_signs(th)
    T, T2 = _brute_template(p, th), _brute_template(p, out)
    np.testing.assert_allclose(T2 @ T2.T, T @ T.T, rtol=1e-14, atol=1e-14)
    assert np.all(np.diag(T2) >= 0)
    np.testing.assert_array_equal(flipped, out != th)


def test_generators_are_the_derivatives_of_a_symmetric_matrix() -> None:
    lay = TermLayout(3)
    rows, cols = lay.template_index()
    for E, a, b in zip(lay.generators(), rows, cols, strict=True):
        ref = np.zeros((3, 3))
        ref[a, b] = ref[b, a] = 1.0
        np.testing.assert_array_equal(E, ref)


def test_design_operations_agree_with_the_layout_functions() -> None:
    data = hierlm.load_sleepstudy()
    d = hierlm.build_design("Reaction ~ Days + (Days | Subject) + (1 | Subject)", data)
    cov = DesignCovariance.of(d)
    th = np.array([1.5, -0.3, 0.7, 0.9])
    assert [s.stop - s.start for s in cov.theta_slices()] == [3, 1]
    for mine, ref in zip(cov.templates(th), templates(d, th), strict=True):
        np.testing.assert_array_equal(mine, ref)
    np.testing.assert_array_equal(cov.templates(th)[0], [[1.5, 0.0], [-0.3, 0.7]])
    np.testing.assert_array_equal(cov.pack(cov.templates(th)), th)
    assert cov.diagonal_index().tolist() == np.flatnonzero(theta_lower(d) == 0).tolist()
    days_rms = float(np.sqrt(np.mean(data["Days"].to_numpy(float) ** 2)))
    np.testing.assert_allclose(cov.theta_scale(), [1.0, 1 / days_rms, 1 / days_rms, 1.0])
    np.testing.assert_allclose(column_rms(d.terms[0]), [1.0, days_rms])
    flipped, mask = cov.canonical_signs(np.array([-1.0, 0.5, 2.0, -3.0]))
    assert flipped.tolist() == [1.0, -0.5, 2.0, 3.0] and mask.tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="length 4"):
        cov.split_theta(np.zeros(3))
