"""The two links of the profiled objective, side by side: per-evaluation time.

    python -m benchmarks.backend_bench                       # all but movielens
    python -m benchmarks.backend_bench --cases sleepstudy,insteval

For each case: the work measure that ``backend="auto"`` compares with
:data:`hierlm.objective.profiled.NUMBA_WORK`, the backend it picks, and the median
time of one evaluation (value, gradient and factors at the REML optimum) linked by
PyTensor's Python VM and by Numba, in one process after a warm-up call each.  A
whole fit takes tens of evaluations, and a fresh process pays about a second to
start Numba (more to compile a new structure), so the VM is the better link while
``n_evals x (vm - numba)`` stays well under that.  Results go to
``benchmarks/backend_results.md`` (``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

import hierlm
from benchmarks.optimizer_bench import case_data
from hierlm.objective.profiled import NUMBA_WORK, VM_BUDGET_S, choose_backend, work_of

BENCH_DIR = Path(__file__).resolve().parent


def _median_call(obj: object, theta: np.ndarray, budget: float = 2.0) -> float:
    obj.evaluate(theta, True)  # type: ignore[attr-defined]
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget and len(times) < 200):
        t0 = time.perf_counter()
        obj.evaluate(theta, True)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="sleepstudy,penicillin,pastes,maximal,insteval")
    ap.add_argument("--out", default=str(BENCH_DIR / "backend_results.md"))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            formula, data = case_data(name, Path(tmp))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = hierlm.Model(formula, data)
                res = model.fit("reml")
            obj = model.objective
            vm = _median_call(obj.with_backend("vm"), res.theta)
            nb = _median_call(obj.with_backend("numba"), res.theta)
            row = (f"| {name} | {work_of(obj.gram):.3g} | {choose_backend(obj.gram)} | "
                   f"{res.n_evals} | {vm * 1e3:.3f} | {nb * 1e3:.3f} | "
                   f"{res.n_evals * (vm - nb):.3f} |")
            print(row, flush=True)
            rows.append(row)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    text = "\n".join([
        "# Profiled objective: Python VM against Numba", "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M}+00:00 on {platform.node()} "
        f"({os.cpu_count()} CPUs, load {load} at the end), Python {platform.python_version()}; "
        f"`python -m benchmarks.backend_bench --cases {args.cases}`. "
        "Median wall time of one evaluation at the "
        f"REML optimum, after a warm-up call. `auto` links with Numba above {NUMBA_WORK:.3g} "
        "multiply-adds per evaluation; below, it starts on the VM and moves the structure "
        f"to Numba after {VM_BUDGET_S:g} s of VM evaluation in the process.", "",
        "| case | work | auto starts on | REML evaluations | VM (ms) | Numba (ms) | "
        "evaluations x difference (s) |",
        "|---|---|---|---|---|---|---|", *rows, ""])
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
