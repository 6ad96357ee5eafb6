"""Optimizer work on the benchmark cases: evaluations per phase and fit time.

    python -m benchmarks.optimizer_bench            # all but movielens
    python -m benchmarks.optimizer_bench --json out.json

Fits each case by REML once to warm the compiled graph, then times ``repeats`` fits
in the same process (median).  Used to compare optimizer versions on one machine
(run it at two commits and compare the JSON).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

import hierlm
from benchmarks.cases import CASES

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference" / "data"


def case_data(name: str, out: Path) -> tuple[str, pd.DataFrame]:
    case = next(c for c in CASES if c.name == name)
    csv = case.csv_path(out) if case.simulate is not None else DATA / case.csv_name
    frame = pd.read_csv(csv, dtype={c: str for c in case.str_columns})
    return case.formula, frame


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cases", default="sleepstudy,penicillin,pastes,maximal,insteval")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases.split(","):
            formula, data = case_data(name, Path(tmp))
            model = hierlm.Model(formula, data)
            for method in ("reml", "ml"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = model.fit(method)
                    times = []
                    for _ in range(args.repeats if name != "insteval" else 2):
                        t0 = time.perf_counter()
                        model.fit(method)
                        times.append(time.perf_counter() - t0)
                row = {"case": name, "method": method, "objective": res.objective,
                       "n_evals": res.n_evals, "phases": res.optimizer.get("phases"),
                       "converged": res.converged, "seconds": statistics.median(times)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
