"""Inference benchmark: profile intervals and a 1,000-replicate parametric bootstrap of
sleepstudy ``Reaction ~ 1 + Days + (1 + Days | Subject)`` (REML), hierlm against lme4's
``confint(method = "profile")`` and ``bootMer`` in the same run, and against
lme-python's ``boot_lmer`` when it is importable.

Usage: ``.venv/bin/python -m benchmarks.inference_bench [--nsim 1000] [--out DIR]``.
Writes ``inference_results.md`` and ``.json`` to ``DIR`` (default ``benchmarks/``).
Each program is timed after a warm-up (hierlm: a 10-replicate bootstrap and one
profile, so the compiled graphs are loaded; R: its first fit), one after another;
hierlm's and lme-python's bootstraps at their default threads, then with one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import hierlm
from hierlm.inference.parallel import available_cores

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data" / "reference" / "data" / "sleepstudy.csv"
FORMULA = "Reaction ~ 1 + Days + (1 + Days | Subject)"


def run_hierlm(nsim: int) -> dict[str, Any]:
    import pandas as pd

    d = pd.read_csv(DATA, dtype={"Subject": str})
    res = hierlm.fit(FORMULA, d)
    res.confint(method="profile")
    res.bootstrap(10, seed=0, progressbar=False)
    t = time.perf_counter()
    ci = res.confint(method="profile")
    t_prof = time.perf_counter() - t
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n_jobs in (None, 1):  # all cores (the default), then one
            t = time.perf_counter()
            b = res.bootstrap(nsim, seed=1, progressbar=False, n_jobs=n_jobs)
            times[n_jobs] = time.perf_counter() - t
    return {"profile_s": t_prof, "bootstrap_s": times[None], "bootstrap_1thread_s": times[1],
            "n_jobs": available_cores(), "n_failed": b.n_failed,
            "ci": {"parameter": list(ci.index), "lower": ci["lower"].tolist(),
                   "upper": ci["upper"].tolist()}}


def run_lme4(nsim: int) -> dict[str, Any] | None:
    if shutil.which("Rscript") is None:
        return None
    out = subprocess.run(["Rscript", str(HERE / "inference_lme4.R"), str(DATA), str(nsim)],
                         capture_output=True, text=True, timeout=3600, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": (out.stderr or out.stdout)[-500:]}


def run_lme_python(nsim: int) -> dict[str, Any] | None:
    """lme-python's ``boot_lmer`` (package ``lme_python``), if importable (else None).

    Install it apart from hierlm's environment, e.g.
    ``pip install --target /tmp/lmepy lme-python`` and ``PYTHONPATH=/tmp/lmepy``.
    """
    try:
        import lme_python as lp  # type: ignore[import-not-found]
    except ImportError:
        return None
    import pandas as pd

    d = pd.read_csv(DATA, dtype={"Subject": str})
    fit = lp.lmer(FORMULA, d)
    lp.boot_lmer(FORMULA, d, fit, nsim=10, seed=0)
    t = time.perf_counter()
    b = lp.boot_lmer(FORMULA, d, fit, nsim=nsim, seed=1)
    wall = time.perf_counter() - t
    t = time.perf_counter()
    lp.boot_lmer(FORMULA, d, fit, nsim=nsim, seed=1, n_jobs=1)  # one thread, as hierlm
    return {"bootstrap_s": wall, "bootstrap_1thread_s": time.perf_counter() - t,
            "n_failed": int(round(nsim * (1 - float(b.prop_converged))))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nsim", type=int, default=1000)
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args()
    load0 = os.getloadavg()
    h = run_hierlm(args.nsim)
    r = run_lme4(args.nsim)
    lp = run_lme_python(args.nsim)
    load1 = os.getloadavg()
    lp1 = None if lp is None or "error" in lp else {"bootstrap_s": lp["bootstrap_1thread_s"],
                                                   "n_failed": lp["n_failed"]}
    h1 = {"bootstrap_s": h["bootstrap_1thread_s"], "n_failed": h["n_failed"]}
    rows = [(f"hierlm (default n_jobs = {h['n_jobs']} cores)", h), ("hierlm (n_jobs=1)", h1),
            ("lme4", r), ("lme-python (default threads)", lp), ("lme-python (n_jobs=1)", lp1)]
    lines = [f"# Inference benchmark: sleepstudy `{FORMULA}` (REML)", "",
             f"Load average {load0[0]:.2f} at start, {load1[0]:.2f} at end; "
             f"{args.nsim} bootstrap replicates.", "",
             "| program | profile confint (s) | bootstrap (s) | failed replicates |",
             "|---|---:|---:|---:|"]
    for name, v in rows:
        if v is None:
            lines.append(f"| {name} | not installed | not installed | |")
        elif "error" in v:
            lines.append(f"| {name} | error | error | |")
        else:
            prof = f"{v['profile_s']:.2f}" if "profile_s" in v else ""
            lines.append(f"| {name} | {prof} | {v['bootstrap_s']:.2f} | "
                         f"{v.get('n_failed', '')} |")
    if r is not None and "error" not in r:
        ratio_b = r["bootstrap_s"] / h["bootstrap_s"]
        ratio_b1 = r["bootstrap_s"] / h["bootstrap_1thread_s"]
        ratio_p = r["profile_s"] / h["profile_s"]
        lines += ["", f"bootstrap: hierlm is {ratio_b:.1f}x as fast as bootMer "
                      f"({ratio_b1:.1f}x with n_jobs=1; target 20x); profile: {ratio_p:.2f}x "
                      f"as fast as lme4's confint."]
    if lp is not None and "error" not in lp:
        lines.append(f"bootstrap against lme-python: {lp['bootstrap_s'] / h['bootstrap_s']:.2f}x "
                     f"as fast with both at their default threads, "
                     f"{lp['bootstrap_1thread_s'] / h['bootstrap_1thread_s']:.2f}x with one "
                     f"each (target: at least 1x).")
        diff = np.max(np.abs(np.array(h["ci"]["lower"] + h["ci"]["upper"])
                             / np.array(r["ci"]["lower"] + r["ci"]["upper"]) - 1))
        lines.append(f"Largest relative difference of the profile endpoints: {diff:.1e}.")
    out = Path(args.out)
    (out / "inference_results.md").write_text("\n".join(lines) + "\n")
    (out / "inference_results.json").write_text(json.dumps(
        {"hierlm": h, "lme4": r, "lme_python": lp, "load": [load0, load1]}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
