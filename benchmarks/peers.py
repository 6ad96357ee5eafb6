"""In-process fits of the lme4 reference cases: hierlm against lme-python and mixedlm.

    nice python -m benchmarks.peers                      # all but InstEval
    nice python -m benchmarks.peers --insteval           # with the four InstEval fits
    nice python -m benchmarks.peers --programs hierlm --repeats 3

The cases are the fits of ``tests/data/reference`` (``lme4_reference.json``,
``lme4_inference.json``, ``lme4_weights_offset.json``), each a formula, a data set and
REML or ML.  For each case and program, in one process: one warm-up fit, then
``--repeats`` timed fits from the formula and data frame (the median is reported), and
the fitted criterion (REML criterion or deviance) against lme4's.  A program that
cannot express a case (lme-python has no offset) or raises is marked ``n/a`` and left
out of its median.  The table, the medians over the cases and the ratios to hierlm go to
``benchmarks/peers_results.md`` (``--out``), for wall time and for the process's CPU
time over the same fits (which other work on a shared machine inflates less).

hierlm's first fits in a process evaluate in NumPy and drive SciPy's L-BFGS-B; once the
process has spent 0.05 s so, a background thread loads the structures' compiled
evaluation and descent loop (``hierlm.estimate.psi_call``), and fits after that run
compiled.  The results say for how many cases it was loaded by the end of their fits;
``--passes 2`` times a second pass over the cases in the same process (a process that
has been fitting: a notebook session, a simulation).

The peers install from PyPI: ``pip install lme-python mixedlm`` (imported as
``lme_python``, a Rust extension, and ``mixedlm``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import hierlm

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference"
GROUPING = {"sleepstudy": ["Subject"], "penicillin": ["plate", "sample"],
            "pastes": ["batch", "cask", "sample"], "dyestuff": ["Batch"],
            "dyestuff2": ["Batch"], "alfalfa": ["Variety", "Date", "Block"],
            "chickweight": ["Chick", "Diet"],
            "insteval": ["s", "d", "dept", "service", "studage", "lectage"]}


def load(name: str) -> pd.DataFrame:
    """A reference data set with its grouping columns as strings."""
    path = REFERENCE / "data" / f"{name}.csv"
    cols = GROUPING.get(name, [])
    frame = pd.read_csv(path, dtype={c: str for c in cols})
    labels = pd.read_csv(path, dtype=str, keep_default_na=False)
    for c in cols:
        if c in frame.columns:
            frame[c] = labels[c]
    return frame


def extras(key: str, data: pd.DataFrame) -> dict[str, np.ndarray]:
    """Prior weights / offset of the weighted-and-offset cases (as their R script)."""
    if key == "sleepstudy_weighted":
        return {"weights": 1.0 + data["Days"].to_numpy() % 3}
    if key == "sleepstudy_offset":
        return {"offset": 2.0 * data["Days"].to_numpy(dtype=float)}
    if key == "penicillin_weighted":
        return {"weights": np.resize([0.5, 1.0, 2.0], len(data))}
    return {}


def cases(insteval: bool) -> list[dict[str, Any]]:
    out = []
    for fname in ("lme4_reference.json", "lme4_inference.json", "lme4_weights_offset.json"):
        for key, c in json.loads((REFERENCE / fname).read_text()).items():
            if not isinstance(c, dict) or "formula" not in c:
                continue
            if c["data"] == "insteval" and not insteval:
                continue
            crit = c.get("deviance_or_reml", c.get("reml_criterion"))
            out.append({"key": f"{fname.split('_', 1)[1][:-5]}/{key}", "name": key,
                        "data": c["data"], "formula": c["formula"],
                        "reml": c.get("method", "REML") == "REML", "lme4": crit})
    return out


def fit_hierlm(case: dict[str, Any], data: pd.DataFrame, ex: dict[str, Any]) -> float:
    res = hierlm.fit(case["formula"], data, method="reml" if case["reml"] else "ml", **ex)
    return float(res.objective)


def uncorrelated(formula: str) -> str:
    """``(1 + x || g)`` written as ``(1 | g) + (0 + x | g)`` (the same model).

    Examples
    --------
    >>> uncorrelated("y ~ 1 + x + (1 + x || g)")
    'y ~ 1 + x + (1 | g) + (0 + x | g)'
    """
    def expand(m: re.Match[str]) -> str:
        terms = [t.strip() for t in m.group(1).split("+")]
        g = m.group(2).strip()
        return " + ".join(f"({t} | {g})" if t == "1" else f"(0 + {t} | {g})" for t in terms)

    return re.sub(r"\(([^()|]*)\|\|([^()]*)\)", expand, formula)


def fit_lme_python(case: dict[str, Any], data: pd.DataFrame, ex: dict[str, Any]) -> float:
    import lme_python as lp  # type: ignore[import-not-found]

    if "offset" in ex:
        raise NotImplementedError("lme-python's lmer takes no offset")
    formula = uncorrelated(case["formula"])  # lme-python does not parse "||"
    if "weights" in ex:
        fit = lp.lmer_weighted(formula, data, case["reml"], ex["weights"])
    else:
        fit = lp.lmer(formula, data, reml=case["reml"])
    return float(fit.reml_criterion if case["reml"] else fit.deviance)


def fit_mixedlm(case: dict[str, Any], data: pd.DataFrame, ex: dict[str, Any]) -> float:
    import mixedlm  # type: ignore[import-not-found]

    fit = mixedlm.lmer(case["formula"], data, REML=case["reml"], **ex)
    crit = fit.REMLcrit if case["reml"] else fit.deviance
    return float(crit() if callable(crit) else crit)


PROGRAMS: dict[str, Callable[[dict[str, Any], pd.DataFrame, dict[str, Any]], float]] = {
    "hierlm": fit_hierlm, "lme_python": fit_lme_python, "mixedlm": fit_mixedlm}


def descent_compiled(case: dict[str, Any]) -> bool:
    """Whether a compiled descent loop was loaded for the case: the loop around the
    hand-written kernel (every unstructured model), or the one of the case's structure."""
    from hierlm.estimate import descent_loop, kernel_loop

    if kernel_loop.loop() is not None:
        return True
    m = hierlm.Model(case["formula"], load(case["data"]))
    return descent_loop.loop_for(m.objective) is not None


