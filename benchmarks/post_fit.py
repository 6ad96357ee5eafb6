"""Post-fit tables in a fresh process: summary, coef_table (both ddf), anova.

    nice python -m benchmarks.post_fit                       # the default grid
    nice python -m benchmarks.post_fit --q 50,1000 --n 10000 --p 20

Simulated data with ``n`` rows and ``p`` fixed-effect columns (an intercept, a
five-level factor and continuous covariates), and for each ``q`` in ``--q`` one model:
random intercepts of ``q`` groups (``(1 | g)``), and, where ``--slopes``, random
intercepts and slopes of ``q / 2`` groups (``(1 + x1 | g)``, ``q`` random effects);
where ``--two-terms``, crossed intercepts ``(1 | g) + (1 | h)`` of ``0.8 q`` and
``0.2 q`` groups and nested ones ``(1 | g) + (1 | g:h)`` of ``0.1 q`` groups with 9
subgroups each (``q`` random effects each).
Each model runs in its own new process (``import hierlm``, a REML fit, then each table
once, first call in the process, as a researcher does): the wall time of
``summary()``, ``coef_table()`` (Satterthwaite), ``coef_table(ddf="kenward-roger")``
and ``anova()``.  The table goes to ``benchmarks/post_fit_results.md`` (``--out``),
with the load average; the goal is 0.1 s for each table when ``n <= 10,000`` and
``p <= 20``.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("fit", "summary", "coef_table_satterthwaite", "coef_table_kenward_roger", "anova")

SCRIPT = r"""
import json, sys, time, warnings
import pandas as pd
import hierlm
warnings.simplefilter("ignore")
a = json.loads(sys.argv[1])
data = pd.read_csv(a["csv"], dtype={"g": str, "f": str})
out = {}
t = time.perf_counter(); res = hierlm.fit(a["formula"], data); out["fit"] = time.perf_counter() - t
t = time.perf_counter(); res.summary(); out["summary"] = time.perf_counter() - t
t = time.perf_counter(); res.coef_table(); out["coef_table_satterthwaite"] = time.perf_counter() - t
t = time.perf_counter(); res.coef_table(ddf="kenward-roger")
out["coef_table_kenward_roger"] = time.perf_counter() - t
t = time.perf_counter(); res.anova(); out["anova"] = time.perf_counter() - t
print(json.dumps(out))
"""


def simulate(n: int, p: int, groups: int, slopes: bool, seed: int,
             second: str = "") -> tuple[pd.DataFrame, str]:
    """Data and formula: intercept + 5-level factor ``f`` + ``p - 5`` covariates.

    ``second``: ``""`` (one term), ``"crossed"`` (``(1 | g) + (1 | h)``, ``groups / 4``
    levels of ``h``) or ``"nested"`` (``(1 | g) + (1 | g:h)``, 9 levels of ``h`` in each
    of ``groups`` levels of ``g``).
    """
    rng = np.random.default_rng(seed)
    k = p - 5
    X = rng.normal(size=(n, k))
    f = rng.integers(0, 5, n)
    g = rng.integers(0, groups, n)
    b0 = rng.normal(size=groups)
    b1 = 0.5 * rng.normal(size=groups) if slopes else np.zeros(groups)
    y = (X @ rng.normal(size=k) * 0.3 + 0.4 * f + b0[g] + b1[g] * X[:, 0]
         + rng.normal(size=n))
    h = None
    if second:
        lh = max(groups // 4, 2) if second == "crossed" else 9
        h = rng.integers(0, lh, n)
        bh = 0.7 * rng.normal(size=(lh,) if second == "crossed" else (groups, lh))
        y = y + (bh[h] if second == "crossed" else bh[g, h])
    frame = pd.DataFrame(X, columns=[f"x{i + 1}" for i in range(k)])
    frame["f"], frame["g"], frame["y"] = [f"f{v}" for v in f], [f"g{v}" for v in g], y
    fixed = " + ".join(["f", *frame.columns[:k]])
    re = "(1 + x1 | g)" if slopes else "(1 | g)"
    if h is not None:
        frame["h"] = [f"h{v}" for v in h]
        re += " + (1 | h)" if second == "crossed" else " + (1 | g:h)"
    return frame, f"y ~ {fixed} + {re}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--p", type=int, default=20)
    ap.add_argument("--q", default="20,200,1000,2000")
    ap.add_argument("--slopes", action="store_true", help="also (1 + x1 | g) models")
    ap.add_argument("--two-terms", action="store_true",
                    help="also crossed (1 | g) + (1 | h) and nested (1 | g) + (1 | g:h)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "post_fit_results.md"))
    args = ap.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # a warm install has its bytecode: without it (PYTHONDONTWRITEBYTECODE, a fresh
    # checkout) each process compiles the modules it imports, 50 ms of the first table
    compileall.compile_dir(ROOT / "hierlm", quiet=1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp_s:
        for q in (int(v) for v in args.q.split(",")):
            kinds = [("", False)] + ([("", True)] if args.slopes else [])
            kinds += [("crossed", False), ("nested", False)] if args.two_terms else []
            for second, slopes in kinds:
                groups = (q // 2 if slopes else q * 4 // 5 if second == "crossed"
                          else q // 10 if second == "nested" else q)
                frame, formula = simulate(args.n, args.p, groups, slopes, q, second)
                csv = Path(tmp_s) / f"q{q}_{int(slopes)}{second}.csv"
                frame.to_csv(csv, index=False)
                spec = json.dumps({"csv": str(csv), "formula": formula})
                p = subprocess.run([sys.executable, "-c", SCRIPT, spec], env=env, check=True,
                                   capture_output=True, text=True)
                got = json.loads(p.stdout.strip().splitlines()[-1])
                term = "(" + formula.split(" + (", 1)[1]
                rows.append((q, term, got))
                print(q, term, {k: round(v, 3) for k, v in got.items()}, file=sys.stderr,
                      flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = ["# Post-fit tables in a fresh process", "",
             f"Run {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')} on "
             f"{platform.node()} ({os.cpu_count()} CPUs, load {load} at the end), Python "
             f"{platform.python_version()}; `python -m benchmarks.post_fit "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`.  n = {args.n}, "
             f"p = {args.p} fixed-effect columns; seconds of the first call of each table "
             "after a REML fit, in a new process per model (hierlm's bytecode compiled "
             "first, as an install does).", "",
             "| q (random effects) | random term | " + " | ".join(STEPS) + " |",
             "|---|---|" + "---|" * len(STEPS)]
    for q, term, got in rows:
        lines.append(f"| {q} | `{term}` | " + " | ".join(f"{got[s]:.3f}" for s in STEPS) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
