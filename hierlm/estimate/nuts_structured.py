"""NUTS on a structured random-effects term: its own parameters, mapped to theta.

A structured term (:mod:`hierlm.covariance`) is sampled in its own parameters, not in
an unstructured ``Sigma``: the SDs ``sd_<group>`` (one per column, or one scalar for a
homogeneous structure) and the correlation parameters that the covariance object
names (:meth:`~hierlm.covariance.base.Covariance.nuts_correlation_prior`): ``rho_<group>``
for ``ar1``/``cs``, partial autocorrelations ``pacf_<group>[<group>_lag]`` for ``toep``,
none for ``diag``.  Inside the density

    R = R(rho),   T = diag(sd / sigma) chol(R),   theta = T's lower triangle (lme4's packing)

with ``R`` written in PyTensor: ``rho^|j-k|`` (powers by repeated products),
``(1 - rho) I + rho 1 1'``, or the Durbin-Levinson recursion from the partial
autocorrelations to the lag correlations.  Priors: each SD ``HalfNormal`` with the
unstructured terms' scale (geometric mean of the columns' scales when homogeneous), each
correlation parameter ``Uniform`` over its whole valid range.  After sampling, the
posterior gets ``theta`` from the same map (in numpy) and, for ``toep``, the lag
correlations ``rho_<group>[<group>_lag]``.  The density is compiled once per
structure like an unstructured model's (:mod:`hierlm.estimate.nuts_compiled` keys it
by each term's structure and size), so nutpie samples it through the same C entry
points.  Measured with ``python -m benchmarks.structured_nuts`` (two ``ar1`` models
with other level counts in one process, 2 chains x 300 draws, 2 shared cores, load
about 5.5): the second model's fit took 0.88-1.12 s, against 10.4-16.1 s when each
model compiled PyMC's own density; the first fit in a process (8.0 s, graphs on disk)
spends most of its time importing nutpie and ArviZ.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt
import xarray as xr

from hierlm.covariance.base import Covariance
from hierlm.covariance.names import posterior_name
from hierlm.covariance.toeplitz import autocorrelations


def lag_coords(p: int) -> list[str]:
    """Coordinates of a Toeplitz term's lags.

    Examples
    --------
    >>> lag_coords(3)
    ['lag1', 'lag2']
    """
    return [f"lag{k}" for k in range(1, p)]


def homogeneous_scale(scale: Any) -> Any:
    """The prior scale of a homogeneous SD: geometric mean of the columns' scales.

    Examples
    --------
    >>> float(homogeneous_scale(np.array([1.0, 4.0])))
    2.0
    """
    if isinstance(scale, np.ndarray):
        return np.exp(np.mean(np.log(scale)))
    return pt.exp(pt.mean(pt.log(scale)))


def _durbin_levinson(pacf: Any, m: int) -> list[Any]:
    """Lag correlations ``rho_1..rho_m`` from partial autocorrelations (PyTensor)."""
    rho: list[Any] = [pt.constant(1.0)]
    phi: list[Any] = []
    for k in range(1, m + 1):
        a = pacf[k - 1]
        num = sum((phi[j] * rho[k - 1 - j] for j in range(k - 1)), pt.constant(0.0))
        den = 1.0 - sum((phi[j] * rho[j + 1] for j in range(k - 1)), pt.constant(0.0))
        rho.append(num + a * den)
        phi = [phi[j] - a * phi[k - 2 - j] for j in range(k - 1)] + [a]
    return rho[1:]


def correlation_tensor(cov: Covariance, values: Any) -> Any:
    """``R`` of ``cov`` from its NUTS correlation parameters (a PyTensor expression)."""
    p = cov.p
    lag = np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
    eye = np.eye(p)
    kind = cov.structure
    if kind in ("ar1", "hetar1"):
        powers = [pt.constant(1.0)]
        for _ in range(1, p):
            powers.append(powers[-1] * values)
        return pt.stack(powers)[lag]
    if kind in ("cs", "homcs"):
        return eye + (1.0 - eye) * values
    if kind in ("toep", "homtoep"):
        return pt.stack([pt.constant(1.0), *_durbin_levinson(values, p - 1)])[lag]
    raise ValueError(f"no NUTS correlation map for structure {kind!r}")


def term_theta(cov: Covariance, label: str, scale: Any, sigma: Any) -> Any:
    """Declare the term's parameters in the current PyMC model; return its theta slice."""
    import pymc as pm

    p = cov.p
    if cov.homogeneous:
        sd = pm.HalfNormal(posterior_name("sd", label), sigma=homogeneous_scale(scale))
        rel = pt.ones(p) * (sd / sigma)
    else:
        sd = pm.HalfNormal(posterior_name("sd", label), sigma=scale,
                           dims=posterior_name("term", label))
        rel = sd / sigma
    prior = cov.nuts_correlation_prior()
    if prior is None:
        T = pt.diag(rel)
    else:
        name, count, lo, hi = prior
        if count == 1:
            r = pm.Uniform(posterior_name(name, label), lower=lo, upper=hi)
        else:
            r = pm.Uniform(posterior_name(name, label), lower=lo, upper=hi,
                           dims=posterior_name("lag", label))
        L = pt.linalg.cholesky(correlation_tensor(cov, r))
        T = rel[:, None] * L
    return cov.pack(T)


