"""Cost of one criterion evaluation of a structured term against ``us`` of the same size.

``python -m benchmarks.structured_eval [--subjects N] [--times P] [--out DIR]`` simulates
one longitudinal data set (fixed seed; ``N`` subjects, ``P`` time points, two
replicates per cell) and, for each structure of :mod:`hierlm.covariance`, fits
``y ~ time + <structure>(0 + time | subject)`` by REML, then times at the optimum:

* ``map``: ``psi -> (theta, d theta / d psi)``, the closed forms the optimizer calls
  (:meth:`DesignCovariance.theta_jacobian`), at alternating points so that the
  one-point cache never answers;
* ``general``: the same by the general path (LAPACK factor, Murray's formula, complex
  step; what every evaluation paid before the closed forms);
* ``evaluation``: one optimizer evaluation as :func:`hierlm.estimate.optimize_structured.
  optimize_psi` makes it: the map, the compiled criterion and its theta-gradient, and
  ``J' grad``; for ``us`` (fitted by the theta optimizer, no map) the criterion alone.

Each time is the best of ``--repeat`` short runs of ``--number`` calls on the CPU
clock of the calling thread (``time.thread_time``: with one BLAS thread, as in a fit,
all the work runs on it, and time spent waiting for a core of a shared machine is not
counted); the runs of all structures and calls are
interleaved, so that a busy spell of a shared machine slows them alike and the best
run of each is the least disturbed.  The load average is recorded before and after.  Writes
``structured_eval_results.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import timeit
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import hierlm
from hierlm.covariance.design import DesignCovariance
from hierlm.inference.blas import one_blas_thread

HERE = Path(__file__).resolve().parent
STRUCTURES = ["us", "diag", "diag, hom=True", "cs", "cs, hom=True", "ar1", "ar1, het=True",
              "toep", "toep, hom=True"]


def simulate(n_subjects: int, n_times: int, seed: int = 1) -> pd.DataFrame:
    """AR(1)-correlated subject effects (rho = 0.6, SD 1) per time, replicated cells."""
    rng = np.random.default_rng(seed)
    lag = np.abs(np.subtract.outer(np.arange(n_times), np.arange(n_times)))
    b = rng.multivariate_normal(np.zeros(n_times), 0.6**lag, size=n_subjects)
    rows = [(f"s{g:04d}", f"t{t}", 0.3 * t + b[g, t] + rng.normal())
            for g in range(n_subjects) for t in range(n_times) for _ in range(2)]
    return pd.DataFrame(rows, columns=["subject", "time", "y"])


def prepare(df: pd.DataFrame, structure: str) -> dict[str, Any]:
    """Fit the model by REML; return the calls to time, at the optimum."""
    name, _, opt = structure.partition(", ")
    formula = f"y ~ time + {name}(0 + time | subject{', ' + opt if opt else ''})"
    model = hierlm.Model(formula, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    obj = model.objective
    cov = DesignCovariance.of(model.design)
    psi = cov.psi_from_theta(res.theta)
    points = [psi, psi + 1e-7]   # alternate: the one-point cache never answers
    k = iter(range(10**12))
    theta = res.theta

    def criterion() -> object:
        return obj.evaluate(theta, True)

    def mapped() -> object:
        return cov.theta_jacobian(points[next(k) % 2])

    def general() -> object:
        x = points[next(k) % 2]
        return [c.theta_jacobian_general(part) for c, part in zip(cov.terms, cov.split(x),
                                                                   strict=True)]

    def evaluation() -> object:  # as optimize_psi's objective function
        th, J = cov.theta_jacobian(points[next(k) % 2])
        f, g, _, _ = obj.evaluate(th, True)
        return f, J.T @ g

    calls = {"criterion": criterion}
    if cov.structured:
        calls.update(map=mapped, general=general, evaluation=evaluation)
    return {"structure": structure, "n_psi": cov.n_psi, "n_theta": cov.n_theta,
            "calls": calls}


def measure(cases: list[dict[str, Any]], number: int, repeat: int) -> list[dict[str, Any]]:
    """Microseconds per call of every case's calls: the best of ``repeat`` runs of
    ``number`` calls on this thread's CPU clock.  The runs are interleaved (round by round,
    every case and call in turn), so that a busy spell of the machine slows all of
    them alike and some run of each escapes it."""
    best: dict[tuple[int, str], float] = {}
    for _ in range(repeat):
        for i, case in enumerate(cases):
            for key, fn in case["calls"].items():
                t = timeit.timeit(fn, number=number, timer=time.thread_time) / number * 1e6
                best[i, key] = min(best.get((i, key), np.inf), t)
    out = []
    for i, case in enumerate(cases):
        row = {k: v for k, v in case.items() if k != "calls"}
        for key in ("criterion", "map", "general", "evaluation"):
            row[key] = best.get((i, key), 0.0)
        if not row["evaluation"]:  # us: fitted by the theta optimizer, no map
            row["evaluation"] = row["criterion"]
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=100)
    ap.add_argument("--times", type=int, default=5)
    ap.add_argument("--number", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    df = simulate(args.subjects, args.times)
    load0 = os.getloadavg()
    with one_blas_thread():  # as in a fit
        cases = [prepare(df, s) for s in STRUCTURES]
        rows = measure(cases, args.number, args.repeat)
    load1 = os.getloadavg()
    us = next(r for r in rows if r["structure"] == "us")
    lines = [
        "# One criterion evaluation: structured terms against `us`",
        "",
        f"`python -m benchmarks.structured_eval --subjects {args.subjects} --times "
        f"{args.times}`: {args.subjects} subjects x {args.times} time points x 2 "
        f"replicates ({len(df)} rows), `y ~ time + <structure>(0 + time | subject)`, "
        "at the REML optimum; microseconds per call on the calling thread's CPU clock, "
        "the best of "
        f"{args.repeat} runs of {args.number} calls, the runs of all structures and calls "
        "interleaved, one BLAS thread.",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}"
        f", {os.cpu_count()} CPUs, load average {load0[0]:.2f} at start, {load1[0]:.2f} at "
        "end (the machine is shared: other processes run beside this one).",
        "",
        "`map`: psi -> (theta, d theta / d psi) by the closed forms; `general`: the same by "
        "the general path (LAPACK factor, Murray's formula, complex step; what each "
        "evaluation paid before); `criterion`: the compiled criterion and its gradient "
        "alone; `evaluation`: one optimizer evaluation (map + criterion + J'g; for `us`, "
        "fitted by the theta optimizer, the criterion alone); `vs us`: evaluation over "
        "`us`'s.",
        "",
        "| structure | psi | theta | map | general | criterion | evaluation | vs us |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['structure']}` | {r['n_psi']} | {r['n_theta']} | {r['map']:.1f} | "
            f"{r['general']:.1f} | {r['criterion']:.1f} | {r['evaluation']:.1f} | "
            f"{float(r['evaluation']) / float(us['evaluation']):.2f} |")
    text = "\n".join(lines) + "\n"
    (args.out / "structured_eval_results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
