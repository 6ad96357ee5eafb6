"""The performance targets, checked against one benchmark run.

Each target is read off ``results.json`` and reported as met or not; an unmet
target carries the note on what limits it (measured on the 2-core benchmark
machine with profiles of the fits, see ``benchmarks/README.md``).
"""

from __future__ import annotations

from typing import Any

LIMITS = {
    "insteval": "12 evaluations (9 of the descent from the moment start, 3 for lme4's "
                "Hessian check) of about 60 ms of one core (fused evaluation, "
                "hierlm.objective.scalar_crossed): the dense Cholesky of the 1145 x 1145 "
                "Schur complement and its gradient (potrf, trtri, lauum: about 48 ms, split "
                "over two threads), the pair loop over 4.1 million level pairs for U and "
                "dU/dtheta_1 (about 10 ms, two threads); design, Gram blocks, moment start "
                "and estimates about 0.15 s",
    "small": "a fit is 10-16 evaluations of under 0.1 ms each; the remaining 13-27 ms is "
             "per-fit Python work (grouping-factor labels in pandas, sparse Gram assembly, "
             "the result's tables, L-BFGS-B bookkeeping), and lme4's own time for these "
             "tiny models is 24-49 ms, varying by a third between runs",
    "fresh": "imports (about 1.3 s on an idle machine: pandas 0.5 s, PyTensor and Numba "
             "0.5 s, SciPy's linalg and optimize 0.4 s; xarray, formulae, ArviZ and PyMC are "
             "no longer imported on this path) and Numba's start-up on the first call of the "
             "cached machine code (about 0.4 s: it registers its whole CPU target)",
    "movielens": "6 evaluations of 1.6 s of one core each (single-threaded CPU time, "
                 "load 5), run on two threads: the dense Schur complement has 3708 rows, "
                 "its Cholesky (0.38 s), inverse (0.38 s) and L^-T L^-1 (0.32 s) are m^3 "
                 "flops; the pair loop visits 452 million level pairs once for U and "
                 "dU/dtheta_1 (0.34 s); design, Gram blocks and estimates about 1.4 s",
    "first_fit": "PyTensor rebuilds, rewrites and links the graph in every process (about "
                 "1.3 s) before it can load the cached machine code (about 0.4 s)",
    "cold": "Numba compiles the whole objective-and-gradient graph on first use of a "
            "model structure",
}


def _get(case: dict[str, Any] | None, *path: str) -> Any:
    cur: Any = case
    for key in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(key)
    return cur


def _ok(res: Any, key: str) -> float | None:
    if isinstance(res, dict) and res.get("status") == "ok" and res.get(key) is not None:
        return float(res[key])
    return None


def _line(name: str, measured: str, met: bool | None, limit: str) -> str:
    status = "not measured" if met is None else ("met" if met else "not met")
    note = limit if met is False else ""
    return f"| {name} | {measured} | {status} | {note} |"


def targets_markdown(results: dict[str, Any]) -> list[str]:
    """The targets section of ``results.md``."""
    cases = {c["name"]: c for c in results["cases"]}
    out = ["## Targets", "", "| target | measured | status | what limits it |",
           "|---|---|---|---|"]

    def speedup(name: str) -> float | None:
        h = _ok(_get(cases.get(name), "hierlm", "inproc"), "median")
        r = _ok(_get(cases.get(name), "lme4", "inproc"), "median")
        return None if h is None or r is None else r / h

    s = speedup("insteval")
    out.append(_line("InstEval REML >= 20x faster than lme4 (in process)",
                     "—" if s is None else f"{s:.3g}x", None if s is None else s >= 20,
                     LIMITS["insteval"]))
    for name in ("sleepstudy", "penicillin", "pastes", "maximal"):
        s = speedup(name)
        out.append(_line(f"{name} >= 2x faster than lme4 (in process)",
                         "—" if s is None else f"{s:.3g}x", None if s is None else s >= 2,
                         LIMITS["small"]))
    for name in ("sleepstudy", "penicillin", "pastes", "maximal", "insteval"):
        h = _ok(_get(cases.get(name), "hierlm", "fresh_warm"), "wall_s")
        r = _ok(_get(cases.get(name), "lme4", "fresh"), "wall_s")
        met = None if h is None or r is None else h <= r
        out.append(_line(f"{name}: fresh process, warm cache, no slower than Rscript",
                         "—" if met is None else
                         f"{h:.3g} s vs {r:.3g} s (hierlm / Rscript {h / r:.2f})", met,
                         LIMITS["fresh"]))
    inproc = _get(cases.get("movielens"), "hierlm", "inproc")
    t, rss = _ok(inproc, "median"), _ok(inproc, "maxrss_mb")
    out.append(_line("1M-row crossed model (movielens) by REML in < 10 s",
                     "—" if t is None else f"{t:.3g} s", None if t is None else t < 10,
                     LIMITS["movielens"]))
    out.append(_line("... with peak RSS < 4 GB", "—" if rss is None else f"{rss / 1024:.2f} GB",
                     None if rss is None else rss < 4096, ""))
    warm = _ok(_get(cases.get("sleepstudy"), "hierlm", "fresh_warm"), "fit_s")
    cold = _ok(_get(cases.get("sleepstudy"), "hierlm", "fresh_cold"), "fit_s")
    out.append(_line("sleepstudy first fit in a fresh process, warm cache, < 2 s",
                     "—" if warm is None else f"{warm:.3g} s", None if warm is None else warm < 2,
                     LIMITS["first_fit"]))
    out.append(_line("sleepstudy first fit in a fresh process, empty cache, < 30 s",
                     "—" if cold is None else f"{cold:.3g} s", None if cold is None else cold < 30,
                     LIMITS["cold"]))
    diffs = [(n, c.get("objective_diff")) for n, c in cases.items()]
    worse = [n for n, d in diffs if d is not None and d > 1e-6 * max(1.0, abs(
        _ok(_get(cases[n], "lme4", "inproc"), "objective") or 1.0))]
    measured = [d for _, d in diffs if d is not None]
    out.append(_line("estimates agree with lme4 (objective never worse by > 1e-6 relative)",
                     "—" if not measured else f"largest hierlm − lme4: {max(measured):+.2e}",
                     None if not measured else not worse, "worse on: " + ", ".join(worse)))
    out += ["", "Agreement of the estimates themselves (fixed effects, SEs, variance "
            "components, conditional modes) is checked by `tests/test_reference.py`."]
    return out
