"""Per-evaluation time of the residual criterion where the rows form many classes.

``python -m benchmarks.residual_rows_eval [--subjects N] [--visits K] [--repeats R]``
simulates ``N`` subjects x ``K`` visits at irregular real times (every gap distinct),
and times one evaluation of ``crit(theta, z)`` at a new ``z`` for ``car1(time | id)``
and ``cs(1 | id)`` with ``y ~ x + time + (1 + time | id)``: the whitened design row by
row (``whitened_design`` + ``compile_objective``), the rows' combinations with the
Numba kernel and with the ``np.bincount`` form (:mod:`hierlm.objective.residual_rows`),
and the kernel alone; best of ``R`` after a warm-up.  Prints the times in ms.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from hierlm.design.residual_design import design_with_residual
from hierlm.objective import compile_objective
from hierlm.objective.residual_gram import whitened_design
from hierlm.objective.residual_rows import RowGram, kernel, row_gram

FORMULA = "y ~ x + time + (1 + time | id)"


def simulate(n: int, k: int, seed: int = 1) -> pd.DataFrame:
    """Irregular times, a random intercept and slope, CAR(1) errors (phi = 0.6)."""
    rng = np.random.default_rng(seed)
    t = np.sort(np.cumsum(rng.uniform(0.5, 1.5, (n, k)), axis=1), axis=1)
    e = np.empty((n, k))
    e[:, 0] = rng.normal(size=n)
    for j in range(1, k):
        a = 0.6 ** (t[:, j] - t[:, j - 1])
        e[:, j] = a * e[:, j - 1] + np.sqrt(1 - a * a) * rng.normal(size=n)
    x = rng.normal(size=(n, k))
    b = rng.normal(size=(n, 2)) * [1.0, 0.2]
    y = 1 + 0.5 * x + 0.3 * t + b[:, [0]] + b[:, [1]] * t + e
    return pd.DataFrame({"y": y.ravel(), "x": x.ravel(), "time": t.ravel(),
                         "id": np.repeat(np.arange(n), k)})


def best(fn: Callable[[], object], repeats: int) -> float:
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return 1e3 * min(out)


def time_case(d: pd.DataFrame, residual: str, rho: float, repeats: int) -> str:
    """One line of timings for one residual structure."""
    theta = np.array([1.0, 0.1, 0.2])
    des, rd = design_with_residual(FORMULA, d, residual, None)
    delta = np.zeros(0)
    rhos = iter(np.linspace(rho - 0.1, rho + 0.1, 10 * repeats))

    def rows() -> float:
        wd, logdet = whitened_design(des, rd, next(rhos), delta)
        return compile_objective(wd, backend="numba")(theta, True) + logdet

    def combos(rg: RowGram) -> float:
        gram, logdet = rg.gram(next(rhos), delta)
        return compile_objective(des, gram, backend="numba")(theta, True) + logdet

    t0 = time.perf_counter()
    fast = row_gram(des, rd, use_kernel=True)
    setup = 1e3 * (time.perf_counter() - t0)
    slow = row_gram(des, rd, use_kernel=False)
    assert fast is not None and slow is not None
    fn = kernel()
    assert fn is not None
    w, coef, _ = fast.weights(rho, delta)
    x, out = np.empty(fast.slot_combo.size), np.empty(fast.n_entries)

    def kernel_only() -> None:
        fn(fast.ent_slot, fast.ent_l, fast.ent_val, w, fast.slot_combo, fast.pair_a,
           fast.pair_b, fast.pair_entry, coef, x, out)

    return (f"{residual} n={des.nobs}: row-by-row {best(rows, repeats):.1f} ms, "
            f"kernel {best(lambda: combos(fast), repeats):.1f} ms "
            f"(kernel alone {best(kernel_only, repeats):.2f} ms), "
            f"bincount {best(lambda: combos(slow), repeats):.1f} ms; "
            f"setup once {setup:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=2000)
    ap.add_argument("--visits", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    d = simulate(args.subjects, args.visits)
    for residual, rho in (("car1(time | id)", 0.6), ("cs(1 | id)", 0.3)):
        print(time_case(d, residual, rho, args.repeats))


if __name__ == "__main__":
    main()
