"""Run the hierlm benchmark suite: hierlm vs lme4 vs statsmodels on every case.

Usage (from the repository root)::

    python -m benchmarks.run                      # all cases
    python -m benchmarks.run --quick              # small cases only
    python -m benchmarks.run --cases sleepstudy,penicillin --repeats 3 --out /tmp/bench

Writes ``results.json``, ``results.md`` and ``results.png`` into ``--out``
(default: ``benchmarks/``) after every case, and the simulated data sets into
``<out>/data/``.  Programs run one after another, never in parallel.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import programs, report
from benchmarks.cases import Case, select_cases

BENCH_DIR = Path(__file__).resolve().parent
ALL_PROGRAMS = ("hierlm", "lme4", "statsmodels")


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR.parent,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hierlm"],
                               cwd=BENCH_DIR.parent, capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (hierlm/ has uncommitted changes)" if dirty else "")


def _r_versions() -> str:
    if programs.lme4_available() is not None:
        return str(programs.lme4_available())
    code = ('cat(R.version.string, "; lme4 ", as.character(packageVersion("lme4")), '
            '"; Matrix ", as.character(packageVersion("Matrix")), '
            '"; BLAS ", extSoftVersion()[["BLAS"]], sep="")')
    proc = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True,
                          timeout=120, check=False)
    return proc.stdout.strip() or proc.stderr.strip()


def machine_info() -> dict[str, str]:
    """Where and with what the benchmark ran."""
    threads = {k: v for k, v in os.environ.items()
               if k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": _cpu_model(),
        "RAM": _ram_gib(),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "hierlm": f"{_version('hierlm')}, commit {_git_commit()}",
        "numpy": _version("numpy"),
        "scipy": _version("scipy"),
        "pandas": _version("pandas"),
        "pytensor": _version("pytensor"),
        "numba": _version("numba"),
        "statsmodels": _version("statsmodels"),
        "R": _r_versions(),
        "load average at start (1/5/15 min)": _load(),
        "thread settings": ", ".join(f"{k}={v}" for k, v in threads.items()) or "defaults",
    }


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def _n_rows(csv: Path) -> int:
    with csv.open("rb") as fh:
        return max(0, sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
                   - 1)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _one_line(res: dict[str, Any] | None) -> str:
    if not res:
        return "-"
    if res.get("status") == "ok":
        return f"{res.get('median', res.get('wall_s')):.3g} s"
    return f"{res.get('status')}: {str(res.get('message', ''))[:80]}"


def run_case(case: Case, args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """All programs on one case; every failure is caught and recorded."""
    entry: dict[str, Any] = {"name": case.name, "title": case.title, "formula": case.formula,
                             "method": case.method}
    try:
        csv = case.csv_path(data_dir)
        entry["csv"] = str(csv)
        entry["n_rows"] = _n_rows(csv)
    except Exception as exc:  # no data: every program fails the same way
        entry["csv"] = "unavailable"
        failed = {"status": "error", "message": f"data: {type(exc).__name__}: {exc}"}
        entry["hierlm"] = {"inproc": failed}
        entry["lme4"] = {"inproc": failed}
        entry["statsmodels"] = failed
        return entry
    progs = args.programs
    if "hierlm" in progs:
        _log(f"{case.name}: hierlm")
        entry["hierlm"] = programs.run_hierlm(case, csv, args.repeats, args.budget, args.cap)
        _log(f"{case.name}: hierlm {_one_line(entry['hierlm']['inproc'])}")
    if "lme4" in progs:
        _log(f"{case.name}: lme4")
        entry["lme4"] = programs.run_lme4(case, csv, args.repeats, args.budget, args.cap)
        _log(f"{case.name}: lme4 {_one_line(entry['lme4']['inproc'])}")
    if "statsmodels" in progs:
        _log(f"{case.name}: statsmodels")
        entry["statsmodels"] = programs.run_statsmodels(case, csv, args.repeats, args.budget,
                                                        args.sm_cap)
        _log(f"{case.name}: statsmodels {_one_line(entry['statsmodels'])}")
    lme4_obj = _ok_value(entry.get("lme4", {}).get("inproc"), "objective")
    h_obj = _ok_value(entry.get("hierlm", {}).get("inproc"), "objective")
    sm_obj = _ok_value(entry.get("statsmodels"), "minus_two_llf")
    if lme4_obj is not None and h_obj is not None:
        entry["objective_diff"] = h_obj - lme4_obj
    if lme4_obj is not None and sm_obj is not None and case.method == "reml":
        entry["statsmodels_objective_diff"] = sm_obj - lme4_obj
    return entry


def _ok_value(res: dict[str, Any] | None, key: str) -> float | None:
    if res and res.get("status") == "ok" and res.get(key) is not None:
        return float(res[key])
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="only the small cases")
    p.add_argument("--cases", help="comma-separated case names (default: all)")
    p.add_argument("--repeats", type=int, default=5, help="timed fits per program (default 5)")
    p.add_argument("--budget", type=float, default=60.0,
                   help="seconds of timed fits per program and case; fewer repeats beyond it")
    p.add_argument("--out", type=Path, default=BENCH_DIR, help="output directory")
    p.add_argument("--sm-cap", type=float, default=300.0,
                   help="time cap for a statsmodels run, seconds (default 300)")
    p.add_argument("--cap", type=float, default=1800.0,
                   help="time cap for each hierlm / lme4 process, seconds (default 1800)")
    p.add_argument("--programs", default=",".join(ALL_PROGRAMS),
                   help="comma-separated subset of hierlm,lme4,statsmodels")
    args = p.parse_args(argv)
    args.programs = [s.strip() for s in args.programs.split(",") if s.strip()]
    unknown = set(args.programs) - set(ALL_PROGRAMS)
    if unknown:
        p.error(f"unknown program(s): {', '.join(sorted(unknown))}")
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the selected cases and write the results after each one."""
    args = parse_args(argv)
    cases = select_cases(args.cases, args.quick)
    out_dir = args.out.resolve()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "settings": {
            "repeats": args.repeats, "budget": args.budget, "sm_cap": args.sm_cap,
            "cap": args.cap, "programs": args.programs,
            "command": "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None
                                                               else argv),
        },
        "cases": [],
    }
    for case in cases:
        results["cases"].append(run_case(case, args, out_dir / "data"))
        results["machine"]["load average at end (1/5/15 min)"] = _load()
        report.write_all(results, out_dir)
    if not cases:
        report.write_all(results, out_dir)
    _log(f"wrote {out_dir / 'results.md'}")
    print(report.markdown(results))


if __name__ == "__main__":
    main()
