"""Cost of one criterion evaluation of a structured term against ``us`` of the same size.

``python -m benchmarks.structured_eval [--subjects N] [--times P] [--out DIR]
[--python-forms]`` simulates
one longitudinal data set (fixed seed; ``N`` subjects, ``P`` time points, two
replicates per cell) and, for each structure of :mod:`hierlm.covariance`, fits
``y ~ time + <structure>(0 + time | subject)`` by REML, then times at the optimum,
with the objective on its Numba link (a fit this size runs on PyTensor's VM until
the process has spent ``hierlm.objective.profiled.VM_BUDGET_S`` seconds there; the
benchmark evaluates until then, the state of a process that has fitted for a while):

* ``map``: ``psi -> (theta, d theta / d psi)``, the closed forms the optimizer calls
  (:meth:`DesignCovariance.theta_jacobian`), at alternating points so that the
  one-point cache never answers;
* ``general``: the same by the general path (LAPACK factor, Murray's formula, complex
  step; what every evaluation paid before the closed forms);
* ``map py``: the same by the structures' NumPy/Python closed forms, what the optimizer
  calls until the Numba kernels are loaded (:mod:`hierlm.covariance.compiled`; ``map``
  is timed with them loaded, the state of a process that has fitted for a while);
* ``separate``: one evaluation as separate calls from Python (what the optimizer ran
  before the one compiled call, and still runs off the Numba link): the map, the
  compiled criterion and its theta-gradient, and ``J' grad`` by NumPy;
* ``one call`` (the first measure): one optimizer evaluation reduced to its
  arithmetic: the one compiled call of :mod:`hierlm.estimate.psi_call` (map,
  criterion, ``J' grad`` and the finiteness tests); for ``us`` the same call, its
  map the identity;
* ``wrapped`` (the second measure, like with like): the very function each optimizer
  hands its L-BFGS-B driver, captured from :func:`hierlm.estimate.optimize.optimize_theta`
  (``us``) and :func:`hierlm.estimate.optimize_structured.optimize_psi` started at the
  optimum: both run on the shared theta optimizer
  (:mod:`hierlm.estimate.theta_optimizer`), whose search function scales the
  parameters and the gradient and keeps the best point, and both evaluate by the one
  compiled call; inside it, the trace and the checks; for ``us`` also the fit's
  search units (:mod:`hierlm.estimate.checked_descent`).  It does not include the
  driver itself (:func:`~hierlm.estimate.lbfgsb.run_lbfgsb`, the same for both).

Each time is the best of ``--repeat`` short runs of ``--number`` calls on the CPU
clock of the calling thread (``time.thread_time``: with one BLAS thread, as in a fit,
all the work runs on it, and time spent waiting for a core of a shared machine is not
counted); the runs of all structures and calls are
interleaved, so that a busy spell of a shared machine slows them alike and the best
run of each is the least disturbed.  The load average is recorded before and after.  Writes
``structured_eval_results.md`` (``structured_eval_python_results.md`` with
``--python-forms``).
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
import hierlm.estimate.checked_descent as checked_descent
import hierlm.estimate.theta_optimizer as theta_optimizer
from hierlm.covariance import compiled
from hierlm.covariance.design import DesignCovariance
from hierlm.estimate.optimize import optimize_theta
from hierlm.estimate.optimize_structured import optimize_psi
from hierlm.estimate.psi_call import PsiCall
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


class _Captured(Exception):
    """Raised by the stand-in driver once it has the optimizer's function."""


def optimizer_function(objective: Any, structured: bool, start: np.ndarray
                       ) -> tuple[Any, np.ndarray]:
    """The function (value and gradient) that the model's optimizer hands its L-BFGS-B
    driver, and ``start`` in that function's parameters: the optimizer is started at
    ``start`` (theta for ``us``, psi for a structure) and stopped at its first call of
    the driver."""
    got: dict[str, Any] = {}

    def grab(fun: Any, x0: Any, *args: Any, **kwargs: Any) -> Any:
        got.update(fun=fun, x0=np.array(x0, dtype=float))
        raise _Captured

    sites = [(theta_optimizer, "run_lbfgsb"), (checked_descent, "run_lbfgsb")]
    saved = [(m, n, getattr(m, n)) for m, n in sites]
    try:
        for m, n, _ in saved:
            setattr(m, n, grab)
        try:
            (optimize_psi if structured else optimize_theta)(objective, True, start=start)
        except _Captured:
            pass
    finally:
        for m, n, fn in saved:
            setattr(m, n, fn)
    if "fun" not in got:
        raise RuntimeError("the optimizer called no known L-BFGS-B driver")
    return got["fun"], got["x0"]


