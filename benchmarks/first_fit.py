"""First-fit benchmark rows: a whole sleepstudy process against Rscript, and first fits
with empty compile caches against bambi's.

Usage (from the repository root)::

    python -m benchmarks.first_fit                              # all rows
    python -m benchmarks.first_fit --bambi-path /tmp/bambi_site # bambi kept out of the venv
    python -m benchmarks.first_fit --skip-cold                  # the warm-cache row only

Every measurement is one run of a new process (programs one after another, never in
parallel), timed by :func:`benchmarks.programs.run_measured`:

- *warm cache*: ``python -c`` importing hierlm and pandas, reading sleepstudy's CSV and
  fitting ``Reaction ~ 1 + Days + (1 + Days | Subject)`` by REML once
  (:data:`benchmarks.programs.FRESH_SCRIPT`), after one warm-up process, against a new
  ``Rscript`` process that loads lme4, reads the same CSV and fits once
  (``benchmarks/lme4_bench.R``); the ratio is Rscript's wall time over hierlm's.
- *empty caches*: PyTensor's ``base_compiledir`` and ``NUMBA_CACHE_DIR`` point at new
  empty folders.  hierlm: one process fits by REML, then by NUTS (4 chains x 1000
  draws after 1000 tuning steps, the default sampler); the NUTS fit starts from its own
  REML fit, which is then served from what the first fit compiled.  With nothing
  compiled, the NUTS fit samples the NumPy log density (``hierlm.estimate.nuts_first``)
  and starts a background process that compiles the structure for later processes;
  the script stops it after the timings (it would run on, at low priority, beside
  bambi's fit).  bambi (if it can
  be imported, e.g. from ``pip install --target DIR bambi``): its fit of the same
  formula with the same draws, random effects as latent variables.

Results go to ``benchmarks/first_fit_results.md`` (``--out``) and, raw, to a JSON
file beside it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import programs

BENCH_DIR = Path(__file__).resolve().parent
SLEEP_CSV = BENCH_DIR.parent / "hierlm" / "datasets" / "sleepstudy.csv"
FORMULA = "Reaction ~ 1 + Days + (1 + Days | Subject)"
CAP = 1800.0

COLD_SCRIPT = """\
import json, time, warnings
t0 = time.perf_counter()
import hierlm
t1 = time.perf_counter()
df = hierlm.load_sleepstudy()
t2, c2 = time.perf_counter(), time.process_time()
reml = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", df)
t3, c3 = time.perf_counter(), time.process_time()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    nuts = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", df, method="nuts",
                      random_seed=1, progressbar=False)
t4, c4 = time.perf_counter(), time.process_time()
from hierlm.estimate import nuts_first
for proc in nuts_first.STARTED:  # the background compile for later processes: not timed
    proc.kill()
print("RESULT " + json.dumps({
    "log_density": nuts.idata["sample_stats"].attrs.get("log_density", "?"),
    "warm_up_processes": len(nuts_first.STARTED),
    "import_s": t1 - t0, "reml_fit_s": t3 - t2, "nuts_fit_s": t4 - t3,
    "reml_nuts_cpu_s": c4 - c2,
    "nuts_sampling_s": nuts.nuts.sampling_time, "sampler": nuts.nuts.sampler,
    "min_ess": float(nuts.nuts.diagnostics["ess_bulk"].min()),
    "warnings": sorted({str(w.message).splitlines()[0][:120] for w in caught}),
    "objective": float(reml.objective)}))
"""


def _cold_env(tmp: Path, extra_path: str = "") -> dict[str, str]:
    env = dict(os.environ)
    flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",")
             if f and not f.startswith(("compiledir=", "base_compiledir="))]
    env["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={tmp / 'pytensor'}"])
    env["NUMBA_CACHE_DIR"] = str(tmp / "numba")
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (extra_path, env.get("PYTHONPATH", "")) if p)
    return env


def _measure(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    m = programs.run_measured(cmd, CAP, env=env)
    out: dict[str, Any] = {"wall_s": m.wall_s, "cpu_s": m.cpu_s, "maxrss_mb": m.maxrss_mb}
    for line in m.stdout.splitlines():
        if line.startswith("RESULT "):
            return {"status": "ok", **out, **json.loads(line[7:])}
    why = "timeout" if m.timed_out else f"exit {m.returncode}"
    return {"status": "error", **out, "message": f"{why}: {m.stderr.strip()[-1500:]}"}


def warm_rows() -> dict[str, Any]:
    """Whole-process REML fit, warm cache, against one ``Rscript`` process."""
    spec = json.dumps({"csv": str(SLEEP_CSV), "formula": FORMULA, "method": "reml",
                       "str_columns": ["Subject"]})
    fresh = [sys.executable, "-c", programs.FRESH_SCRIPT, spec]
    _measure(fresh)  # warm-up: fills the caches if this checkout has not yet
    hierlm = _measure(fresh)
    reason = programs.lme4_available()
    if reason is not None:
        rscript: dict[str, Any] = {"status": "skipped", "message": reason}
    else:
        rscript = _measure(["Rscript", str(programs.R_SCRIPT), str(SLEEP_CSV), FORMULA,
                            "Subject", "TRUE", "0"])
    return {"hierlm": hierlm, "rscript": rscript}


def cold_rows(bambi_path: str) -> dict[str, Any]:
    """First REML and NUTS fits with empty caches; bambi's first fit likewise."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hierlm-first-fit-") as tmp:
        out["hierlm"] = _measure([sys.executable, "-c", COLD_SCRIPT], _cold_env(Path(tmp)))
    sys.path[:0] = [bambi_path] if bambi_path else []
    if importlib.util.find_spec("bambi") is None:
        out["bambi"] = {"status": "skipped", "message": "bambi not importable"}
        return out
    spec = {"program": "bambi", "draws": 1000, "tune": 1000, "chains": 4, "seed": 1}
    with tempfile.TemporaryDirectory(prefix="bambi-first-fit-") as tmp:
        out["bambi"] = _measure([sys.executable, "-m", "benchmarks.nuts_bench", "worker",
                                 json.dumps(spec)], _cold_env(Path(tmp), bambi_path))
    return out


