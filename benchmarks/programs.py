"""Runners that time hierlm, lme4 (via Rscript) and statsmodels on one benchmark case.

Every measurement runs in a child process started by :func:`run_measured`, which
records the child's wall time and peak resident set size (``os.wait4``) and
enforces a time cap, so that no program's failure, hang or memory blow-up can
abort the suite.  Each runner returns a plain dictionary with a ``status`` of
``"ok"``, ``"error"``, ``"timeout"``, ``"skipped"`` or ``"n/a"``.

The in-process timings are taken by worker functions in this module, run as
``python -m benchmarks.programs {hierlm|statsmodels} <spec json>``; they print a
single ``RESULT <json>`` line.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cases import Case

REPO_ROOT = Path(__file__).resolve().parents[1]
R_SCRIPT = Path(__file__).resolve().with_name("lme4_bench.R")


@dataclass
class Measured:
    """What a child process did: exit status, wall time, peak RSS and its output, and its
    CPU time (user + system, with the processes it waited for)."""

    returncode: int
    wall_s: float
    maxrss_mb: float
    stdout: str
    stderr: str
    timed_out: bool
    cpu_s: float = float("nan")


def run_measured(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None,
    mem_limit_bytes: int | None = None,
) -> Measured:
    """Run ``cmd`` in its own process group; wall time, peak RSS (MB) and a hard time cap."""
    def limit() -> None:
        if mem_limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (mem_limit_bytes, mem_limit_bytes))

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO_ROOT,
                                start_new_session=True, preexec_fn=limit)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=proc.returncode, wall_s=wall, maxrss_mb=usage.ru_maxrss / 1024.0,
            stdout=out.read().decode(errors="replace"), stderr=err.read().decode(errors="replace"),
            timed_out=timed_out, cpu_s=usage.ru_utime + usage.ru_stime,
        )


def _parse(m: Measured, cap: float) -> dict[str, Any]:
    """Turn a child's output into a result dictionary (status ok / error / timeout)."""
    base: dict[str, Any] = {"wall_s": m.wall_s, "maxrss_mb": m.maxrss_mb}
    if m.timed_out:
        progress = [json.loads(line[len("PROGRESS "):]) for line in m.stdout.splitlines()
                    if line.startswith("PROGRESS ")]
        partial = {"partial": progress[-1]} if progress else {}
        return {**base, **partial, "status": "timeout", "message": f"> {cap:g} s"}
    for line in reversed(m.stdout.splitlines()):
        if line.startswith("RESULT "):
            payload = json.loads(line[len("RESULT "):])
            if "error" in payload:
                return {**base, "status": "error", "message": payload["error"]}
            return {**base, "status": "ok", **payload}
    lines = [ln for ln in (m.stderr + m.stdout).strip().splitlines() if ln.strip()]
    if m.returncode < 0:
        last = f"killed by signal {-m.returncode}" + (f"; {lines[-1]}" if lines else "")
    else:
        last = lines[-1] if lines else f"exit status {m.returncode}"
    return {**base, "status": "error", "message": last.strip()}


def _summary(times: list[float], warmup: float | None) -> dict[str, Any]:
    return {"times": times, "median": statistics.median(times), "warmup": warmup}


def _progress(**done: Any) -> None:
    """Report what is finished so far, kept if the process is later killed at its cap."""
    print("PROGRESS " + json.dumps(done), flush=True)


