"""A researcher's session: new models, each fitted and summarized once, beside R.

    nice python -m benchmarks.session                    # hierlm and R (lme4 + lmerTest)
    nice python -m benchmarks.session --no-nuts --no-r   # hierlm's frequentist steps only
    nice python -m benchmarks.session --bambi-path /tmp/bambi_site  # bambi kept out of the venv

Five models of different structures (random intercept and slope; crossed intercepts
with 16 fixed-effect columns, like lmerTest's ``ham``; crossed intercepts; nested
intercepts; slopes with an interaction), on data whose column names are drawn at
random for this run, so that nothing keyed by labels can come from a cache.  For each
model, in one Python process (started fresh by this script, like a new notebook):
``import hierlm`` once, then per model a REML fit, ``summary()`` (Satterthwaite df),
``anova()``, ``confint(method="profile")`` and one NUTS fit (``--draws``/``--tune``,
2 chains).  The same data files go to one ``Rscript`` run doing ``lmer``,
``summary`` (lmerTest), ``anova`` and ``confint(method="profile")``.  Wall times per
step and the ratio hierlm / R go to ``benchmarks/session_results.md`` (``--out``).
With ``--bambi-path DIR`` (bambi installed by ``pip install --target DIR bambi``, kept
out of hierlm's environment) one more fresh Python process fits the same five models with
bambi's NUTS (the same draws, tuning steps and 2 chains; the nested term written as
``(1 | a) + (1 | a:b)``, which is what ``(1 | a/b)`` means): its first fit of each new
model, against hierlm's.  Both sides also report the smallest bulk ESS over the fixed
effects and sigma and the number of divergent transitions, so that faster does not
hide worse.  A model structure whose compiled NUTS density is not on disk yet (the
first fit of that structure on an install, or after hierlm's graph-building code
changed) compiles it during its first fit; the NumPy density that small unstructured
models sample meanwhile is not available to the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "reference" / "data"
STEPS = ("fit", "summary", "anova", "confint", "nuts")


def _names(rng: np.random.Generator, k: int) -> list[str]:
    letters = list("abcdefghijklmnopqrstuvwxyz")
    return ["v" + "".join(rng.choice(letters, 6)) for _ in range(k)]


def make_models(seed: int, out: Path) -> list[dict[str, str]]:
    """Five (name, formula, csv) triples with fresh column names."""
    rng = np.random.default_rng(seed)
    models = []
    sleep = pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})
    y, x, g = _names(rng, 3)
    sleep.rename(columns={"Reaction": y, "Days": x, "Subject": g}).to_csv(out / "m1.csv",
                                                                          index=False)
    models.append({"name": "sleepstudy slopes", "formula": f"{y} ~ {x} + ({x} | {g})",
                   "csv": "m1.csv", "factors": [g]})
    cons, prod = np.repeat(np.arange(81), 16), np.tile(np.repeat(np.arange(8), 2), 81)
    info = np.tile([0, 1], 81 * 8)
    task = (prod + cons) % 8
    resp = (rng.normal(size=81)[cons] + 0.5 * rng.normal(size=8)[prod] + 0.2 * task
            + 0.2 * info + rng.normal(size=cons.size))
    y, c, p, i, t = _names(rng, 5)
    pd.DataFrame({y: resp, c: [f"c{v}" for v in cons], p: [f"p{v}" for v in prod],
                  i: [f"i{v}" for v in info], t: [f"t{v}" for v in task]}).to_csv(
        out / "m2.csv", index=False)
    models.append({"name": "ham-like: 16 fixed, crossed 81 x 8",
                   "formula": f"{y} ~ {t} * {i} + (1 | {c}) + (1 | {p})", "csv": "m2.csv",
                   "factors": [c, p, i, t]})
    pen = pd.read_csv(DATA / "penicillin.csv", dtype={"plate": str, "sample": str})
    y, a, b = _names(rng, 3)
    pen.rename(columns={"diameter": y, "plate": a, "sample": b}).to_csv(out / "m3.csv",
                                                                       index=False)
    models.append({"name": "penicillin crossed", "formula": f"{y} ~ 1 + (1 | {a}) + (1 | {b})",
                   "csv": "m3.csv", "factors": [a, b]})
    pas = pd.read_csv(DATA / "pastes.csv", dtype={"batch": str, "cask": str, "sample": str})
    y, a, b = _names(rng, 3)
    pas.rename(columns={"strength": y, "batch": a, "cask": b})[[y, a, b]].to_csv(
        out / "m4.csv", index=False)
    models.append({"name": "pastes nested", "formula": f"{y} ~ 1 + (1 | {a}/{b})",
                   "csv": "m4.csv", "factors": [a, b]})
    cw = pd.read_csv(DATA / "chickweight.csv", dtype={"Chick": str, "Diet": str})
    y, x, g, d = _names(rng, 4)
    cw.rename(columns={"weight": y, "Time": x, "Chick": g, "Diet": d})[[y, x, g, d]].to_csv(
        out / "m5.csv", index=False)
    models.append({"name": "chickweight slopes", "formula": f"{y} ~ {x} * {d} + ({x} | {g})",
                   "csv": "m5.csv", "factors": [g, d]})
    return models


HIERLM_SCRIPT = r"""
import json, sys, time, warnings
t0 = time.perf_counter()
import pandas as pd
import hierlm
out = {"import": time.perf_counter() - t0, "models": []}
spec = json.loads(sys.argv[1])
warnings.simplefilter("ignore")
for m in spec["models"]:
    data = pd.read_csv(spec["dir"] + "/" + m["csv"], dtype={f: str for f in m["factors"]})
    row = {}
    t = time.perf_counter()
    res = hierlm.fit(m["formula"], data)
    row["fit"] = time.perf_counter() - t
    t = time.perf_counter(); res.summary(); row["summary"] = time.perf_counter() - t
    t = time.perf_counter(); res.anova(); row["anova"] = time.perf_counter() - t
    t = time.perf_counter(); res.confint(method="profile"); row["confint"] = time.perf_counter() - t
    if spec["nuts"]:
        t = time.perf_counter()
        post = hierlm.fit(m["formula"], data, method="nuts", draws=spec["draws"],
                          tune=spec["tune"], chains=2, random_seed=1, progressbar=False)
        row["nuts"] = time.perf_counter() - t
        diag = post.nuts.diagnostics
        keep = [k for k in diag.index if str(k).startswith("beta[") or k == "sigma"]
        row["nuts_ess"] = float(diag.loc[keep, "ess_bulk"].min())
        row["nuts_div"] = int(post.nuts.divergences)
    out["models"].append(row)
    print(m["name"], {k: round(v, 3) for k, v in row.items()}, file=sys.stderr, flush=True)
