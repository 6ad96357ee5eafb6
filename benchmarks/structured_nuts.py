"""First NUTS fits of structured models in one process: compiled density against none.

``python -m benchmarks.structured_nuts`` simulates two small ``ar1`` data sets (fixed
seeds; 12 and 14 subjects x 4 times x 2 replicates, the names of the columns changed
from the tests' and a random covariate added) and fits ``out ~ wave + z + ar1(0 + wave |
pid)`` to each by NUTS (2 chains x 300 draws after 300 tuning steps, ``cores=1``), in
one process, printing the wall time of each fit and the sampler.  Run from another
checkout (``PYTHONPATH``) it times that code on the same models.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

import hierlm


def simulate(rng: np.random.Generator, n_sub: int, sd: float = 1.5, rho: float = 0.5,
             sigma: float = 1.0, T: int = 4, reps: int = 2) -> pd.DataFrame:
    """An ar1 subject effect per time, replicated cells."""
    lag = np.abs(np.subtract.outer(np.arange(T), np.arange(T)))
    b = rng.multivariate_normal(np.zeros(T), sd**2 * rho**lag, size=n_sub)
    rows = [(f"s{g:02d}", f"t{t}", b[g, t] + sigma * rng.normal())
            for g in range(n_sub) for t in range(T) for _ in range(reps)]
    df = pd.DataFrame(rows, columns=["pid", "wave", "out"])
    df["z"] = rng.normal(size=len(df))
    return df


def main() -> None:
    for seed, n_sub in ((3, 12), (5, 14)):
        df = simulate(np.random.default_rng(seed), n_sub)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            res = hierlm.fit("out ~ wave + z + ar1(0 + wave | pid)", df, method="nuts",
                             draws=300, tune=300, chains=2, progressbar=False,
                             random_seed=1, cores=1)
            t1 = time.perf_counter()
        print(f"{n_sub} subjects: NUTS fit {t1 - t0:.2f} s, sampler {res.nuts.sampler}",
              flush=True)


if __name__ == "__main__":
    main()
