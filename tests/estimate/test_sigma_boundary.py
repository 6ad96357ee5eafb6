"""A structured term that can take all of the residual variance: sigma -> 0.

With one observation per subject and time, a ``cs`` term with its own variances can
absorb the residual, and the REML optimum can lie at the boundary sigma = 0, which the
profiled criterion (theta relative to sigma) reaches only in the limit.  The fit then
stops near the limit.  Checked against a dense brute-force optimum at sigma = 0 (``V``
block diagonal with blocks ``Sigma = diag(sd) R(rho) diag(sd)``, no residual; best of
several starts), and the warning must say what happened.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

import hierlm
from hierlm.errors import ConvergenceWarning


def _data(seed: int, n_subjects: int = 30, n_times: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lag = np.abs(np.subtract.outer(np.arange(n_times), np.arange(n_times)))
    b = rng.multivariate_normal(np.zeros(n_times), 9.0 * 0.7 ** lag, size=n_subjects)
    rows = [(f"p{i:02d}", f"w{t}", 20 - 0.5 * t + b[i, t] + rng.normal(0, 1.0))
            for i in range(n_subjects) for t in range(n_times)]
    return pd.DataFrame(rows, columns=["patient", "week", "score"]).assign(
        t=lambda d: d["week"].str[1:].astype(float))


def _boundary_optimum(model: hierlm.Model) -> tuple[float, np.ndarray]:
    """The REML criterion's minimum at sigma = 0, densely: ``(criterion, [sd..., rho])``."""
    X, y = model.design.X, model.design.y
    term = model.design.terms[0]
    rows = [np.flatnonzero(term.codes == g) for g in range(term.n_levels)]
    n, k = X.shape
    p = term.p

    def crit(v: np.ndarray) -> float:
        sd, rho = np.exp(v[:p]), np.tanh(v[p])
        S = sd[:, None] * np.where(np.eye(p) == 1, 1.0, rho) * sd[None, :]
        XtX, Xty, yty, logdet = np.zeros((k, k)), np.zeros(k), 0.0, 0.0
        for r in rows:
            Z = term.X[r]
            try:
                c = np.linalg.cholesky(Z @ S @ Z.T)
            except np.linalg.LinAlgError:
                return 1e10
            Xw, yw = np.linalg.solve(c, X[r]), np.linalg.solve(c, y[r])
            XtX += Xw.T @ Xw
            Xty += Xw.T @ yw
            yty += float(yw @ yw)
            logdet += 2 * float(np.sum(np.log(np.diag(c))))
        beta = np.linalg.solve(XtX, Xty)
        return (logdet + yty - float(Xty @ beta) + float(np.linalg.slogdet(XtX)[1])
                + (n - k) * np.log(2 * np.pi))

    rng = np.random.default_rng(1)
    best = (np.inf, np.zeros(p + 1))
    for _ in range(4):
        v0 = np.concatenate([np.log(3) + rng.normal(0, 0.3, p), [rng.uniform(0, 1)]])
        res = scipy.optimize.minimize(crit, v0, method="L-BFGS-B",
                                      options={"ftol": 1e-15, "gtol": 1e-10})
        res = scipy.optimize.minimize(crit, res.x, method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-12,
                                               "maxiter": 8000})
        if res.fun < best[0]:
            best = (float(res.fun), np.concatenate([np.exp(res.x[:p]), [np.tanh(res.x[p])]]))
    return best


@pytest.mark.parametrize("seed", [3, 4])
def test_cs_absorbing_the_residual_ends_at_the_sigma_zero_limit(seed: int) -> None:
    model = hierlm.Model("score ~ t + cs(0 + week | patient)", _data(seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit()
    crit0, params0 = _boundary_optimum(model)
    # the limit, to the references' tolerances (criterion 1e-6 relative, SDs and rho 2e-3)
    assert res.objective <= crit0 * (1 + 1e-6)
    assert res.objective >= crit0 * (1 - 1e-6)  # nothing below the boundary optimum
    np.testing.assert_allclose(res.covariance_parameters.to_numpy(), params0, atol=2e-3)
    assert res.sigma < 1e-3 * float(np.std(model.design.y))
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(messages) == 1
    assert "sigma" in messages[0] and "boundary" in messages[0], messages[0]