out["total"] = time.perf_counter() - t0
print(json.dumps(out))
"""

R_SCRIPT = r"""
t0 <- proc.time()[["elapsed"]]
suppressMessages({library(lme4); library(lmerTest); library(jsonlite)})
spec <- fromJSON(commandArgs(trailingOnly = TRUE)[1])
res <- list(import = proc.time()[["elapsed"]] - t0, models = list())
el <- function() proc.time()[["elapsed"]]
for (i in seq_len(nrow(spec$models))) {
  m <- spec$models[i, ]
  d <- read.csv(file.path(spec$dir, m$csv))
  for (f in m$factors[[1]]) d[[f]] <- factor(d[[f]])
  row <- list()
  t <- el(); fit <- lmer(as.formula(m$formula), d, REML = TRUE); row$fit <- el() - t
  t <- el(); invisible(summary(fit)); row$summary <- el() - t
  t <- el(); invisible(anova(fit)); row$anova <- el() - t
  t <- el(); invisible(suppressWarnings(suppressMessages(confint(fit, method = "profile"))))
  row$confint <- el() - t
  res$models[[i]] <- row
}
res$total <- proc.time()[["elapsed"]] - t0
cat(toJSON(res, auto_unbox = TRUE, digits = NA))
"""


BAMBI_SCRIPT = r"""
import json, re, sys, time, warnings
spec = json.loads(sys.argv[1])
sys.path.insert(0, spec["bambi_path"])
t0 = time.perf_counter()
import pandas as pd
import bambi as bmb
import arviz as az
out = {"import": time.perf_counter() - t0, "models": []}
warnings.simplefilter("ignore")
nested = re.compile(r"\(1 \| (\w+)/(\w+)\)")
for m in spec["models"]:
    data = pd.read_csv(spec["dir"] + "/" + m["csv"], dtype={f: str for f in m["factors"]})
    formula = nested.sub(lambda g: f"(1 | {g[1]}) + (1 | {g[1]}:{g[2]})", m["formula"])
    t = time.perf_counter()
    model = bmb.Model(formula, data)
    idata = model.fit(draws=spec["draws"], tune=spec["tune"], chains=2, random_seed=1,
                      progressbar=False)
    row = {"nuts": time.perf_counter() - t}
    y = formula.split("~")[0].strip()
    names = [v for v in idata.posterior.data_vars
             if "|" not in v and not v.endswith("_sigma") and v != y + "_mean"]
    ess = az.ess(idata, var_names=names, method="bulk")
    row["nuts_ess"] = float(min(float(ess[v].min()) for v in names))
    row["nuts_div"] = int(idata.sample_stats["diverging"].sum())
    out["models"].append(row)
    print(m["name"], {k: round(v, 3) for k, v in row.items()}, file=sys.stderr, flush=True)
