# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Real data: sleep deprivation (sleepstudy) and course evaluations (InstEval)
#
# Two data sets that ship with lme4. In `sleepstudy`, 18 subjects' reaction times were
# measured on 10 days of sleep restriction; in `InstEval`, 2,972 students rated 1,128
# lecturers in 73,421 evaluations. The lme4 reference numbers below come from lme4
# 1.1-31 (`tests/data/reference/`).

# %%
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

import hierlm
import hierlm.plots

DATA = Path("..") / "tests" / "data" / "reference" / "data"
if not DATA.exists():  # run from the repository root
    DATA = Path("tests") / "data" / "reference" / "data"

# %% [markdown]
# ## sleepstudy: REML

# %%
sleep = pd.read_csv(DATA / "sleepstudy.csv", dtype={"Subject": str})
model = hierlm.Model("Reaction ~ 1 + Days + (1 + Days | Subject)", sleep)
reml = model.fit("reml")
print(reml.summary())

# %%
# lme4: REML criterion 1743.628, fixed effects 251.405 and 10.467, SDs 24.741 and 5.922.
assert abs(reml.objective - 1743.6283) < 1e-3
assert np.allclose(reml.fixef, [251.4051, 10.4673], atol=1e-3)

# %% [markdown]
# Conditional modes of each subject's intercept and slope, with 95% intervals:

# %%
fig = hierlm.plots.caterpillar(reml)

# %% [markdown]
# ## Profile intervals and a likelihood-ratio test
#
# Is the random slope needed? `hierlm.anova` refits both models by ML (as lme4 does) and
# tests the difference; the slope's variance is on its boundary under the null, so the
# mixture p-value `p_boundary` is the correct reference.

# %%
small = hierlm.fit("Reaction ~ 1 + Days + (1 | Subject)", sleep)
lrt = hierlm.anova(small, reml)
lrt

# %%
assert lrt["p"].iloc[1] < 1e-6

# %%
ci = reml.confint(method="profile")
ci

# %%
# lme4's profile interval for the slope SD: (3.801, 8.753)
assert np.allclose(ci.loc["sd_Days|Subject"], [3.801, 8.753], rtol=2e-3)

# %%
fig = hierlm.plots.profile_zeta(reml.profile())

# %% [markdown]
# ## sleepstudy: NUTS, and REML beside it in one forest plot

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    nuts = model.fit("nuts", random_seed=1, progressbar=False)
print(nuts.summary())
assert nuts.extra["divergences"] == 0 and nuts.extra["max_rhat"] <= 1.01

# %% [markdown]
# ArviZ's diagnostics: $\hat R$, effective sample sizes, and the trace of the SDs.

# %%
az.summary(nuts.idata).head(8)

# %% [markdown]
# A parametric bootstrap of the REML fit (1,000 replicates, refitted on the compiled
# graph) has the same variable names and dimensions as the NUTS posterior
# (`to_datatree(bootstrap=...)`). `hierlm.plots.forest` sets REML (percentile intervals
# of the replicates) beside NUTS (equal-tailed posterior intervals) in one ArviZ forest
# plot:

# %%
boot = reml.bootstrap(1000, seed=1, progressbar=False)
fig = hierlm.plots.forest({"REML bootstrap": (reml, boot), "NUTS": nuts},
                          var_names=["sd_Subject", "corr_Subject", "sigma"])

# %%
boot.confint(0.95)

# %% [markdown]
# ## InstEval: a large crossed design
#
# Students (`s`) and lecturers (`d`) are crossed, departments (`dept`) cross both.

# %%
inst = pd.read_csv(DATA / "insteval.csv",
                   dtype={c: str for c in ["s", "d", "dept", "service", "studage", "lectage"]})
t0 = time.perf_counter()
big = hierlm.fit("y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)", inst)
print(f"fitted {big.nobs} rows in {time.perf_counter() - t0:.1f} s")
print(big.summary())

# %%
# lme4 1.1-31 gives REML criterion 237733.8 for this model.
assert abs(big.objective - 237733.83) < 0.1

# %%
fig = hierlm.plots.caterpillar(big, group="dept")
