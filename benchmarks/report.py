"""Render benchmark results: markdown table (``results.md``) and bar chart (``results.png``).

Both are produced from the dictionary that is also saved as ``results.json``, so
they can be regenerated without re-running anything::

    python -m benchmarks.report benchmarks/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.targets import targets_markdown

PROGRAMS = ("hierlm", "lme4", "statsmodels")

COLUMNS = (
    "case", "n rows", "hierlm (s)", "lme4 (s)", "statsmodels (s)", "lme4 / hierlm",
    "statsmodels / hierlm", "hierlm n_evals", "lme4 n_evals", "hierlm fresh, warm cache (s)",
    "hierlm fresh, cold cache (s)", "Rscript fresh (s)", "hierlm peak RSS (MB)",
    "Rscript peak RSS (MB)", "objective: hierlm − lme4",
)


def fmt_s(x: float) -> str:
    """Seconds (or any positive quantity) to three significant digits, no exponent."""
    if x >= 100:
        return f"{x:.0f}"
    if x >= 0.001:
        return f"{x:.3g}"
    return f"{x:.1e}"


def _escape(text: str, width: int = 48) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(result: dict[str, Any] | None, key: str = "median", unit: str = "") -> str:
    """One table cell: the number if the run succeeded, else (time columns) what went wrong."""
    if result is None:
        return "not run"
    status = result.get("status")
    if status != "ok" and key not in ("median", "wall_s"):
        return "—"
    if status == "ok":
        value = result.get(key)
        if value is None:
            return "—"
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return fmt_s(float(value)) + unit
    if status == "timeout":
        return _escape(result.get("message", "timeout"))
    if status == "n/a":
        return "n/a"
    if status == "skipped":
        return "skipped"
    return "error: " + _escape(result.get("message", ""))


def seconds(result: dict[str, Any] | None, key: str = "median") -> float | None:
    """A successful run's time, else None."""
    if result and result.get("status") == "ok" and result.get(key) is not None:
        return float(result[key])
    return None


def ratio(other: dict[str, Any] | None, hierlm: dict[str, Any] | None, cap: float) -> str:
    """Speed-up of hierlm over another program (other's time / hierlm's time)."""
    h = seconds(hierlm)
    if h is None or h <= 0:
        return "—"
    o = seconds(other)
    if o is not None:
        return f"{o / h:.3g}×"
    if other and other.get("status") == "timeout":
        return f"> {cap / h:.3g}×"
    return "—"


def _objective_diff(case: dict[str, Any]) -> str:
    diff = case.get("objective_diff")
    return "—" if diff is None else f"{diff:+.2e}"


def row(case: dict[str, Any], sm_cap: float, cap: float) -> list[str]:
    """The table row of one case."""
    h = case.get("hierlm", {})
    r = case.get("lme4", {})
    s = case.get("statsmodels")
    inproc, lme4 = h.get("inproc"), r.get("inproc")
    return [
        case["name"], str(case.get("n_rows", "—")), cell(inproc), cell(lme4), cell(s),
        ratio(lme4, inproc, cap), ratio(s, inproc, sm_cap),
        cell(inproc, "n_evals"), cell(lme4, "n_evals"),
        cell(h.get("fresh_warm"), "wall_s"), cell(h.get("fresh_cold"), "wall_s"),
        cell(r.get("fresh"), "wall_s"), cell(h.get("fresh_warm"), "maxrss_mb"),
        cell(r.get("fresh"), "maxrss_mb"), _objective_diff(case),
    ]


def _split(res: dict[str, Any] | None) -> str:
    if not res or res.get("status") != "ok" or res.get("fit_s") is None:
        return cell(res, "wall_s")
    return " / ".join(fmt_s(float(res[k])) for k in ("import_s", "read_s", "fit_s"))


