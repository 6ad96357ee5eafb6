"""First NUTS fit of a new model in a fresh process of a warm install.

Usage (from the repository root)::

    python -m benchmarks.nuts_first                    # warm-up process, then 3 timed ones
    python -m benchmarks.nuts_first --root /tmp/old    # time another checkout of hierlm
    python -m benchmarks.nuts_first --baseline /tmp/old --out benchmarks/nuts_first_results.md
    python -m benchmarks.nuts_first --repeats 1 --draws 100

Each process fits sleepstudy with its columns renamed to random strings (``Reaction``,
``Days`` and ``Subject`` get new names in every process), a few subjects left out (so
the level count changes) and, in every other formula, one more fixed effect (a random
covariate), so nothing keyed by names, level counts or the number of fixed effects is
cached.  The formulas cover three random-effect structures::

    y ~ 1 + x + (1 + x | g)        y ~ 1 + x + z + (1 | g)        y ~ 1 + x + z + (x || g)

One warm-up process first fits every formula with other names (what a warm install
has already compiled); then each timed process fits them once more, each with
``method="nuts"`` (2 chains, ``--draws`` draws after as many tuning steps; the
default sampler).  Per formula it records the time to build the model, to get the
compiled density graphs (``graphs``: from disk, or the PyMC model built and
rewritten), to get their C entry points (``cfuncs``: Numba's cache, or a compile),
and the rest of the fit (REML start, sampling, assembling the result), and the
process's import time.  Programs run one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMULAS = ("{y} ~ 1 + {x} + (1 + {x} | {g})",
            "{y} ~ 1 + {x} + {z} + (1 | {g})",
            "{y} ~ 1 + {x} + {z} + ({x} || {g})")

WORKER = """
import json, random, sys, time, warnings
t0 = time.perf_counter()
import hierlm
from hierlm.estimate.nuts_compiled import density_graphs
from hierlm.estimate.priors import resolve_priors
t_import = time.perf_counter() - t0
import numpy as np
seed, draws, formulas = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
rnd = random.Random(seed)
out = {"import_s": t_import, "fits": []}
for k, tpl in enumerate(formulas):
    names = {key: "v" + "%08x" % rnd.getrandbits(32) for key in "yxgz"}
    df = hierlm.load_sleepstudy().rename(
        columns={"Reaction": names["y"], "Days": names["x"], "Subject": names["g"]})
    levels = sorted(df[names["g"]].unique())
    df = df[df[names["g"]].isin(levels[:len(levels) - rnd.randrange(1, 6)])].copy()
    df[names["z"]] = np.random.default_rng(seed + k).normal(size=len(df))
    t0 = time.perf_counter()
    m = hierlm.Model(tpl.format(**names), df)
    pr = resolve_priors(m.design)
    t1 = time.perf_counter()
    g = density_graphs(m.objective, pr)
    t2 = time.perf_counter()
    g.c_functions
    t3 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = m.fit(method="nuts", draws=draws, tune=draws, chains=2, random_seed=1,
                    progressbar=False)
    t4 = time.perf_counter()
    out["fits"].append({"formula": tpl, "model_s": t1 - t0, "graphs_s": t2 - t1,
                        "cfuncs_s": t3 - t2, "fit_s": t4 - t3,
                        "sampling_s": res.nuts.sampling_time, "first_fit_s": t4 - t0,
                        "graphs_loaded": bool(g.logp.loaded)})
print("RESULT " + json.dumps(out))
"""


def run_worker(root: Path, seed: int, draws: int) -> dict[str, Any]:
    """One fresh process (``root`` first on the path); its ``RESULT`` and wall time."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WORKER, str(seed), str(draws),
                           json.dumps(FORMULAS)], capture_output=True, text=True, env=env,
                          cwd=root, timeout=1800, check=False)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return {**json.loads(lines[-1][7:]), "wall_s": wall}


def measure(root: Path, repeats: int, draws: int) -> list[dict[str, Any]]:
    """A warm-up process (other names, same structures), then ``repeats`` timed ones,
    each with names never used before (seeded by the clock)."""
    base = time.time_ns() % 2**40
    run_worker(root, base, draws)
    return [run_worker(root, base + 1 + i, draws) for i in range(repeats)]


def table(root: Path, runs: list[dict[str, Any]]) -> list[str]:
    """Markdown lines: per formula, the medians of each stage (seconds)."""
    lines = [f"hierlm at `{root}`; {len(runs)} fresh processes after one warm-up (medians, s)",
             "", "| formula | model | graphs | C entry points | rest of fit (sampling) | "
             "first fit |", "|---|---|---|---|---|---|"]
    for j, tpl in enumerate(FORMULAS):
        fits = [r["fits"][j] for r in runs]

        def med(key: str, fits: list[dict[str, Any]] = fits) -> float:
            return statistics.median(f[key] for f in fits)
        lines.append(f"| `{tpl}` | {med('model_s'):.2f} | {med('graphs_s'):.2f} | "
                     f"{med('cfuncs_s'):.2f} | {med('fit_s'):.2f} ({med('sampling_s'):.2f}) | "
                     f"**{med('first_fit_s'):.2f}** |")
    lines += ["", f"`import hierlm`: {statistics.median(r['import_s'] for r in runs):.2f} s; "
              f"whole process (import, three first fits): "
              f"{statistics.median(r['wall_s'] for r in runs):.2f} s", ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=REPO_ROOT, help="checkout of hierlm to time")
    ap.add_argument("--baseline", type=Path, help="another checkout, timed first in the same run")
    ap.add_argument("--repeats", type=int, default=3, help="timed processes")
    ap.add_argument("--draws", type=int, default=200, help="draws (and tuning steps) per chain")
    ap.add_argument("--out", type=Path, help="also write the tables to this Markdown file")
    args = ap.parse_args(argv)
    lines = [f"# First NUTS fit of a new model ({time.strftime('%Y-%m-%d %H:%M')}, "
             f"load average {os.getloadavg()[0]:.2f})", "",
             "`python -m benchmarks.nuts_first` (see its docstring); 2 chains x "
             f"{args.draws} draws after {args.draws} tuning steps.", ""]
    for root in [*([args.baseline] if args.baseline else []), args.root]:
        lines += table(root, measure(root, args.repeats, args.draws))
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
