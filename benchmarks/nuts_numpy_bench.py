"""One NUTS log density and gradient: the NumPy density against the compiled graph.

Usage (from the repository root)::

    python -m benchmarks.nuts_numpy_bench            # sleepstudy, 3 rounds of 3000 calls

Both are called from Python on the same point, in one process, one BLAS thread,
rounds alternating: ``hierlm.estimate.nuts_numpy.NumpyDensity`` and the compiled
``logp`` graph's ``python_fn`` (compiled first if the caches are empty).  Prints the
microseconds per call and the load average.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

import hierlm
from hierlm.estimate.nuts_compiled import call_args, data_values, density_graphs
from hierlm.estimate.nuts_numpy import NumpyDensity
from hierlm.estimate.priors import resolve_priors
from hierlm.inference.blas import one_blas_thread

FORMULA = "Reaction ~ 1 + Days + (1 + Days | Subject)"


def _per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--formula", default=FORMULA)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    m = hierlm.Model(args.formula, hierlm.load_sleepstudy())
    pr = resolve_priors(m.design)
    d = NumpyDensity(m.objective, pr)
    g = density_graphs(m.objective, pr)
    data = call_args(g.logp, data_values(m.objective, pr), 1)
    compiled = g.logp.python_fn
    x = np.zeros(d.ndim)
    x[:d.p] = d.beta_mu
    x[d.p] = np.log(pr.sigma_scale)
    compiled(x, *data)
    with one_blas_thread():
        for _ in range(args.rounds):
            a = _per_call(lambda: d(x), args.calls)
            b = _per_call(lambda: compiled(x, *data), args.calls)
            print(f"numpy {a:.1f} us  compiled {b:.1f} us  load {os.getloadavg()[0]:.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
