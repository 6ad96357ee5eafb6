"""The diagnostics table against ArviZ's own ``az.summary`` on the same draws."""

import arviz as az
import numpy as np
import pytest

from hierlm.estimate.diagnostics import diagnostics_table


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], rho: float) -> np.ndarray:
    """AR(1) draws along axis 1 (so ESS differs from the number of draws)."""
    x = rng.normal(size=shape)
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + np.sqrt(1 - rho**2) * x[:, t]
    return x


@pytest.fixture(scope="module")
def posterior():
    rng = np.random.default_rng(3)
    shifted = _ar1(rng, (4, 300, 3), 0.7)
    shifted[0] += 1.5  # one chain off: r_hat well above 1
    return az.from_dict(
        {"posterior": {"sigma": _ar1(rng, (4, 300), 0.3) ** 2,
                       "beta": shifted,
                       "corr": _ar1(rng, (4, 300, 2, 3), -0.2)}},
        dims={"beta": ["coef"], "corr": ["row", "col"]},
        coords={"coef": ["(Intercept)", "Days", "x"], "row": ["a", "b"],
                "col": ["u", "v", "w"]})


def test_matches_az_summary(posterior):
    names = ["beta", "sigma", "corr"]
    ours = diagnostics_table(posterior, names)
    ref = az.summary(posterior, var_names=names, round_to="none")
    assert ours.index.tolist() == ref.index.tolist()
    for col in ("mean", "sd", "r_hat", "ess_bulk", "ess_tail"):
        np.testing.assert_allclose(ours[col].to_numpy(), ref[col].to_numpy(dtype=float),
                                   rtol=1e-10, err_msg=col)
    assert ours.loc["beta[(Intercept)]", "r_hat"] > 1.05  # the shifted chain shows


def test_accepts_a_dataset(posterior):
    ds = posterior["posterior"].to_dataset()
    a = diagnostics_table(ds, ["sigma"])
    b = diagnostics_table(posterior, ["sigma"])
    assert a.equals(b) and a.index.tolist() == ["sigma"]
