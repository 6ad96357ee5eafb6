"""hierlm against nlme and glmmTMB on residual AR(1) fits: 2,000 subjects x 8 visits.

``python -m benchmarks.residual_bench [--repeats N] [--out DIR]`` simulates the data
(fixed seed; random intercept and slope, AR(1) errors with phi = 0.6), fits
``y ~ x + visit`` with ``(1 | subject)`` and with ``(visit | subject)`` and
``residual="ar1(visit | subject)"`` by REML, hierlm in this process (median of
``N`` fits after a warm-up fit, which loads the compiled objective) and nlme's
``lme(..., correlation = corAR1(form = ~ visit | subject))`` in an Rscript process
(median of ``N`` fits; ``benchmarks/residual_nlme.R``) and glmmTMB's ``glmmTMB(y ~ x +
visit + (1 | subject) + ar1(0 + factor(visit) | subject), dispformula = ~ 0, REML =
TRUE)`` (the same model: glmmTMB's ``ar1()`` is a random-effects term, here one per row
with the residual variance fixed near zero, so it is the residual AR(1);
``benchmarks/residual_glmmtmb.R``), and writes ``residual_results.md``: the times, the
ratios and the criteria.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

import hierlm

HERE = Path(__file__).resolve().parent
MODELS = {"intercept": "y ~ x + visit + (1 | subject)",
          "slope": "y ~ x + visit + (visit | subject)"}


def simulate(n_subjects: int = 2000, n_visits: int = 8, phi: float = 0.6,
             seed: int = 1) -> pd.DataFrame:
    """Random intercept and slope, AR(1) errors within each subject."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_subjects), n_visits)
    v = np.tile(np.arange(1, n_visits + 1), n_subjects)
    x = rng.normal(size=g.size)
    z = rng.normal(size=(n_subjects, n_visits))
    e = np.empty_like(z)
    e[:, 0] = z[:, 0]
    for j in range(1, n_visits):
        e[:, j] = phi * e[:, j - 1] + np.sqrt(1 - phi**2) * z[:, j]
    b0, b1 = rng.normal(size=n_subjects), 0.3 * rng.normal(size=n_subjects)
    y = 1 + 0.5 * x + 0.2 * v + b0[g] + b1[g] * v + e.ravel()
    return pd.DataFrame({"y": y, "x": x, "visit": v, "subject": g})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    data = simulate()
    csv = args.out / "data" / "residual_ar1.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    data.to_csv(csv, index=False)
    rows = []
    nlme: dict[str, dict] = {}
    try:
        out = subprocess.run(["nice", "Rscript", str(HERE / "residual_nlme.R"), str(csv),
                              str(args.repeats)], capture_output=True, text=True, check=True,
                             timeout=1800).stdout
        nlme = {r["model"]: r for r in map(json.loads, filter(None, out.splitlines()))}
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"nlme skipped: {exc}")
    tmb: dict[str, dict] = {}
    try:
        out = subprocess.run(["nice", "-n", "19", "Rscript", str(HERE / "residual_glmmtmb.R"),
                              str(csv), str(args.repeats)], capture_output=True, text=True,
                             check=True, timeout=3600).stdout
        tmb = {r["model"]: r for r in map(json.loads, filter(None, out.splitlines()))}
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"glmmTMB skipped: {exc}")
    for name, formula in MODELS.items():
        hierlm.fit(formula, data, residual="ar1(visit | subject)")  # warm-up
        times, res = [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            res = hierlm.fit(formula, data, residual="ar1(visit | subject)")
            times.append(time.perf_counter() - t0)
        assert res is not None
        h = statistics.median(times)
        r = nlme.get(name)
        n = statistics.median(r["seconds"]) if r else float("nan")
        t = tmb.get(name)
        g = statistics.median(t["seconds"]) if t else float("nan")
        shown = formula.replace("|", "\\|")
        rows.append(f"| `{shown}`, `ar1(visit \\| subject)` | {len(data):,} | {h:.2f} | "
                    f"{n:.2f} | {n / h:.1f}x | {g:.2f} | {g / h:.1f}x | "
                    f"{res.residual_parameters['rho']:.4f} | "
                    f"{r['phi'] if r else float('nan'):.4f} | "
                    f"{t['phi'] if t else float('nan'):.4f} | "
                    f"{res.objective - r['criterion'] if r else float('nan'):.2g} | "
                    f"{res.objective - t['criterion'] if t else float('nan'):.2g} |")
    load = os.getloadavg()
    header = (f"# Residual AR(1): hierlm against nlme\n\nRun "
              f"{datetime.now(UTC).isoformat(timespec='minutes')} on "
              f"{platform.node()} ({os.cpu_count()} CPUs, load {load[0]:.2f}, {load[1]:.2f}, "
              f"{load[2]:.2f} at the end), hierlm {hierlm.__version__}, nlme "
              f"{next(iter(nlme.values()))['nlme'] if nlme else '-'}, glmmTMB "
              f"{next(iter(tmb.values()))['glmmTMB'] if tmb else '-'}; "
              f"`python -m benchmarks.residual_bench --repeats {args.repeats}`.  2,000 "
              f"simulated subjects x 8 visits, REML; median seconds of {args.repeats} fits "
              f"(hierlm after a warm-up fit, in process; nlme and glmmTMB in Rscript, "
              f"niced).  glmmTMB fits `y ~ x + visit + (1 | subject) + ar1(0 + "
              f"factor(visit) | subject)` (`(visit | subject)` for the second row) with "
              f"`dispformula = ~ 0` and `REML = TRUE`: its `ar1()` random effects, one per "
              f"row, with the residual variance fixed near zero, are the residual AR(1).  "
              f"`crit diff`: hierlm's REML criterion minus the other's -2 logLik "
              f"(negative: hierlm's optimum is lower).\n\n")
    table = ("| model | rows | hierlm (s) | nlme (s) | nlme / hierlm | glmmTMB (s) "
             "| glmmTMB / hierlm | hierlm phi | nlme phi | glmmTMB phi | crit diff nlme "
             "| crit diff glmmTMB |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
             + "\n".join(rows) + "\n")
    (args.out / "residual_results.md").write_text(header + table)
    print(header + table)


if __name__ == "__main__":
    main()