def details(results: dict[str, Any]) -> list[str]:
    """A second table: where hierlm's fresh-process time goes, and lme4 without its checks."""
    head = ("case", "hierlm first fit in process (s)", "hierlm converged",
            "fresh warm: import / read / fit (s)", "fresh cold: import / read / fit (s)",
            "lme4 without calc.derivs (s)", "lme4 singular fit")
    out = ["## Details", "", "| " + " | ".join(head) + " |",
           "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for case in results["cases"]:
        h, r = case.get("hierlm", {}), case.get("lme4", {})
        inproc, lme4 = h.get("inproc"), r.get("inproc")
        ok = inproc is not None and inproc.get("status") == "ok"
        singular = lme4.get("singular") if lme4 and lme4.get("status") == "ok" else None
        out.append("| " + " | ".join([
            case["name"], cell(inproc, "warmup"),
            str(inproc.get("converged")) if ok and inproc else "—",
            _split(h.get("fresh_warm")), _split(h.get("fresh_cold")),
            cell(lme4, "fit_noderivs_s"), "—" if singular is None else str(singular),
        ]) + " |")
    return out


def _fmt_any(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(fmt_s(float(v)) for v in value) + "] s"
    return fmt_s(float(value)) + " s"


def _problems(results: dict[str, Any]) -> list[str]:
    lines = []
    for case in results["cases"]:
        parts = [
            ("hierlm in-process", case.get("hierlm", {}).get("inproc")),
            ("hierlm fresh warm", case.get("hierlm", {}).get("fresh_warm")),
            ("hierlm fresh cold", case.get("hierlm", {}).get("fresh_cold")),
            ("lme4 in-process", case.get("lme4", {}).get("inproc")),
            ("Rscript fresh", case.get("lme4", {}).get("fresh")),
            ("statsmodels", case.get("statsmodels")),
        ]
        for label, res in parts:
            if res and res.get("status") in ("error", "timeout", "skipped"):
                msg = " ".join(str(res.get("message", "")).split())
                if res.get("partial"):
                    msg += "; finished before the cap: " + ", ".join(
                        f"{k} {_fmt_any(v)}" for k, v in res["partial"].items())
                lines.append(f"- {case['name']}, {label}: {res['status']}: {msg}")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The whole ``results.md`` document."""
    machine, settings = results["machine"], results["settings"]
    out = ["# hierlm benchmark results", ""]
    out += [f"- **{k}**: {v}" for k, v in machine.items()]
    out += [
        f"- **settings**: repeats {settings['repeats']} (fewer when a fit is slower than the "
        f"{settings['budget']:g} s budget), statsmodels cap {settings['sm_cap']:g} s, "
        f"hierlm/lme4 cap {settings['cap']:g} s",
        f"- **command**: `{settings['command']}`",
        "",
        "Times are medians of repeated fits inside one process, after one warm-up fit; "
        "fresh-process columns time a new interpreter that imports, reads the CSV and fits once. "
        "See `benchmarks/README.md` for the meaning of each column.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + "|",
    ]
    for case in results["cases"]:
        out.append("| " + " | ".join(row(case, settings["sm_cap"], settings["cap"])) + " |")
    out += ["", *targets_markdown(results), "", *details(results)]
    out += ["", "## Cases", ""]
    for case in results["cases"]:
        out.append(f"- **{case['name']}** ({case['title']}): `{case['formula']}`, "
                   f"{case['method'].upper()}, `{case['csv']}`")
    sm_lines = [
        f"- {c['name']}: {c['statsmodels_objective_diff']:+.2e}"
        for c in results["cases"] if c.get("statsmodels_objective_diff") is not None
    ]
    if sm_lines:
        out += ["", "## statsmodels −2 log-likelihood − lme4 criterion", "", *sm_lines]
    problems = _problems(results)
    if problems:
        out += ["", "## Failures, time-outs and skips (full messages)", "", *problems]
    return "\n".join(out) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    """Grouped bar chart of in-process fit times per case and program (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    cases = results["cases"]
    cap = float(results["settings"]["sm_cap"])
    colors = {"hierlm": "#1f77b4", "lme4": "#d62728", "statsmodels": "#7f7f7f"}
    width = 0.8 / len(PROGRAMS)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(cases) + 2), 4.5))
    lowest = min([t for c in cases for t in _times(c).values() if t is not None] or [cap])
    floor = 10 ** (int(f"{lowest:e}".split("e")[1]) - 1)
    for j, prog in enumerate(PROGRAMS):
        for i, case in enumerate(cases):
            x = i + (j - (len(PROGRAMS) - 1) / 2) * width
            t = _times(case)[prog]
            res = _result(case, prog)
            if t is not None:
                ax.bar(x, t, width, color=colors[prog])
            elif res and res.get("status") == "timeout":
                ax.bar(x, cap, width, color=colors[prog], alpha=0.35, hatch="//")
                ax.text(x, cap, ">", ha="center", va="bottom", fontsize=9)
            else:
                label = {"n/a": "n/a", "skipped": "skip"}.get(str(res and res.get("status")), "err")
                ax.text(x, floor * 1.3, label, ha="center", va="bottom", rotation=90, fontsize=7)
    handles = [Patch(color=colors[prog], label=prog) for prog in PROGRAMS]
    handles.append(Patch(facecolor="white", edgecolor="black", hatch="//",
                         label=f"time-out (> {cap:g} s)"))
    ax.set_yscale("log")
    ax.set_ylim(bottom=floor)
    ax.set_xticks(range(len(cases)), [c["name"] for c in cases])
    ax.set_ylabel("fit time, median (s, log scale)")
    ax.set_title("hierlm vs lme4 vs statsmodels: in-process fit time")
    ax.legend(handles=handles, frameon=False, fontsize=8)
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _result(case: dict[str, Any], prog: str) -> dict[str, Any] | None:
    if prog == "statsmodels":
        res: dict[str, Any] | None = case.get("statsmodels")
        return res
    return case.get(prog, {}).get("inproc")


def _times(case: dict[str, Any]) -> dict[str, float | None]:
    return {prog: seconds(_result(case, prog)) for prog in PROGRAMS}


def write_all(results: dict[str, Any], out_dir: Path) -> None:
    """Write ``results.json``, ``results.md`` and ``results.png`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out_dir / "results.md").write_text(markdown(results))
    if results["cases"]:
        plot(results, out_dir / "results.png")


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("results.json")
    data = json.loads(source.read_text())
    (source.parent / "results.md").write_text(markdown(data))
    plot(data, source.parent / "results.png")