def _n_repeats(repeats: int, warmup: float, budget: float) -> int:
    return max(1, min(repeats, int(budget // max(warmup, 1e-3))))


# ---------------------------------------------------------------- workers (child side)

def _read(spec: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.read_csv(spec["csv"], dtype=dict.fromkeys(spec["str_columns"], str))


def _hierlm_payload(res: Any) -> dict[str, Any]:
    """The fitted quantities of a hierlm result, tolerating attributes not yet present."""
    import numpy as np

    fixef = getattr(res, "fixef", None)
    theta = getattr(res, "theta", None)
    n_evals = getattr(res, "n_evals", None)
    return {
        "objective": float(getattr(res, "objective", float("nan"))),
        "fixef": {str(k): float(v) for k, v in fixef.items()} if fixef is not None else None,
        "theta": np.asarray(theta, dtype=float).tolist() if theta is not None else None,
        "sigma": float(getattr(res, "sigma", float("nan"))),
        "n_evals": int(n_evals) if n_evals is not None else None,
        "converged": bool(getattr(res, "converged", False)),
    }


def hierlm_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One warm-up ``hierlm.fit`` then timed fits (median of up to ``repeats``)."""
    import hierlm

    data = _read(spec)
    t0 = time.perf_counter()
    hierlm.fit(spec["formula"], data=data, method=spec["method"])
    warmup = time.perf_counter() - t0
    _progress(warmup=warmup)
    times: list[float] = []
    res: Any = None
    for _ in range(_n_repeats(spec["repeats"], warmup, spec["budget"])):
        t0 = time.perf_counter()
        res = hierlm.fit(spec["formula"], data=data, method=spec["method"])
        times.append(time.perf_counter() - t0)
        _progress(warmup=warmup, times=times)
    return {**_summary(times, warmup), **_hierlm_payload(res)}


def _statsmodels_model(spec: dict[str, Any], data: Any) -> Any:
    import numpy as np
    import pandas as pd
    from statsmodels.regression.mixed_linear_model import MixedLM, VCSpec

    sm = spec["statsmodels"]
    if sm["kind"] == "formula":
        return MixedLM.from_formula(sm["fixed"], data, groups=sm["groups"],
                                    re_formula=sm["re_formula"], vc_formula=sm["vc_formula"])
    import patsy
    import scipy.sparse as sparse

    y, x = patsy.dmatrices(sm["fixed"], data, return_type="dataframe")
    n = len(data)
    names, colnames, mats = [], [], []
    for factor in sm["factors"]:
        codes, levels = pd.factorize(data[factor], sort=True)
        mat = sparse.csr_array((np.ones(n), (np.arange(n), codes)), shape=(n, len(levels)))
        names.append(factor)
        colnames.append([[f"{factor}[{lev}]" for lev in levels]])
        mats.append([mat])
    return MixedLM(y, x, groups=np.zeros(n), exog_vc=VCSpec(names, colnames, mats))


def statsmodels_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Time model construction + ``fit(reml=True)``; repeat while within the budget."""
    import numpy as np

    data = _read(spec)

    def fit_once() -> tuple[float, Any]:
        t0 = time.perf_counter()
        result = _statsmodels_model(spec, data).fit(reml=spec["method"] == "reml")
        return time.perf_counter() - t0, result

    warmup, res = fit_once()
    _progress(warmup=warmup)
    if warmup > spec["budget"]:
        times = [warmup]
        warmup_out = None
    else:
        times = []
        for _ in range(_n_repeats(spec["repeats"], warmup, spec["budget"])):
            elapsed, res = fit_once()
            times.append(elapsed)
        warmup_out = warmup
    return {
        **_summary(times, warmup_out),
        "minus_two_llf": float(-2.0 * res.llf),
        "fixef": {str(k): float(v) for k, v in res.fe_params.items()},
        "vcomp": np.atleast_1d(np.asarray(res.vcomp, dtype=float)).tolist(),
        "cov_re": np.asarray(res.cov_re, dtype=float).tolist(),
        "scale": float(res.scale),
        "converged": bool(res.converged),
    }


def worker_main(argv: list[str]) -> None:
    """Entry point of the child process: run one worker and print ``RESULT <json>``."""
    import warnings

    warnings.simplefilter("ignore")
    program, spec = argv[0], json.loads(argv[1])
    workers = {"hierlm": hierlm_worker, "statsmodels": statsmodels_worker}
    try:
        payload = workers[program](spec)
    except Exception as exc:  # reported in the table cell
        payload = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:500]}
    print("RESULT " + json.dumps(payload), flush=True)


# ---------------------------------------------------------------- runners (parent side)

def _spec(case: Case, csv: Path, repeats: int, budget: float) -> dict[str, Any]:
    return {
        "csv": str(csv), "formula": case.formula, "method": case.method,
        "str_columns": list(case.str_columns), "repeats": repeats, "budget": budget,
        "statsmodels": {
            "kind": case.statsmodels.kind, "fixed": case.statsmodels.fixed,
            "groups": case.statsmodels.groups, "re_formula": case.statsmodels.re_formula,
            "vc_formula": case.statsmodels.vc_formula,
            "factors": list(case.statsmodels.factors),
        },
    }


FRESH_SCRIPT = """\
import json, sys, time
t0 = time.perf_counter()
import hierlm, pandas
t1 = time.perf_counter()
spec = json.loads(sys.argv[1])
df = pandas.read_csv(spec["csv"], dtype=dict.fromkeys(spec["str_columns"], str))
t2 = time.perf_counter()
res = hierlm.fit(spec["formula"], data=df, method=spec["method"])
t3 = time.perf_counter()
print("RESULT " + json.dumps({"import_s": t1 - t0, "read_s": t2 - t1, "fit_s": t3 - t2,
      "objective": float(res.objective), "n_evals": int(res.n_evals)}))
"""


def run_hierlm(case: Case, csv: Path, repeats: int, budget: float, cap: float) -> dict[str, Any]:
    """In-process median, then fresh-process wall time with a warm and an empty compile cache."""
    spec = json.dumps(_spec(case, csv, repeats, budget))
    out: dict[str, Any] = {
        "inproc": _parse(run_measured(
            [sys.executable, "-m", "benchmarks.programs", "hierlm", spec], cap), cap),
    }
    if out["inproc"]["status"] == "timeout":
        skipped = {"status": "skipped", "message": "in-process run timed out"}
        return {**out, "fresh_warm": skipped, "fresh_cold": skipped}
    fresh = [sys.executable, "-c", FRESH_SCRIPT, spec]
    out["fresh_warm"] = _parse(run_measured(fresh, cap), cap)
    tmp = Path(tempfile.mkdtemp(prefix="hierlm-bench-cold-"))
    try:
        env = dict(os.environ)
        flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f]
        flags = [f for f in flags if not f.startswith(("compiledir=", "base_compiledir="))]
        # PyTensor keeps its Numba cache under base_compiledir, not compiledir.
        env["PYTENSOR_FLAGS"] = ",".join([*flags, f"base_compiledir={tmp / 'pytensor'}"])
        env["NUMBA_CACHE_DIR"] = str(tmp / "numba")
        out["fresh_cold"] = _parse(run_measured(fresh, cap, env=env), cap)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def lme4_available() -> str | None:
    """None if Rscript and lme4 work, else the reason they do not."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    try:
        proc = subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True,
                              text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Rscript failed: {exc}"
    if proc.returncode != 0:
        return "lme4 does not load"
    return None


def run_lme4(case: Case, csv: Path, repeats: int, budget: float, cap: float) -> dict[str, Any]:
    """In-process median from ``lme4_bench.R``, then one fresh ``Rscript`` process for one fit."""
    reason = lme4_available()
    if reason is not None:
        skipped = {"status": "skipped", "message": reason}
        return {"inproc": skipped, "fresh": skipped}
    reml = "TRUE" if case.method == "reml" else "FALSE"
    base = ["Rscript", str(R_SCRIPT), str(csv), case.formula, ",".join(case.str_columns), reml]
    inproc = _parse(run_measured([*base, str(repeats), str(budget)], cap), cap)
    if inproc["status"] == "timeout":
        return {"inproc": inproc,
                "fresh": {"status": "skipped", "message": "in-process run timed out"}}
    return {"inproc": inproc, "fresh": _parse(run_measured([*base, "0"], cap), cap)}


def run_statsmodels(
    case: Case, csv: Path, repeats: int, budget: float, cap: float, mem_fraction: float = 0.75
) -> dict[str, Any]:
    """statsmodels MixedLM in a child process with a time cap and an address-space cap."""
    if case.statsmodels.kind == "none":
        return {"status": "n/a", "message": case.statsmodels.reason}
    import psutil

    mem = int(psutil.virtual_memory().total * mem_fraction)
    spec = json.dumps(_spec(case, csv, repeats, budget))
    cmd = [sys.executable, "-m", "benchmarks.programs", "statsmodels", spec]
    result = _parse(run_measured(cmd, cap, mem_limit_bytes=mem), cap)
    if result["status"] == "error" and "MemoryError" in result.get("message", ""):
        result["message"] = f"out of memory (> {mem / 2**30:.0f} GiB)"
    return result


if __name__ == "__main__":
    worker_main(sys.argv[1:])