out["total"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def run_bambi(spec: dict, bambi_path: str) -> dict | None:
    """bambi's NUTS fits of the same models in a fresh process (None if it fails)."""
    p = subprocess.run([sys.executable, "-c", BAMBI_SCRIPT,
                        json.dumps(dict(spec, bambi_path=bambi_path))],
                       capture_output=True, text=True)
    sys.stderr.write(p.stderr[-2000:])
    if p.returncode != 0:
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_hierlm(spec: dict) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-c", HIERLM_SCRIPT, json.dumps(spec)], env=env,
                       capture_output=True, text=True, check=True)
    sys.stderr.write(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_r(spec: dict, tmp: Path) -> dict | None:
    if shutil.which("Rscript") is None:
        return None
    script = tmp / "session.R"
    script.write_text(R_SCRIPT)
    p = subprocess.run(["Rscript", str(script), json.dumps(spec)], capture_output=True,
                       text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-2000:])
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-nuts", action="store_true")
    ap.add_argument("--no-r", action="store_true")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--bambi-path", default=None,
                    help="folder bambi was pip-installed into with --target")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "session_results.md"))
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        models = make_models(seed, tmp)
        spec = {"dir": str(tmp), "models": models, "nuts": not args.no_nuts,
                "draws": args.draws, "tune": args.tune}
        h = run_hierlm(spec)
        r = None if args.no_r else run_r(spec, tmp)
        b = (run_bambi(spec, args.bambi_path)
             if args.bambi_path and not args.no_nuts else None)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = ["# A researcher's session: five new models, fresh process", "",
             f"Run {dt.datetime.now(dt.UTC).isoformat(timespec='minutes')} on "
             f"{platform.node()} ({os.cpu_count()} CPUs, load {load} at the end), Python "
             f"{platform.python_version()}; `python -m benchmarks.session "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}` (seed {seed}).  "
             "Wall seconds per step; R is lme4 + lmerTest in one `Rscript`.", "",
             "| model | step | hierlm (s) | R (s) | hierlm / R |", "|---|---|---|---|---|"]
    lines.append(f"| (start) | import | {h['import']:.2f} | "
                 f"{'n/a' if r is None else format(r['import'], '.2f')} | |")
    for i, m in enumerate(models):
        for step in STEPS:
            hv = h["models"][i].get(step)
            if hv is None:
                continue
            rv = None if r is None else r["models"][i].get(step)
            ratio = "" if rv in (None, 0) else f"{hv / rv:.2f}"
            lines.append(f"| {m['name']} | {step} | {hv:.3f} | "
                         f"{'n/a' if rv is None else format(rv, '.3f')} | {ratio} |")
    nuts = sum(row.get("nuts", 0.0) for row in h["models"])
    if nuts:
        lines.append(f"| (whole process) | total without NUTS | {h['total'] - nuts:.2f} | "
                     f"{'n/a' if r is None else format(r['total'], '.2f')} | "
                     f"{'' if r is None else format((h['total'] - nuts) / r['total'], '.2f')} |")
    lines.append(f"| (whole process) | total | {h['total']:.2f} | "
                 f"{'n/a' if r is None else format(r['total'], '.2f')} | "
                 f"{'' if r is None else format(h['total'] / r['total'], '.2f')} |")
    if b is not None:
        lines += ["", "First NUTS fit of each new model (2 chains, "
                  f"{args.draws} draws after {args.tune} tuning steps), each in its "
                  "program's one fresh process; ESS: the smallest bulk ESS over the fixed "
                  "effects and sigma.", "",
                  f"bambi's import took {b['import']:.2f} s (hierlm's: {h['import']:.2f} s).",
                  "", "| model | hierlm (s) | bambi (s) | bambi / hierlm | hierlm ESS | "
                  "bambi ESS | hierlm divergences | bambi divergences |",
                  "|---|---|---|---|---|---|---|---|"]
        for i, m in enumerate(models):
            hm, bm = h["models"][i], b["models"][i]
            lines.append(f"| {m['name']} | {hm['nuts']:.2f} | {bm['nuts']:.2f} | "
                         f"{bm['nuts'] / hm['nuts']:.1f} | {hm['nuts_ess']:.0f} | "
                         f"{bm['nuts_ess']:.0f} | {hm['nuts_div']} | {bm['nuts_div']} |")
        hn = sum(row["nuts"] for row in h["models"])
        bn = sum(row["nuts"] for row in b["models"])
        lines.append(f"| (all five) | {hn:.2f} | {bn:.2f} | {bn / hn:.1f} | | | | |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