def prepare(df: pd.DataFrame, structure: str) -> dict[str, Any]:
    """Fit the model by REML; return the calls to time, at the optimum."""
    name, _, opt = structure.partition(", ")
    formula = f"y ~ time + {name}(0 + time | subject{', ' + opt if opt else ''})"
    model = hierlm.Model(formula, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit()
    obj = model.objective
    theta = res.theta
    # timed on the Numba link: a fit this size runs on PyTensor's VM until the process
    # has spent VM_BUDGET_S there (shared by the models of one structure), then Numba's
    while getattr(obj.fn, "link", "numba") != "numba":
        obj.evaluate(theta, True)
    cov = DesignCovariance.of(model.design)
    psi = cov.psi_from_theta(res.theta)
    points = [psi, psi + 1e-7]   # alternate: the one-point cache never answers
    k = iter(range(10**12))

    def criterion() -> object:
        return obj.evaluate(theta, True)

    def mapped() -> object:
        return cov.theta_jacobian(points[next(k) % 2])

    def general() -> object:
        x = points[next(k) % 2]
        return [c.theta_jacobian_general(part) for c, part in zip(cov.terms, cov.split(x),
                                                                   strict=True)]

    def python() -> object:
        x = points[next(k) % 2]
        if len(cov.terms) == 1:  # as theta_jacobian: no split
            return cov.terms[0].theta_jacobian_python(x)
        return [c.theta_jacobian_python(part) for c, part in zip(cov.terms, cov.split(x),
                                                                  strict=True)]

    def separate() -> object:  # the optimizers' evaluation off the Numba link
        th, J = cov.theta_jacobian(points[next(k) % 2])
        f, g, _, _ = obj.evaluate(th, True)
        return f, J.T @ g

    one = PsiCall(obj, cov).ready(True)  # None with --python-forms (no kernels)
    x_one = [psi, psi + 1e-7] if cov.structured else [theta, theta + 1e-7]

    def one_call() -> object:
        assert one is not None
        return one(x_one[next(k) % 2])

    fun, x0 = optimizer_function(obj, cov.structured, psi if cov.structured else theta)
    xs = [x0, x0 + 1e-7]

    def wrapped() -> object:
        return fun(xs[next(k) % 2])

    calls = {"criterion": criterion, "wrapped": wrapped}
    if one is not None:
        calls["one"] = one_call
    if cov.structured:
        calls.update(map=mapped, python=python, general=general, separate=separate)
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
        for key in ("criterion", "map", "python", "general", "separate", "one", "wrapped"):
            row[key] = best.get((i, key), 0.0)
        if not row["separate"]:  # us: no map
            row["separate"] = row["criterion"]
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, default=100)
    ap.add_argument("--times", type=int, default=5)
    ap.add_argument("--number", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--python-forms", action="store_true",
                    help="leave the Numba kernels unloaded: every map by the Python forms "
                         "(the state of a process before the kernels' budget is spent)")
    args = ap.parse_args()
    df = simulate(args.subjects, args.times)
    load0 = os.getloadavg()
    if args.python_forms:
        compiled.BUDGET_S = compiled.BUDGET_LOADED_S = float("inf")
        kernels = []
    else:
        kernels = [kind for kind in compiled.KINDS if compiled.load(kind) is not None]
    with one_blas_thread():  # as in a fit
        cases = [prepare(df, s) for s in STRUCTURES]
        rows = measure(cases, args.number, args.repeat)
    load1 = os.getloadavg()
    us = next(r for r in rows if r["structure"] == "us")
    lines = [
        "# One criterion evaluation: structured terms against `us`",
        "",
        f"`python -m benchmarks.structured_eval --subjects {args.subjects} --times "
        f"{args.times}{' --python-forms' if args.python_forms else ''}`: "
        f"{args.subjects} subjects x {args.times} time points x 2 "
        f"replicates ({len(df)} rows), `y ~ time + <structure>(0 + time | subject)`, "
        "at the REML optimum, the objective on its Numba link; microseconds per call on "
        "the calling thread's CPU clock, "
        "the best of "
        f"{args.repeat} runs of {args.number} calls, the runs of all structures and calls "
        "interleaved, one BLAS thread.",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}"
        f", {os.cpu_count()} CPUs, load average {load0[0]:.2f} at start, {load1[0]:.2f} at "
        "end (the machine is shared: other processes run beside this one).",
        "",
        "`map`: psi -> (theta, d theta / d psi) by the structures' Numba kernels (loaded: "
        f"{', '.join(kernels) or 'none'}); `map py`: the same by their NumPy/Python closed "
        "forms (what runs before the kernels are loaded); `general`: the same by "
        "the general path (LAPACK factor, Murray's formula, complex step); `criterion`: "
        "the compiled criterion and its gradient alone, called from Python; `separate`: "
        "map + criterion + J'g as separate calls (the optimizers' evaluation off the "
        "Numba link; for `us` the criterion alone); `one call`: one optimizer evaluation "
        "reduced to its arithmetic, the one compiled call of `hierlm.estimate.psi_call` "
        "(map, criterion, J'g, finiteness tests; for `us` the same call, its map the "
        "identity); `wrapped`: the function each optimizer really hands its L-BFGS-B "
        "driver (both on the shared theta optimizer, its scaling and best point, and "
        "both evaluating by the one compiled call, with the trace and the checks; for "
        "`us` also the fit's search units; not the driver itself); `vs us`: each over "
        "`us`'s.",
        "",
        "| structure | psi | theta | map | map py | general | criterion | separate | "
        "one call | vs us | wrapped | vs us |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['structure']}` | {r['n_psi']} | {r['n_theta']} | {r['map']:.1f} | "
            f"{r['python']:.1f} | {r['general']:.1f} | {r['criterion']:.1f} | "
            f"{r['separate']:.1f} | {r['one'] or float('nan'):.1f} | "
            f"{float(r['one']) / float(us['one'] or 1.0) or float('nan'):.2f} | "
            f"{r['wrapped']:.1f} | "
            f"{float(r['wrapped']) / float(us['wrapped']):.2f} |")
    text = "\n".join(lines) + "\n"
    name = "structured_eval_python_results.md" if args.python_forms else \
        "structured_eval_results.md"
    (args.out / name).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