def time_case(fn: Callable, case: dict[str, Any], repeats: int) -> dict[str, Any]:
    data = load(case["data"])
    ex = extras(case["name"], data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            crit = fn(case, data, ex)  # warm-up
            times, cpu = [], []
            for _ in range(repeats if case["data"] != "insteval" else 1):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(case, data, ex)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    except Exception as exc:  # a peer's failure is a result, not a crash
        return {"s": None, "cpu": None, "crit": None,
                "error": f"{type(exc).__name__}: {exc}"[:80]}
    return {"s": statistics.median(times), "cpu": statistics.median(cpu), "crit": crit,
            "error": None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", default="hierlm,lme_python,mixedlm")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--insteval", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "peers_results.md"))
    ap.add_argument("--passes", type=int, default=1,
                    help="run the whole protocol this many times in the one process and "
                         "report the last pass (2: a process that has been fitting)")
    args = ap.parse_args(argv)
    progs = args.programs.split(",")
    todo = cases(args.insteval)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    compiled: dict[str, bool] = {}
    for _ in range(max(args.passes, 1)):
        for case in todo:
            results[case["key"]] = {p: time_case(PROGRAMS[p], case, args.repeats)
                                    for p in progs}
            compiled[case["key"]] = descent_compiled(case)
        row = results[case["key"]]
        print(case["key"], {p: (None if r["s"] is None else round(r["s"] * 1e3, 2))
                            for p, r in row.items()}, flush=True)
    lines = ["# In-process fits: hierlm, lme-python and mixedlm on the lme4 reference fits", ""]
    load_avg = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    versions = []
    for mod in ("lme_python", "mixedlm"):
        try:
            from importlib.metadata import version

            versions.append(f"{mod} {version(mod.replace('_', '-'))}")
        except Exception:
            versions.append(f"{mod} not installed")
    lines.append(f"Run {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')} on "
                 f"{platform.node()} ({os.cpu_count()} CPUs, load {load_avg} at the end), "
                 f"Python {platform.python_version()}, hierlm {hierlm.__version__}, "
                 f"{', '.join(versions)}; `python -m benchmarks.peers "
                 f"{' '.join(sys.argv[1:] if argv is None else argv)}`"
                 + (f" (the last of {args.passes} passes over the cases in one process)"
                    if args.passes > 1 else "") + ".  Median of "
                 f"{args.repeats} fits after a warm-up fit, in ms; `crit - lme4`: the "
                 "fitted REML criterion or deviance minus lme4's (negative: a lower optimum).")
    lines += ["", "| case | " + " | ".join(f"{p} (ms) | {p} crit - lme4" for p in progs) + " |",
              "|---|" + "---|---|" * len(progs)]
    for case in todo:
        cells = []
        for p in progs:
            r = results[case["key"]][p]
            if r["s"] is None:
                cells += ["n/a", (r["error"] or "").replace("|", "/")]
            else:
                diff = "—" if case["lme4"] is None else f"{r['crit'] - case['lme4']:.2g}"
                cells += [f"{r['s'] * 1e3:.2f}", diff]
        lines.append(f"| {case['key']} ({'REML' if case['reml'] else 'ML'}) | "
                     + " | ".join(cells) + " |")
    n_compiled = sum(compiled[c["key"]] for c in todo)
    lines += ["", f"A compiled descent loop of hierlm (hierlm.estimate.kernel_loop, or "
              f"hierlm.estimate.descent_loop's loop of the case's structure) was loaded "
              f"in this process by the end of the fits of {n_compiled} of the {len(todo)} "
              "cases; before it is, fits run SciPy's L-BFGS-B over NumPy.",
              "", "Medians over the cases; CPU: the process's CPU time over the same fits "
              "(less sensitive than wall time to other work on the machine).", "",
              "| program | fits timed | median (ms) | median ratio to hierlm (same cases) | "
              "median CPU (ms) | median CPU ratio to hierlm |", "|---|---|---|---|---|---|"]
    for p in progs:
        ok = [k for k in results if results[k][p]["s"] is not None]
        both = [k for k in ok if results[k].get("hierlm", {}).get("s") is not None]
        cells = []
        for clock in ("s", "cpu"):
            med = statistics.median(results[k][p][clock] for k in ok) if ok else float("nan")
            ratio = (statistics.median(results[k][p][clock] / results[k]["hierlm"][clock]
                                       for k in both)
                     if both and "hierlm" in progs else float("nan"))
            cells += [f"{med * 1e3:.2f}", f"{ratio:.2f}"]
        lines.append(f"| {p} | {len(ok)} | " + " | ".join(cells) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines[-len(progs) - 2:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
