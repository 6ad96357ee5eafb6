"""A whole fresh process on a model never fitted before, beside ``Rscript``.

    nice python -m benchmarks.fresh_process                  # best of 3, hierlm and R
    nice python -m benchmarks.fresh_process --repeats 5 --no-r

For each model (sleepstudy's random intercept and slope, and a ``ham``-like design:
16 fixed-effect columns, crossed random intercepts 81 x 8; both from
:func:`benchmarks.session.make_models`), each repeat draws new column names, so that
nothing keyed by labels can come from a cache, and times from outside one whole
process:

* hierlm: ``python -c`` doing ``import hierlm``, reading the CSV with pandas, a REML
  fit and ``summary()`` (Satterthwaite df);
* R: ``Rscript`` doing ``library(lme4); library(lmerTest)``, ``read.csv``, ``lmer`` and
  ``summary()`` (Satterthwaite df, lmerTest's default).

The best of ``--repeats`` wall times of each, and their ratio, go to
``benchmarks/fresh_process_results.md`` (``--out``), with ``python -X importtime``'s
largest cumulative imports of ``import hierlm`` and the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.session import make_models

ROOT = Path(__file__).resolve().parents[1]

PY_SCRIPT = r"""
import sys, warnings
import pandas as pd
import hierlm
warnings.simplefilter("ignore")
data = pd.read_csv(sys.argv[1], dtype={f: str for f in sys.argv[3].split(",")})
res = hierlm.fit(sys.argv[2], data)
text = res.summary()
assert "Pr(>|t|)" in text or "df" in text
"""

R_SCRIPT = r"""
suppressMessages({library(lme4); library(lmerTest)})
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1])
for (f in strsplit(a[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
fit <- lmer(as.formula(a[2]), d, REML = TRUE)
s <- summary(fit)
stopifnot(!is.null(s$coefficients[, "df"]))
"""


def _wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def import_profile(top: int = 8) -> tuple[float, list[tuple[str, float]]]:
    """``import hierlm``'s cumulative time (s) and the ``top`` slowest packages it
    imports, by ``python -X importtime`` (cumulative seconds of each top-level package
    where it is first imported, SciPy by subpackage; a package imported by another
    counts in both)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", "import hierlm"], env=env,
                       capture_output=True, text=True, check=True)
    cumulative: dict[str, float] = {}
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| *(\S+)", line)
        name = m.group(3) if m else ""
        if m and ("." not in name or (name.startswith("scipy.") and name.count(".") == 1)):
            cumulative[name] = int(m.group(2)) / 1e6
    total = cumulative.pop("hierlm", float("nan"))
    return total, sorted(cumulative.items(), key=lambda r: -r[1])[:top]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "fresh_process_results.md"))
    args = ap.parse_args(argv)
    seed0 = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    use_r = not args.no_r and shutil.which("Rscript") is not None
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    names = ("sleepstudy slopes", "ham-like: 16 fixed, crossed 81 x 8")
    times: dict[str, dict[str, list[float]]] = {n: {"hierlm": [], "R": []} for n in names}
    formulas: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        rscript = tmp / "fresh.R"
        rscript.write_text(R_SCRIPT)
        for rep in range(args.repeats):
            run_dir = tmp / f"r{rep}"
            run_dir.mkdir()
            models = {m["name"]: m for m in make_models(seed0 + rep, run_dir)}
            for name in names:
                m = models[name]
                csv, factors = str(run_dir / m["csv"]), ",".join(m["factors"])
                formulas[name] = m["formula"]
                times[name]["hierlm"].append(_wall(
                    [sys.executable, "-c", PY_SCRIPT, csv, m["formula"], factors], env))
                if use_r:
                    times[name]["R"].append(_wall(["Rscript", str(rscript), csv, m["formula"],
                                                   factors]))
                print(name, {k: [round(v, 2) for v in t] for k, t in times[name].items()},
                      file=sys.stderr, flush=True)
    own, tops = import_profile()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = ["# A fresh process on a new model: import, REML, summary() with Satterthwaite df",
             "", f"Run {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')} on "
             f"{platform.node()} ({os.cpu_count()} CPUs, load {load} at the end), Python "
             f"{platform.python_version()}; `python -m benchmarks.fresh_process "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}` (seed {seed0}).  "
             f"Best of {args.repeats} whole-process wall times in seconds, new column names "
             "in every repeat; R is `Rscript` with lme4 + lmerTest.", "",
             "| model | formula (last repeat's names) | hierlm (s) | R (s) | hierlm / R |",
             "|---|---|---|---|---|"]
    for name in names:
        h = min(times[name]["hierlm"])
        r = min(times[name]["R"]) if times[name]["R"] else None
        lines.append(f"| {name} | `{formulas[name]}` | {h:.2f} | "
                     f"{'n/a' if r is None else format(r, '.2f')} | "
                     f"{'' if r is None else format(h / r, '.2f')} |")
    lines += ["", f"`python -X importtime -c \"import hierlm\"`: hierlm's cumulative import "
              f"{own:.2f} s; the slowest packages it imports (cumulative s):", "",
              "| package | s |", "|---|---|"]
    lines += [f"| {name} | {c:.3f} |" for name, c in tops]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
