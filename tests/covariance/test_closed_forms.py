"""The closed-form maps psi -> (theta, d theta / d psi) against independent references.

References: a 160-digit evaluation written here from each structure's definition
(``R(psi)`` entry by entry, a textbook Cholesky factorization, the derivative by a
central difference with step 1e-60 in the correlation parameter), exact to far below
double rounding also where ``R`` is nearly singular; the general path
(:meth:`Covariance.theta_jacobian_general`: LAPACK's factor, Murray's formula, ``d R``
by the complex step), which shares no code with the closed forms (AR(1)'s explicit
factor, compound symmetry's Schur complements, Toeplitz's differentiated
Durbin-Levinson recursion); and central finite differences of theta.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

import numpy as np
import pytest

from hierlm.covariance.base import CORR_BOUNDS
from hierlm.covariance.compound import CS_BOUNDS
from hierlm.covariance.design import CLASSES, DesignCovariance

RNG = np.random.default_rng(8123)
STRUCTURED = sorted(set(CLASSES) - {"us"})


def _make(name: str, p: int):
    rms = np.array([0.5, 1.0, 2.0, 1.5, 0.8, 1.2, 0.7])[:p]
    return CLASSES[name](tuple(f"t{j}" for j in range(p)), "g", rms)


def _points(c, n: int) -> list[np.ndarray]:
    """Random points, and points with the correlation parameters near their bounds."""
    out = [RNG.normal(scale=1.2, size=c.n_psi) for _ in range(n)]
    k = c.n_psi - (1 if c.homogeneous else c.p)
    if k:
        hi = (CS_BOUNDS if c.structure in ("cs", "homcs") else CORR_BOUNDS)[1]
        for sign in (-1.0, 1.0):
            psi = RNG.normal(scale=0.5, size=c.n_psi)
            psi[-k:] = sign * (hi - 1.0) * RNG.uniform(0.8, 1.0, size=k)
            out.append(psi)
    return out


def _tanh(z: Decimal) -> Decimal:
    e = (2 * z).exp()
    return (e - 1) / (e + 1)


def _correlation_hp(c, zs: list[Decimal]) -> list[list[Decimal]]:
    """``R`` at the context's precision from the structure's definition."""
    p = c.p
    if c.structure in ("ar1", "hetar1"):
        r = _tanh(zs[0]) if p > 1 else Decimal(0)
        lags = [Decimal(1)] + [r**k for k in range(1, p)]
    elif c.structure in ("cs", "homcs"):
        lo = Decimal(-1) / (p - 1) if p > 1 else Decimal(0)
        r = lo + (1 - lo) / (1 + (-zs[0]).exp()) if p > 1 else Decimal(0)
        lags = [Decimal(1)] + [r] * (p - 1)
    elif c.structure in ("toep", "homtoep"):
        # the partial autocorrelations' definition: rho_k solves the order-k
        # Yule-Walker system whose last coefficient is a_k (Durbin-Levinson)
        lags, phi = [Decimal(1)], []
        for k, zk in enumerate(zs, start=1):
            a = _tanh(zk)
            num = sum((phi[j] * lags[k - 1 - j] for j in range(k - 1)), Decimal(0))
            den = 1 - sum((phi[j] * lags[j + 1] for j in range(k - 1)), Decimal(0))
            lags.append(num + a * den)
            phi = [phi[j] - a * phi[k - 2 - j] for j in range(k - 1)] + [a]
    else:
        lags = [Decimal(1)] + [Decimal(0)] * (p - 1)
    return [[lags[abs(i - j)] for j in range(p)] for i in range(p)]


def _cholesky_hp(R: list[list[Decimal]]) -> list[list[Decimal]]:
    p = len(R)
    L = [[Decimal(0)] * p for _ in range(p)]
    for j in range(p):
        L[j][j] = (R[j][j] - sum(L[j][k] ** 2 for k in range(j))).sqrt()
        for i in range(j + 1, p):
            L[i][j] = (R[i][j] - sum(L[i][k] * L[j][k] for k in range(j))) / L[j][j]
    return L


def reference_hp(c, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """theta and its Jacobian in the correlation parameters, at 160 digits."""
    n_sd = 1 if c.homogeneous else c.p
    s = [Decimal(float(v)) for v in c.sds(psi)]
    rows, cols = c._rows, c._cols
    with localcontext() as ctx:
        ctx.prec = 160
        zs = [Decimal(float(v)) for v in psi[n_sd:]]

        def theta(z: list[Decimal]) -> list[Decimal]:
            L = _cholesky_hp(_correlation_hp(c, z))
            return [s[r] * L[r][k] for r, k in zip(rows, cols, strict=True)]

        t = theta(zs)
        h = Decimal("1e-60")
        dl = []
        for k in range(len(zs)):
            up = theta([z + h if i == k else z for i, z in enumerate(zs)])
            down = theta([z - h if i == k else z for i, z in enumerate(zs)])
            dl.append([(a - b) / (2 * h) for a, b in zip(up, down, strict=True)])
    return (np.array([float(v) for v in t]),
            np.array([[float(v) for v in col] for col in dl]).T.reshape(len(t), len(zs)))


@pytest.mark.parametrize("name", STRUCTURED)
@pytest.mark.parametrize("p", [1, 2, 3, 5, 7])
def test_closed_form_equals_hp_digit_reference(name: str, p: int) -> None:
    c = _make(name, p)
    n_sd = 1 if c.homogeneous else c.p
    for psi in _points(c, 4):
        theta, J = c.theta_jacobian(psi)
        theta_hp, dl_hp = reference_hp(c, psi)
        np.testing.assert_allclose(theta, theta_hp, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(J[:, :n_sd].sum(axis=1), theta_hp, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(J[:, n_sd:], dl_hp, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", STRUCTURED)
@pytest.mark.parametrize("p", [2, 4, 6])
def test_closed_form_equals_general_path(name: str, p: int) -> None:
    c = _make(name, p)
    for psi in _points(c, 4)[:4]:  # away from the limits, where LAPACK is exact enough
        theta, J = c.theta_jacobian(psi)
        theta0, J0 = c.theta_jacobian_general(psi)
        np.testing.assert_allclose(theta, theta0, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(J, J0, rtol=1e-8, atol=1e-11)


@pytest.mark.parametrize("name", STRUCTURED)
def test_closed_form_jacobian_matches_finite_differences(name: str) -> None:
    c = _make(name, 5)
    for psi in _points(c, 3)[:3]:
        _, J = c.theta_jacobian(psi)
        h = 1e-6
        fd = np.column_stack([(c.theta(psi + h * e) - c.theta(psi - h * e)) / (2 * h)
                              for e in np.eye(c.n_psi)])
        np.testing.assert_allclose(J, fd, atol=2e-8 * max(1.0, np.abs(fd).max()))


def test_closed_forms_are_used() -> None:
    """Each structure but the unstructured one has a closed-form factor (no fallback)."""
    for name in STRUCTURED:
        c = _make(name, 4)
        assert c.packed_cholesky(c.psi_start()) is not None, name


def test_last_point_is_kept_and_read_only() -> None:
    c = _make("ar1", 4)
    a, b = np.array([0.1, 0.3]), np.array([0.1, -0.3])
    ta, Ja = c.theta_jacobian(a)
    assert c.theta_jacobian(a.copy())[0] is ta           # the same point: kept
    tb, _ = c.theta_jacobian(b)
    assert not np.allclose(ta, tb)
    with pytest.raises(ValueError):
        ta[0] = 1.0                                       # read-only: the cache is shared
    t = c.theta(a)
    t[0] = 5.0                                            # theta() gives a copy
    np.testing.assert_array_equal(c.theta_jacobian(a)[0], c.theta_jacobian_general(a)[0])


def test_design_map_is_block_diagonal_of_the_terms() -> None:
    cov = DesignCovariance(tuple(_make(n, p) for n, p in (("cs", 3), ("us", 2), ("toep", 4))))
    psi = RNG.normal(size=cov.n_psi)
    theta, J = cov.theta_jacobian(psi)
    r = c0 = 0
    for c, x in zip(cov.terms, cov.split(psi), strict=True):
        t1, J1 = c.theta_jacobian_general(x)
        np.testing.assert_allclose(theta[r:r + c.n_theta], t1, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(J[r:r + c.n_theta, c0:c0 + c.n_psi], J1, rtol=1e-9,
                                   atol=1e-12)
        J[r:r + c.n_theta, c0:c0 + c.n_psi] = 0.0
        r += c.n_theta
        c0 += c.n_psi
    assert not J.any()  # nothing off the diagonal blocks
