"""A fixed effect held at a value as a reduced model (hierlm.inference.profile_beta).

Its ML criterion must equal the profile's closed form of the deviance with
``beta_j = b`` (``Profiler._dev_beta``: ``log|L|^2 + n (1 + log(2 pi rss / n))``) at any
theta, with prior weights and several fixed effects, and its gradient must equal
central finite differences of that closed form.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.inference.profile import profiler
from hierlm.inference.profile_beta import fixed_beta_objective


def data(n=240, levels=20, seed=3):
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, levels, n), rng.integers(0, 6, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    f = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    y = (1 + 0.5 * x - 0.3 * z + (f == "b") + rng.normal(size=levels)[g]
         + 0.4 * rng.normal(size=levels)[g] * x + 0.5 * rng.normal(size=6)[h]
         + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "z": z, "f": f, "g": g.astype(str),
                         "h": h.astype(str), "w": rng.uniform(0.5, 2.0, n)})


@pytest.mark.parametrize(("formula", "weighted"), [
    ("y ~ x + z + f + (x | g)", False),
    ("y ~ x + z + f + (x | g)", True),
    ("y ~ x * f + (1 | g) + (1 | h)", False),
    ("y ~ 1 + (1 | g)", False),
])
def test_reduced_model_is_the_fixed_effect_deviance(formula, weighted):
    d = data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit(formula, d, method="ml", weights=d["w"] if weighted else None)
    pr = profiler(res)
    beta = res.fixef.to_numpy()
    se = res.fixef_se.to_numpy()
    rng = np.random.default_rng(0)
    for j in range(beta.size):
        for b in (beta[j], beta[j] - 2.5 * se[j], beta[j] + 1.7 * se[j]):
            red = fixed_beta_objective(pr.objective, j, float(b))
            for theta in (res.theta, res.theta * rng.uniform(0.6, 1.5, res.theta.size)):
                f, grad, _, _ = red.evaluate(theta, False)
                want = pr._dev_beta(theta, j, float(b))
                assert f == pytest.approx(want, rel=1e-10)
                h = 1e-5 * np.maximum(np.abs(theta), 0.1)
                fd = np.array([(pr._dev_beta(theta + e * h[i], j, float(b))
                                - pr._dev_beta(theta - e * h[i], j, float(b))) / (2 * h[i])
                               for i, e in enumerate(np.eye(theta.size))])
                # atol: at the estimate the gradient is ~0 and the differences carry ~1e-8
                np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)
