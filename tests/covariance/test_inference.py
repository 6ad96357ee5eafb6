"""Satterthwaite and Kenward-Roger on structured terms, against dense brute force.

The variance parameters of a structured model are the structure's own; both df are
invariant to a smooth reparameterization at the optimum, so the brute force uses its
own (log relative SDs, raw correlations, sigma) and finite differences of the dense
unprofiled deviance and of ``vcov(beta)``, while hierlm works in its psi with the chain
rule and its second-order term.
"""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.inference.kenward_roger import KRInfo, kr_info
from tests.covariance.brute import HOM, DenseFit, dense_v, unprofiled
from tests.covariance.test_fit_dense import fitted


def _natural(res, structure):
    n_sd = 1 if structure in HOM else 4
    cp = res.covariance_parameters.to_numpy()
    return np.concatenate([np.log(cp[:n_sd] / res.sigma), cp[n_sd:]])


def _fd_hessian(f, x, h=1e-4):
    k = len(x)
    H = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            H[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4 * h * h)
    return (H + H.T) / 2


@pytest.mark.parametrize("structure", ["cs", "ar1", "toep", "hetar1"])
def test_satterthwaite_matches_finite_differences(structure):
    res = fitted(structure, True)
    fit = DenseFit(res.model.design, structure, True)
    x0 = np.append(_natural(res, structure), res.sigma)

    def dev(x):
        return unprofiled(fit, x[:-1], x[-1])[0]

    A = 2 * np.linalg.inv(_fd_hessian(dev, x0))
    table = res.coef_table()
    for j, name in enumerate(res.fixef.index):
        def var(x, j=j):
            return unprofiled(fit, x[:-1], x[-1])[1][j, j]

        g = np.array([(var(x0 + e) - var(x0 - e)) / 2e-6 for e in np.eye(len(x0)) * 1e-6])
        v = var(x0)
        assert table.loc[name, "se"] == pytest.approx(np.sqrt(v), rel=1e-6)
        assert table.loc[name, "df"] == pytest.approx(2 * v**2 / (g @ A @ g), rel=2e-3)


def test_satterthwaite_needs_the_second_order_term():
    """Without the term sum_i g_i d2theta_i/dpsi2 the df would be different: the
    theta-gradient is far from zero at a structured optimum."""
    from hierlm.covariance.design import DesignCovariance

    res = fitted("ar1", True)
    obj = res.model.objective
    g_theta = obj.value_and_grad(res.theta, True)[1]
    cov = DesignCovariance.of(res.model.design)
    psi = cov.psi_from_theta(res.theta)
    assert np.max(np.abs(g_theta)) > 1.0
    assert np.max(np.abs(cov.jacobian(psi).T @ g_theta)) < 1e-3


@pytest.mark.parametrize("structure", ["cs", "ar1", "toep"])
def test_kenward_roger_matches_dense_definition(structure):
    """pbkrtest's formulas written densely with G_r = dV/dpar_r by finite differences."""
    res = fitted(structure, True)
    fit = DenseFit(res.model.design, structure, True)
    x0 = np.append(_natural(res, structure), res.sigma**2)
    X = fit.design.X

    def V(x):
        return dense_v(fit, x[:-1], x[-1])

    h = 1e-6
    G = [(V(x0 + e) - V(x0 - e)) / (2 * h) for e in np.eye(len(x0)) * h]
    Vi = np.linalg.inv(V(x0))
    phi = np.linalg.inv(X.T @ Vi @ X)
    VG = [Vi @ g for g in G]
    P = [-X.T @ vg @ Vi @ X for vg in VG]
    k = len(G)
    Q = [[X.T @ VG[r] @ VG[s] @ Vi @ X for s in range(k)] for r in range(k)]
    IE = np.array([[np.trace(VG[r] @ VG[s]) - 2 * np.sum(phi * Q[r][s])
                    + np.sum((phi @ P[r]) * (P[s] @ phi)) for s in range(k)] for r in range(k)])
    W = 2 * np.linalg.inv((IE + IE.T) / 2)
    U = sum(W[r, s] * (Q[r][s] - P[r] @ phi @ P[s]) for r in range(k) for s in range(k))
    phi_adj = phi + 2 * phi @ ((U + U.T) / 2) @ phi
    mine = kr_info(res)
    np.testing.assert_allclose(mine.phi, phi, rtol=1e-6)
    np.testing.assert_allclose(mine.phi_adj, phi_adj, rtol=1e-4)
    dense = KRInfo(phi=phi, phi_adj=phi_adj, P=P, W=W)
    for c in np.eye(X.shape[1]):
        assert mine.contrast(c)[1] == pytest.approx(dense.contrast(c)[1], rel=1e-4)
    L = np.eye(X.shape[1])
    assert mine.ddf(L)[0] == pytest.approx(dense.ddf(L)[0], rel=1e-4)
