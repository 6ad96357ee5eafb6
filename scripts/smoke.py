"""Smoke test of an installed hierlm: a REML and a NUTS fit of sleepstudy.

Run it with the interpreter of the environment to check, from outside the source
tree (so that the installed package is the one imported)::

    cd /tmp && /path/to/venv/bin/python /path/to/scripts/smoke.py

It fails (exit status 1) unless the REML fit reproduces lme4 1.1-31 and each NUTS fit,
with its progress bar on (the default sampler, nutpie, then PyMC's), gives a posterior
mean for ``Days`` near lme4's estimate.  ``--require-no-matplotlib`` also fails if matplotlib is
importable, so that a plain install is checked the way a user without it runs it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import sys
import time
from pathlib import Path

# lme4 1.1-31, lmer(Reaction ~ 1 + Days + (1 + Days | Subject), sleepstudy)
LME4_REMLCRIT = 1743.6283
LME4_FIXEF = {"(Intercept)": 251.4051, "Days": 10.4673}
LME4_SE_DAYS = 1.5458


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--require-no-matplotlib", action="store_true")
    ap.add_argument("--samplers", default="auto,pymc",
                    help="comma-separated: auto (nutpie), pymc")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    import hierlm

    t_import = time.perf_counter() - t0
    where = Path(hierlm.__file__).resolve().parent
    print(f"hierlm {hierlm.__version__} from {where} (import {t_import:.2f} s)", flush=True)
    if importlib.metadata.version("hierlm") != hierlm.__version__:
        print("package metadata and hierlm.__version__ disagree", file=sys.stderr)
        return 1
    if (Path.cwd() / "hierlm" / "__init__.py").exists():
        print("run this from outside the source tree", file=sys.stderr)
        return 1
    if args.require_no_matplotlib and importlib.util.find_spec("matplotlib") is not None:
        print("matplotlib is installed: this is not a plain install", file=sys.stderr)
        return 1
    df = hierlm.load_sleepstudy()
    formula = "Reaction ~ 1 + Days + (1 + Days | Subject)"

    t = time.perf_counter()
    reml = hierlm.fit(formula, df)
    print(f"REML fit {time.perf_counter() - t:.1f} s: REMLcrit {reml.objective:.4f}", flush=True)
    bad = [f"REML criterion {reml.objective:.4f} != lme4's {LME4_REMLCRIT}"] if abs(
        reml.objective - LME4_REMLCRIT) > 1e-3 else []
    bad += [f"fixef {k} {reml.fixef[k]:.4f} != lme4's {v}" for k, v in LME4_FIXEF.items()
            if abs(reml.fixef[k] - v) > 1e-3]

    for sampler in args.samplers.split(","):
        t = time.perf_counter()
        nuts = hierlm.fit(formula, df, method="nuts", draws=300, tune=300, chains=2,
                          random_seed=1, progressbar=True, sampler=sampler)
        print(f"\nNUTS fit ({nuts.nuts.sampler}) {time.perf_counter() - t:.1f} s: "
              f"posterior mean Days {nuts.fixef['Days']:.2f}", flush=True)
        if abs(nuts.fixef["Days"] - LME4_FIXEF["Days"]) > 3 * LME4_SE_DAYS:
            bad.append(f"NUTS ({sampler}) posterior mean of Days {nuts.fixef['Days']:.2f} is "
                       f"more than 3 SE from lme4's {LME4_FIXEF['Days']}")
    for msg in bad:
        print("FAIL:", msg, file=sys.stderr)
    print("smoke test " + ("failed" if bad else "passed"), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
