"""Sampling with nutpie (the optional ``nutpie`` extra).

nutpie's sampler is written in Rust.  It evaluates the log density and its gradient
through the C entry points of :mod:`hierlm.estimate.nuts_compiled`: compiled once
per model structure and cached on disk, called without Python, so the chains run in
parallel threads.  The chains start near the REML estimate (their jittered starting
points, mapped to the unconstrained space) or, with ``init="prior"``, at PyMC's
initial point jittered as PyMC jitters it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.estimate.nuts_compiled import (
    data_values,
    density_graphs,
    nutpie_model,
    to_unconstrained,
)
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

    graphs = density_graphs(objective, pr)
    values = data_values(objective, pr)
    if starts:
        vecs = to_unconstrained(graphs, values, starts)
    else:
        from hierlm.estimate.nuts_model import compiled

        point = compiled(objective, pr).model.initial_point()
        vecs = [np.concatenate([np.ravel(point[k]) for k in graphs.value_names])]
    center = np.mean(vecs, axis=0)
    spread = np.std(vecs, axis=0) if len(vecs) > 1 else None

    def init(s: Any) -> np.ndarray:  # nutpie calls this with one seed per chain
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(s) % 2**32]))
        if spread is None:  # PyMC's jitter of its initial point
            return center + rng.uniform(-1.0, 1.0, len(center))
        return center + spread * rng.standard_normal(len(spread))

    model = nutpie_model(graphs, values, coords_of(objective.design), init)
    return nutpie.sample(model, draws=draws, tune=tune, chains=chains, seed=seed,
                         cores=cores, save_warmup=True, progress_bar=progressbar,
                         target_accept=target_accept)
