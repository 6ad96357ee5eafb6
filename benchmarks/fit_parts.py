"""Where a small fit's time goes outside the optimizer, on the peer benchmark's cases.

    nice python -m benchmarks.fit_parts                  # the 24 cases, 30 repeats
    nice python -m benchmarks.fit_parts --repeats 60 --cases sleepstudy_slopes_reml
    nice python -m benchmarks.fit_parts --warm --repeats 40 --cases sleepstudy_slopes_reml

For each case of :mod:`benchmarks.peers` (its formula, data and REML or ML), in one
process, thread CPU time (``time.thread_time``, which other processes on a shared
machine inflate less than wall time), best of ``--repeats`` after a warm-up:

* ``design``: :func:`hierlm.design.matrices.build_design` alone;
* ``compile``: :func:`hierlm.objective.profiled.compile_objective` of that design;
* ``fit``: the whole :func:`hierlm.fit`;
* ``outside``: the whole fit less the optimizer's call (``optimize_theta`` or
  ``optimize_psi`` as :mod:`hierlm.estimate.frequentist` calls them): the design,
  the objective, the estimates at the optimum, the result and the context around them.

With ``--warm`` the cases are first fitted until the process counts as warm
(:func:`hierlm.objective.numpy_link.process_warm`) and its background loads have ended,
so that the fits run the compiled descent loop where Numba's cache has it (the last
column says whether it was loaded): the steady state of a process that has been fitting.
Medians over the cases close the table.  Run the old and new code in turn on the same
machine (``PYTHONPATH`` naming the other tree first) to compare them.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import hierlm
import hierlm.estimate.frequentist as frequentist
from benchmarks import peers
from hierlm.design.matrices import build_design
from hierlm.objective.profiled import compile_objective


def best(fn: Callable[[], Any], repeats: int) -> float:
    """Least thread CPU time (ms) of ``repeats`` calls after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        out.append(time.thread_time() - t0)
    return min(out) * 1e3


def outside_optimizer(fit: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """Best whole-fit time and best time outside the optimizer (ms) over ``repeats`` fits."""
    spent = [0.0]
    originals = {name: getattr(frequentist, name) for name in ("optimize_theta", "optimize_psi")}

    def timed(inner: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            t0 = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - t0
        return call

    for name, fn in originals.items():
        setattr(frequentist, name, timed(fn))
    try:
        fit()
        whole, outside = [], []
        for _ in range(repeats):
            spent[0] = 0.0
            t0 = time.thread_time()
            fit()
            total = time.thread_time() - t0
            whole.append(total)
            outside.append(total - spent[0])
    finally:
        for name, fn in originals.items():
            setattr(frequentist, name, fn)
    return min(whole) * 1e3, min(outside) * 1e3


def time_case(case: dict[str, Any], repeats: int) -> tuple[float, float, float, float]:
    """``design``, ``compile``, ``fit`` and ``outside`` (module docstring) of one case, ms."""
    data = peers.load(case["data"])
    ex = peers.extras(case["name"], data)
    method = "reml" if case["reml"] else "ml"
    design = build_design(case["formula"], data, **ex)
    t_design = best(lambda: build_design(case["formula"], data, **ex), repeats)
    t_compile = best(lambda: compile_objective(design), repeats)
    t_fit, t_out = outside_optimizer(
        lambda: hierlm.fit(case["formula"], data, method=method, **ex), repeats)
    return t_design, t_compile, t_fit, t_out


def warm_up(cases: list[dict[str, Any]], rounds: int = 500) -> None:
    """Fit ``cases`` until the process is warm, then wait for its background loads."""
    from hierlm.estimate import background
    from hierlm.objective import numpy_link

    frames = [(c, peers.load(c["data"])) for c in cases]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            for case, data in frames:
                hierlm.fit(case["formula"], data, method="reml" if case["reml"] else "ml",
                           **peers.extras(case["name"], data))
            if numpy_link.process_warm():
                break
        for case, data in frames:  # each structure asks for its load once warm
            hierlm.fit(case["formula"], data, method="reml" if case["reml"] else "ml",
                       **peers.extras(case["name"], data))
    background.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--warm", action="store_true",
                    help="time a warm process (module docstring)")
    args = ap.parse_args(argv)
    wanted = set(filter(None, args.cases.split(",")))
    todo = [c for c in peers.cases(False) if not wanted or c["name"] in wanted]
    if args.warm:
        warm_up(todo)
    rows = []
    print(f"hierlm {hierlm.__file__}")
    print(f"{'case':44s} {'design':>8s} {'compile':>8s} {'fit':>8s} {'outside':>8s}  (ms)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for case in todo:
            row = time_case(case, args.repeats)
            rows.append(row)
            print(f"{case['key']:44s} " + " ".join(f"{v:8.3f}" for v in row)
                  + (f"  loop {peers.descent_compiled(case)}" if args.warm else ""),
                  flush=True)
    if rows:
        med = [statistics.median(r[i] for r in rows) for i in range(4)]
        print(f"{'median':44s} " + " ".join(f"{v:8.3f}" for v in med))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
