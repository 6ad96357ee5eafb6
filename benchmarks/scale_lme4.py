"""lme4 on the simulated MovieLens-10M-sized crossed design, with a time limit.

``python -m benchmarks.scale_lme4 [--rows N] [--limit SECONDS]`` simulates the crossed
design of :mod:`benchmarks.scale_bench` (same function, same seed: the very data hierlm
fits there), writes it as one CSV for R (R here has no parquet reader), and runs
``benchmarks/scale_lme4.R`` (``lmer(rating ~ 1 + (1 | user) + (1 | item))``, REML) under
``timeout`` and ``/usr/bin/time`` for its peak memory.  Appends one line to
``scale_lme4_results.md``: the fit's time and criterion, or that it did not finish in
the limit.  R is a baseline only; nothing of hierlm runs R.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.scale_bench import ML10M_ITEMS, ML10M_USERS, write_crossed

HERE = Path(__file__).parent


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--limit", type=int, default=3600, help="seconds for lme4's process")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="hierlm_lme4_"))
    write_crossed(folder / "parts", args.rows, 1_000_000, ML10M_USERS, ML10M_ITEMS)
    csv = folder / "data.csv"
    for i, part in enumerate(sorted((folder / "parts").glob("part-*.parquet"))):
        pd.read_parquet(part).to_csv(csv, mode="a", header=i == 0, index=False)
    out = folder / "out.json"
    load = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", "timeout", str(args.limit), "Rscript",
                           str(HERE / "scale_lme4.R"), str(csv), str(out)],
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    peak_gb = int(peak.group(1)) / 2**20 if peak else float("nan")
    if out.exists():
        res = json.loads(out.read_text())
        what = (f"finished: read {res['read_s']:.0f} s, fit {res['fit_s']:.0f} s, "
                f"REMLcrit {res['REMLcrit']!r}, {res['n_evals']} evaluations; "
                f"{res['R']}, lme4 {res['lme4']}")
    else:
        what = (f"did not finish in {args.limit} s (exit {proc.returncode}); "
                f"R printed: {proc.stdout.strip()[-200:] or 'nothing'}")
    line = (f"- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {args.rows:,} rows, "
            f"{ML10M_USERS:,} users x {ML10M_ITEMS:,} items: {what}; whole process "
            f"{wall:.0f} s, peak {peak_gb:.2f} GB; load at start {load[0]:.2f} "
            f"(`python -m benchmarks.scale_lme4 --rows {args.rows} --limit {args.limit}`)\n")
    results = HERE / "scale_lme4_results.md"
    if not results.exists():
        results.write_text("# lme4 on the simulated crossed designs of scale_bench\n\n")
    with results.open("a") as fh:
        fh.write(line)
    print(line, end="")
    for p in sorted((folder / "parts").glob("part-*.parquet")):
        p.unlink()
    for p in (csv, out):
        p.unlink(missing_ok=True)
    (folder / "parts").rmdir()
    folder.rmdir()


if __name__ == "__main__":
    main()
