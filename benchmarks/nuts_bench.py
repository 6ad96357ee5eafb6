"""NUTS benchmark row: hierlm's marginal-likelihood NUTS against bambi's latent model.

Usage (from the repository root)::

    python -m benchmarks.nuts_bench                   # sleepstudy (+ bambi if importable)
    python -m benchmarks.nuts_bench --insteval        # also InstEval, 4 chains x 500 draws
    python -m benchmarks.nuts_bench --sampler pymc --out /tmp/nuts_results.md
    python -m benchmarks.nuts_bench --bambi-path /tmp/bambi_site   # bambi kept out of the venv
    python -m benchmarks.nuts_bench gradient          # us per log-density gradient
    python -m benchmarks.nuts_bench gradient --insteval

Every measurement runs in a fresh Python process (``python -m benchmarks.nuts_bench
worker <json>``) and reports the process's wall time, the fit's wall time and the
smallest bulk effective sample size over the fixed effects, sigma and the
random-effect SDs (and, for hierlm, the correlations).  sleepstudy runs twice for
hierlm: with an empty compile cache (fresh ``PYTENSOR_FLAGS=base_compiledir=...`` and
``NUMBA_CACHE_DIR``) and with a warm one (after a warm-up process).  bambi fits
``Reaction ~ Days + (Days | Subject)`` with latent random effects; it is optional
(``pip install bambi`` for the benchmark only).  Results go to
``benchmarks/nuts_results.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
INSTEVAL = Path(os.environ.get("HIERLM_REFERENCE",
                               BENCH_DIR.parent / "tests" / "data" / "reference")
                ) / "data" / "insteval.csv"
SLEEP = "Reaction ~ 1 + Days + (1 + Days | Subject)"
INSTEVAL_FORMULA = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)"


def _hierlm_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import warnings

    # The sampler's libraries are imported before the clock starts, as bambi's worker
    # imports bambi (PyMC, ArviZ) before its clock; the process column counts them.
    import arviz  # noqa: F401
    import pandas as pd

    import hierlm

    if spec["sampler"] in ("nutpie", "auto") and importlib.util.find_spec("nutpie"):
        import nutpie  # noqa: F401
    else:
        import pymc  # noqa: F401

    if spec["data"] == "sleepstudy":
        df = hierlm.load_sleepstudy()
    else:
        df = pd.read_csv(INSTEVAL, dtype={c: str for c in ("s", "d", "dept", "service")})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit(spec["formula"], df, method="nuts", progressbar=False,
                         random_seed=spec.get("seed", 1), sampler=spec["sampler"],
                         draws=spec["draws"], tune=spec["tune"], chains=spec["chains"],
                         ranef_draws=spec.get("ranef_draws", True))
    fit = time.perf_counter() - t0
    diag = res.nuts.diagnostics
    no_corr = diag[~diag.index.str.startswith("corr_")]
    refit: dict[str, Any] = {}
    if spec.get("refit"):  # the same design again in this process: no compiling
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            again = hierlm.Model(spec["formula"], df).fit(
                "nuts", progressbar=False, random_seed=spec.get("seed", 1) + 1,
                sampler=spec["sampler"], draws=spec["draws"], tune=spec["tune"],
                chains=spec["chains"])
        refit = {"refit_s": time.perf_counter() - t1,
                 "refit_sampling_s": again.nuts.sampling_time,
                 "refit_min_ess": float(again.nuts.diagnostics["ess_bulk"].min()),
                 "refit_divergences": again.nuts.divergences,
                 "refit_max_rhat": float(again.nuts.diagnostics["r_hat"].max())}
    return {**refit, "fit_s": fit, "sampling_s": res.nuts.sampling_time,
            "min_ess": float(diag["ess_bulk"].min()),
            "min_ess_no_corr": float(no_corr["ess_bulk"].min()),
            "max_rhat": float(diag["r_hat"].max()), "divergences": res.nuts.divergences,
            "n_evals": res.n_evals,
            "sampler": res.nuts.sampler,
            "fixef": res.fixef.round(3).to_dict()}


def _bambi_worker(spec: dict[str, Any]) -> dict[str, Any]:
    import arviz as az
    import bambi as bmb
    import pandas as pd

    # Read the data without importing hierlm: bambi may bring its own formulae.
    df = pd.read_csv(BENCH_DIR.parent / "hierlm" / "datasets" / "sleepstudy.csv")
    t0 = time.perf_counter()
    model = bmb.Model("Reaction ~ Days + (Days | Subject)", df)
    idata = model.fit(draws=spec["draws"], tune=spec["tune"], chains=spec["chains"],
                      random_seed=spec.get("seed", 1), progressbar=False)
    fit = time.perf_counter() - t0
    post = idata["posterior"] if hasattr(idata, "children") else idata.posterior
    names = [v for v in post.data_vars
             if v in ("Intercept", "Days", "sigma") or str(v).endswith("_sigma")]
    diag = az.summary(idata, var_names=names)
    div = int(idata["sample_stats"]["diverging"].values.sum())
    return {"fit_s": fit, "min_ess": float(diag["ess_bulk"].astype(float).min()),
            "max_rhat": float(diag["r_hat"].astype(float).max()), "divergences": div,
            "params": names}


def _worker(spec: dict[str, Any]) -> None:
    result = _bambi_worker(spec) if spec["program"] == "bambi" else _hierlm_worker(spec)
    print("RESULT " + json.dumps(result), flush=True)


def _run(spec: dict[str, Any], env: dict[str, str] | None = None,
         timeout: float = 7200) -> dict[str, Any]:
    """Run one measurement in a fresh process; add its wall time."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.nuts_bench", "worker",
                               json.dumps(spec)], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, **(env or {})},
                              cwd=BENCH_DIR.parent)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "process_s": time.perf_counter() - t0}
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return {"status": "ok", "process_s": wall, **json.loads(line[7:])}
    return {"status": "error", "process_s": wall, "error": proc.stderr.strip()[-2000:]}