def _s(r: dict[str, Any], key: str) -> str:
    return f"{r[key]:.2f}" if r.get("status") == "ok" and r.get(key) is not None else "–"


def markdown(results: dict[str, Any], command: str) -> str:
    """The results file."""
    lines = ["# First-fit benchmark", "",
             f"Run {results['date']} on {results['machine']}; `{command}`. One run of each "
             "process, one after another; seconds of wall time. See "
             "`benchmarks/first_fit.py` for what each process does.", ""]
    warm = results.get("warm")
    if warm:
        h, r = warm["hierlm"], warm["rscript"]
        ratio = (f"{h['wall_s'] / r['wall_s']:.2f}" if h["status"] == r["status"] == "ok"
                 else "–")
        lines += ["## Whole process, warm compile cache: sleepstudy REML", "",
                  "| program | process | import | fit | hierlm / Rscript |",
                  "|---|---|---|---|---|",
                  f"| hierlm | {_s(h, 'wall_s')} | {_s(h, 'import_s')} | {_s(h, 'fit_s')} "
                  f"| {ratio} |",
                  f"| Rscript (lme4) | {_s(r, 'wall_s')} | | {_s(r, 'median')} | |",
                  "", "Target: hierlm / Rscript <= 1 (no slower than Rscript): "
                  + ("met" if ratio != "–" and float(ratio) <= 1 else
                     "not met" if ratio != "–" else "not measured") + ".", ""]
    cold = results.get("cold")
    if cold:
        h, b = cold["hierlm"], cold["bambi"]
        first = (h["reml_fit_s"] + h["nuts_fit_s"]) if h.get("status") == "ok" else None
        lines += ["## Empty compile caches: first fits of sleepstudy", "",
                  "| program | process (CPU) | import | REML fit | NUTS fit (sampling) | "
                  "REML + NUTS (CPU) | min ESS |", "|---|---|---|---|---|---|---|",
                  f"| hierlm ({h.get('sampler', '?')}, {h.get('log_density', '?')} density) | "
                  f"{_s(h, 'wall_s')} ({_s(h, 'cpu_s')}) | "
                  f"{_s(h, 'import_s')} | {_s(h, 'reml_fit_s')} | {_s(h, 'nuts_fit_s')} "
                  f"({_s(h, 'nuts_sampling_s')}) | "
                  f"{'–' if first is None else f'{first:.2f}'} ({_s(h, 'reml_nuts_cpu_s')}) "
                  f"| {_s(h, 'min_ess')} |",
                  f"| bambi (latent random effects) | {_s(b, 'wall_s')} ({_s(b, 'cpu_s')}) "
                  f"| | | {_s(b, 'fit_s')} | {_s(b, 'fit_s')} | {_s(b, 'min_ess')} |", "",
                  "CPU: seconds of CPU time (user + system) of the process, with the "
                  "processes it waited for (bambi's chains), and of hierlm's two fits "
                  "(its process only).  The machine's 2 cores are shared: with other work "
                  "running, wall time depends on the load as well.", ""]
        reml = h.get("reml_fit_s") if h.get("status") == "ok" else None
        lines.append("Targets: REML first fit <= 10 s: " + (
            "not measured" if reml is None else "met" if reml <= 10 else "not met")
            + "; REML + NUTS no slower than bambi's first fit: " + (
            "not measured" if first is None or b.get("status") != "ok" else
            "met" if first <= b["fit_s"] else "not met") + ".")
        if h.get("warnings"):
            lines += ["", "Warnings during hierlm's first NUTS fit: "
                      + "; ".join(f"`{w}`" for w in h["warnings"])]
        for name, r in (("hierlm", h), ("bambi", b)):
            if r.get("status") != "ok":
                lines += ["", f"{name}: {r.get('status')}: {r.get('message', '')[-400:]}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bambi-path", default="",
                    help="extra sys.path entry for bambi (e.g. a pip --target folder)")
    ap.add_argument("--skip-cold", action="store_true", help="the warm-cache row only")
    ap.add_argument("--skip-warm", action="store_true", help="the empty-cache rows only")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "first_fit_results.md")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="minutes"),
        "machine": f"{platform.node()} ({len(os.sched_getaffinity(0))} CPUs, load "
                   f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} at start), "
                   f"Python {platform.python_version()}"}
    if not args.skip_warm:
        results["warm"] = warm_rows()
        print("warm:", json.dumps(results["warm"]), flush=True)
    if not args.skip_cold:
        results["cold"] = cold_rows(args.bambi_path)
        print("cold:", json.dumps(results["cold"]), flush=True)
    command = "python -m benchmarks.first_fit " + " ".join(argv if argv is not None
                                                         else sys.argv[1:])
    args.out.write_text(markdown(results, command.strip()))
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    if shutil.which("Rscript") is None:
        print("note: Rscript not found; its row is skipped", file=sys.stderr)
    sys.exit(main())
