"""Sampling with nutpie (the optional ``nutpie`` extra).

nutpie's sampler is written in Rust.  It evaluates the log density and its gradient
through the C entry points of :mod:`hierlm.estimate.nuts_compiled`: compiled once
per model structure and cached on disk, called without Python, so the chains run in
parallel threads.  With nothing compiled it samples the NumPy density instead
(:mod:`hierlm.estimate.nuts_first`), whose Python calls hold the interpreter lock: its
chains run in one thread unless ``cores`` is given.  The chains start near the REML
estimate (their jittered starting points, mapped to the unconstrained space) or, with
``init="prior"``, at PyMC's initial point jittered as PyMC jitters it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.estimate.nuts_compiled import (
    DensityGraphs,
    data_values,
    density_graphs,
    nutpie_model,
    to_unconstrained,
)
from hierlm.estimate.nuts_numpy import NumpyDensity
from hierlm.estimate.nuts_posterior import coords_of
from hierlm.estimate.priors import Priors
from hierlm.objective.profiled import ProfiledObjective


def nutpie_sample(objective: ProfiledObjective, pr: Priors,
                  starts: list[dict[str, np.ndarray]] | None, seed: int, draws: int,
                  tune: int, chains: int, cores: int | None, progressbar: bool,
                  target_accept: float) -> Any:
    """Sample the posterior of ``objective``'s model with nutpie.

    Chains start at ``starts`` (constrained values by variable name, one dict per
    chain: their mean in the unconstrained space, jittered by their spread there) or
    at PyMC's initial point.  Returns nutpie's ArviZ DataTree, warm-up included.
    """
    import nutpie

    from hierlm.estimate import nuts_first

    density: NumpyDensity | DensityGraphs
    if nuts_first.choose(objective, pr) == "numpy":  # nothing compiled: see nuts_first
        density = numpy_density = NumpyDensity(objective, pr)
        vecs = [numpy_density.forward(st) for st in starts or []]
    else:
        density = graphs = density_graphs(objective, pr)
        values = data_values(objective, pr)
        vecs = to_unconstrained(graphs, values, starts) if starts else []
    if not starts:
        from hierlm.estimate.nuts_model import compiled

        point = compiled(objective, pr).model.initial_point()
        vecs = [np.concatenate([np.ravel(point[k]) for k in density.value_names])]
    center = np.mean(vecs, axis=0)
    spread = np.std(vecs, axis=0) if len(vecs) > 1 else None

    def init(s: Any) -> np.ndarray:  # nutpie calls this with one seed per chain
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(s) % 2**32]))
        if spread is None:  # PyMC's jitter of its initial point
            return center + rng.uniform(-1.0, 1.0, len(center))
        return center + spread * rng.standard_normal(len(spread))

    coords = coords_of(objective.design)
    if isinstance(density, NumpyDensity):
        model = nuts_first.numpy_model(density, coords, init)
        if cores is None:  # its calls hold the interpreter lock: one thread (nuts_first)
            cores = 1
    else:
        model = nutpie_model(density, values, coords, init)
    out = nutpie.sample(model, draws=draws, tune=tune, chains=chains, seed=seed,
                        cores=cores, save_warmup=True, progress_bar=progressbar,
                        target_accept=target_accept)
    numpy = isinstance(density, NumpyDensity)
    out["sample_stats"].attrs["log_density"] = "numpy" if numpy else "compiled"
    if numpy:
        nuts_first.warm_up(objective, pr)  # later processes: the compiled density
    return out