def _row(name: str, r: dict[str, Any], chains: int, draws: int,
         bambi_rate: float | None = None) -> str:
    if r.get("status") != "ok":
        return (f"| {name} | {chains} x {draws} | {r.get('status')} | | | | | | | "
                f"{r.get('error', '')[-200:].replace('|', '/').replace(chr(10), ' ')} |")
    ess = r["min_ess"]
    ratio = f"{ess / r['fit_s'] / bambi_rate:.1f}x" if bambi_rate else "–"
    sampling = f"{r['sampling_s']:.1f}" if "sampling_s" in r else "–"
    note = f"{r.get('sampler', '')}; r_hat max {r['max_rhat']:.3f}"
    if r.get("n_evals"):
        note += f"; {r['n_evals']} gradient evaluations"
    if "min_ess_no_corr" in r:
        note += f"; min ESS without corr {r['min_ess_no_corr']:.0f}"
    proc = "–" if math.isnan(r["process_s"]) else f"{r['process_s']:.1f}"
    return (f"| {name} | {chains} x {draws} | {proc} | {r['fit_s']:.1f} | "
            f"{sampling} | {ess:.0f} | {ess / r['fit_s']:.1f} | "
            f"{ratio} | {r['divergences']} | {note} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sampler", default="auto",
                    help="auto, pymc, nutpie, or a comma-separated list (one pair of rows each)")
    ap.add_argument("--insteval", action="store_true", help="also run InstEval (long)")
    ap.add_argument("--no-bambi", action="store_true")
    ap.add_argument("--bambi-path", default="",
                    help="extra sys.path entry for bambi (e.g. a pip --target folder)")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "nuts_results.md")
    args = ap.parse_args(argv)
    base = {"program": "hierlm", "data": "sleepstudy", "formula": SLEEP, "draws": 1000,
            "tune": 1000, "chains": 4, "sampler": "auto"}
    rows: list[tuple[str, dict[str, Any], int, int]] = []
    bambi_rate = None
    for sampler in args.sampler.split(","):
        spec = {**base, "sampler": sampler}
        with tempfile.TemporaryDirectory() as cold:
            env = {"PYTENSOR_FLAGS": f"base_compiledir={cold}/pytensor",
                   "NUMBA_CACHE_DIR": f"{cold}/numba"}
            r = _run(spec, env)
            print(f"sleepstudy ({sampler}), empty cache:", r, flush=True)
            rows.append(("hierlm sleepstudy, empty compile cache", r, 4, 1000))
        _run(spec)  # warm-up
        r = _run({**spec, "refit": True})
        print(f"sleepstudy ({sampler}), warm cache:", r, flush=True)
        rows.append(("hierlm sleepstudy, warm compile cache", r, 4, 1000))
        if r.get("status") == "ok":
            again = {**r, "fit_s": r["refit_s"], "sampling_s": r["refit_sampling_s"],
                     "min_ess": r["refit_min_ess"], "divergences": r["refit_divergences"],
                     "max_rhat": r["refit_max_rhat"],
                     "process_s": float("nan")}
            again.pop("n_evals", None)
            again.pop("min_ess_no_corr", None)
            rows.append(("hierlm sleepstudy, second fit in the same process (new seed)",
                         again, 4, 1000))
    if not args.no_bambi:
        sys.path[:0] = [args.bambi_path] if args.bambi_path else []
        if importlib.util.find_spec("bambi") is None:
            rows.append(("bambi sleepstudy (latent random effects)",
                         {"status": "not installed"}, 4, 1000))
        else:
            path = os.pathsep.join(p for p in (args.bambi_path, os.environ.get("PYTHONPATH"))
                                   if p)
            r = _run({**base, "program": "bambi"}, {"PYTHONPATH": path} if path else None)
            print("bambi:", r, flush=True)
            rows.append(("bambi sleepstudy (latent random effects)", r, 4, 1000))
            if r.get("status") == "ok":
                bambi_rate = r["min_ess"] / r["fit_s"]
    if args.insteval:
        spec = {**base, "data": "insteval", "formula": INSTEVAL_FORMULA, "draws": 500,
                "tune": 500, "ranef_draws": 200, "sampler": args.sampler.split(",")[0]}
        r = _run(spec, timeout=4 * 3600)
        print("insteval:", r, flush=True)
        rows.append(("hierlm InstEval (ranef_draws=200)", r, 4, 500))
    header = ["# NUTS benchmark", "",
              f"Run {dt.datetime.now().isoformat(timespec='minutes')} on {platform.node()} "
              f"({os.cpu_count()} CPUs), Python {platform.python_version()}; "
              f"`python -m benchmarks.nuts_bench {' '.join(argv or sys.argv[1:])}`.", "",
              "Times in seconds. *process*: fresh Python process, imports included; *fit*: "
              "the fit call (REML start, compile, sampling, random-effect draws); "
              "*min ESS*: smallest bulk ESS over fixed effects, sigma, random-effect SDs "
              "(hierlm also correlations); ESS/s = min ESS / fit; *vs bambi*: ESS/s over "
              "bambi's.  Each worker imports the sampler's libraries (hierlm: ArviZ and "
              "nutpie or PyMC; bambi: bambi, which imports PyMC and ArviZ) before its fit "
              "clock starts; *process* counts them.", "",
              "| case | chains x draws | process | fit | sampling | min ESS | ESS/s "
              "| vs bambi | divergences | notes |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    lines = [_row(*row, bambi_rate=bambi_rate) for row in rows]
    args.out.write_text("\n".join(header + lines) + "\n")
    print(f"wrote {args.out}")
    return 0


def gradient_time(insteval: bool = False, calls: int = 20_000) -> float:
    """Microseconds per call of the log density and its gradient through nutpie's C
    entry point (the function the sampler's threads call), on sleepstudy's data or
    InstEval's."""
    import ctypes

    import numpy as np
    import pandas as pd
    from threadpoolctl import threadpool_limits

    import hierlm
    from hierlm.estimate.nuts_compiled import call_args, data_values, density_graphs
    from hierlm.estimate.priors import resolve_priors
    from hierlm.heap import large_temporaries_reused

    if insteval:
        df = pd.read_csv(INSTEVAL, dtype={c: str for c in ("s", "d", "dept", "service")})
        objective = hierlm.Model(INSTEVAL_FORMULA, df).objective
    else:
        objective = hierlm.Model(SLEEP, hierlm.load_sleepstudy()).objective
    pr = resolve_priors(objective.design, None)
    graphs = density_graphs(objective, pr)
    args = call_args(graphs.logp, data_values(objective, pr), 1)
    ud = graphs.user_data(args)
    x, grad, logp = np.full(graphs.ndim, 0.1), np.zeros(graphs.ndim), np.zeros(1)
    ptr = ctypes.POINTER(ctypes.c_double)
    c_args = (graphs.ndim, x.ctypes.data_as(ptr), grad.ctypes.data_as(ptr),
              logp.ctypes.data_as(ptr), ud.ctypes.data_as(ctypes.c_void_p))
    fn = graphs.c_functions[0].ctypes
    if fn(*c_args) != 0:
        raise RuntimeError("the log density failed at the timing point")
    with (threadpool_limits(limits=1, user_api="blas"),  # one core, as in a fit
          large_temporaries_reused(objective.gram.A_RR.shape[0])):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*c_args)
        return (time.perf_counter() - t0) / calls * 1e6


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "worker":
        _worker(json.loads(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "gradient":
        big = "--insteval" in sys.argv
        us = gradient_time(insteval=big, calls=200 if big else 20_000)
        print(f"{'InstEval' if big else 'sleepstudy'} log density + gradient: "
              f"{us:.1f} us per call")
    else:
        sys.exit(main())