def start_values(cov: Covariance, label: str, psi: np.ndarray, sigma: float,
                 scale: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A jittered start for the term's NUTS parameters near ``psi`` (e.g. the REML fit)."""
    sd = sigma * cov.sds(psi)
    floor = 0.05 * (homogeneous_scale(scale) if cov.homogeneous else scale)
    sd = np.maximum(sd[:1] if cov.homogeneous else sd, floor)
    out = {posterior_name("sd", label): sd * np.exp(0.1 * rng.normal(size=sd.shape))}
    if cov.homogeneous:
        out[posterior_name("sd", label)] = np.asarray(out[posterior_name("sd", label)][0])
    prior = cov.nuts_correlation_prior()
    if prior is not None:
        name, count, lo, hi = prior
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        r = cov.nuts_correlation_start(psi)
        r = np.clip(r + 0.05 * half * rng.normal(size=r.shape), mid - 0.95 * half,
                    mid + 0.95 * half)
        out[posterior_name(name, label)] = np.asarray(r[0]) if count == 1 else r
    return out


def posterior_terms(cov: Covariance, label: str, post: xr.Dataset, sig: np.ndarray
                    ) -> tuple[np.ndarray, dict[str, xr.DataArray]]:
    """The term's theta draws ``(chain, draw, n_theta)`` and its derived variables."""
    sd = np.asarray(post[posterior_name("sd", label)].values, dtype=float)
    if cov.homogeneous:
        sd = np.repeat(sd[..., None], cov.p, axis=-1)
    rel = sd / sig[..., None]
    prior = cov.nuts_correlation_prior()
    derived: dict[str, xr.DataArray] = {}
    shape = rel.shape[:2]
    L = np.broadcast_to(np.eye(cov.p), (*shape, cov.p, cov.p)).copy()
    if prior is not None:
        name = posterior_name(prior[0], label)
        vals = np.asarray(post[name].values, dtype=float).reshape(*shape, -1)
        for idx in np.ndindex(*shape):
            L[idx] = np.linalg.cholesky(cov.correlation_from_nuts(vals[idx]))
        if cov.structure in ("toep", "homtoep"):
            acs = np.apply_along_axis(autocorrelations, -1, vals)
            dim = posterior_name("lag", label)
            derived[posterior_name("rho", label)] = xr.DataArray(
                acs, dims=("chain", "draw", dim), coords={dim: lag_coords(cov.p)})
    return cov.pack(rel[..., :, None] * L), derived


def median_covariance(cov: Covariance, label: str, post: xr.Dataset) -> np.ndarray:
    """``Sigma`` from the posterior medians of the SDs and correlation parameters
    (lag correlations' medians for ``toep``)."""
    sd = np.median(np.asarray(post[posterior_name("sd", label)].values, dtype=float).reshape(
        -1, *post[posterior_name("sd", label)].shape[2:]), axis=0)
    sd = np.broadcast_to(sd, (cov.p,))
    prior = cov.nuts_correlation_prior()
    if prior is None:
        R = np.eye(cov.p)
    elif cov.structure in ("toep", "homtoep"):
        acs = np.asarray(post[posterior_name("rho", label)].values).reshape(-1, cov.p - 1)
        R = cov.correlation_from_natural(np.median(acs, axis=0))
    else:
        R = cov.correlation_from_nuts(np.median(post[posterior_name(prior[0], label)].values))
    return sd[:, None] * R * sd[None, :]


def variable_names(cov: Covariance, label: str) -> list[str]:
    """The term's posterior variables, for the diagnostics table."""
    prior = cov.nuts_correlation_prior()
    out = [posterior_name("sd", label)]
    if prior is not None:
        out.append(posterior_name(prior[0], label))
        if cov.structure in ("toep", "homtoep"):
            out.append(posterior_name("rho", label))
    return out
