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
# # Repeated measures: choosing a covariance structure over visits
#
# A trial measures a symptom score on every patient at six weekly visits, in two arms.
# The scores of one patient are correlated, more strongly for visits close in time.
# lme4's `(1 | patient)` says every pair of visits is equally correlated; an unstructured
# `(0 + week | patient)` has 21 covariance parameters, which six visits measured once
# cannot identify beside the residual. Structured covariances sit in between
# (see the docs page on covariance structures): `ar1(0 + week | patient)` gives the
# patient's deviations at visits $j$ and $k$ the covariance $\tau^2 \rho^{|j-k|}$,
#
# $$\text{score}_{ij} = \beta_0 + \beta_1 t_j + \beta_2\, \text{drug}_i
#   + \beta_3\, t_j\, \text{drug}_i + b_{ij} + \varepsilon_{ij},\qquad
# \operatorname{Cov}(b_{ij}, b_{ik}) = \tau^2 \rho^{|j-k|},\quad
# \varepsilon_{ij} \sim N(0, \sigma^2).$$
#
# We simulate from that model with known values, compare it by AIC and
# likelihood-ratio tests with a random intercept, the heterogeneous `ar1(..., het=True)`
# and `toep`, and with the same AR(1) put on the residuals
# (`residual="ar1(t | patient)"`, nlme's `corAR1`).

# %%
import numpy as np
import pandas as pd

import hierlm

TRUTH = {"b0": 20.0, "b1": -0.5, "b2": 0.0, "b3": -0.6, "tau": 3.0, "rho": 0.7, "sigma": 1.0}
rng = np.random.default_rng(606)
n_patients, n_weeks = 90, 6
lag = np.abs(np.subtract.outer(np.arange(n_weeks), np.arange(n_weeks)))
G = TRUTH["tau"] ** 2 * TRUTH["rho"] ** lag
b = rng.multivariate_normal(np.zeros(n_weeks), G, size=n_patients)
rows = []
for i in range(n_patients):
    drug = i % 2
    for t in range(n_weeks):
        mu = TRUTH["b0"] + TRUTH["b1"] * t + TRUTH["b2"] * drug + TRUTH["b3"] * t * drug
        rows.append((f"p{i:02d}", "drug" if drug else "placebo", f"w{t}", t,
                     round(mu + b[i, t] + rng.normal(0, TRUTH["sigma"]), 2)))
data = pd.DataFrame(rows, columns=["patient", "arm", "week", "t", "score"])
data["arm"] = pd.Categorical(data["arm"], categories=["placebo", "drug"])
data.head()

# %% [markdown]
# ## Candidate structures
#
# All candidates share the fixed effects, so their REML criteria are comparable
# (REML likelihood-ratio tests and AIC between covariance models with the same fixed
# effects are what lme4's and nlme's users do). The parameter count `npar` counts each
# structure's own parameters: `ar1` has two ($\tau$, $\rho$), `ar1(het=True)` seven,
# `toep` eleven; the residual AR(1) model has the intercept's SD and $\phi$.

# %%
fixed = "score ~ t * arm"
candidates = {
    "(1 | patient)": hierlm.fit(f"{fixed} + (1 | patient)", data),
    "ar1": hierlm.fit(f"{fixed} + ar1(0 + week | patient)", data),
    "ar1, het": hierlm.fit(f"{fixed} + ar1(0 + week | patient, het=True)", data),
    "toep": hierlm.fit(f"{fixed} + toep(0 + week | patient)", data),
    "residual ar1": hierlm.fit(f"{fixed} + (1 | patient)", data, residual="ar1(t | patient)"),
}
table = pd.DataFrame({
    name: {"npar": len(r.fixef) + r.n_covariance_parameters + 1
           + (0 if r.residual_parameters is None else len(r.residual_parameters)),
           "-2 logLik (REML)": -2 * r.loglik, "AIC": r.aic}
    for name, r in candidates.items()}).T.sort_values("AIC")
table.round(2)

# %%
best = table.index[0]
print(best)
assert best == "ar1"
assert table.loc["ar1", "AIC"] < table.loc["(1 | patient)", "AIC"] - 10

# %% [markdown]
# `ar1` nests in its heterogeneous version (equal SDs) and in `toep` (the lag-$k$
# correlation equal to $\rho^k$), so likelihood-ratio tests compare them directly
# (`hierlm.anova` refits REML fits by ML first, as lme4's `anova` does, hence the
# different AIC):

# %%
lrt_het = hierlm.anova(candidates["ar1"], candidates["ar1, het"])
lrt_toep = hierlm.anova(candidates["ar1"], candidates["toep"])
pd.concat([lrt_het, lrt_toep.iloc[[1]]])[["npar", "aic", "loglik", "chisq", "df", "p"]]

# %%
# neither richer structure improves significantly on ar1 (the data were simulated from it)
assert lrt_het["p"].iloc[1] > 0.05 and lrt_toep["p"].iloc[1] > 0.05

# %% [markdown]
# ## The chosen model
#
# The structure's own parameters, with profile-likelihood intervals; the SD is on the
# response scale and `rho` is the lag-one correlation:

# %%
fit = candidates["ar1"]
ci = fit.confint("profile").iloc[:3]  # sd, rho, sigma; the fixed effects follow
summary = ci.assign(estimate=[*fit.covariance_parameters, fit.sigma],
                    truth=[TRUTH["tau"], TRUTH["rho"], TRUTH["sigma"]])
summary = summary[["estimate", "truth", "lower", "upper"]]
summary.round(3)

# %%
# the truth lies inside each 95% profile interval
assert all(summary["lower"] <= summary["truth"]) and all(summary["truth"] <= summary["upper"])
assert summary.loc["sigma", "lower"] == 0.0

# %% [markdown]
# The interval for $\sigma$ reaches its bound 0: with one measurement per visit, the
# measurement error shows only as the gap between a visit's variance and what the
# covariances at lags 1, 2, ... extrapolate to at lag 0, and an AR(1) term without
# measurement error is not rejected at the 5% level.  Replicated measurements per
# visit would pin $\sigma$ down.

# %% [markdown]
# `varcorr` reports the implied SDs and every pairwise correlation, as for an
# unstructured term; the correlations fall off as $\hat\rho^{|j-k|}$:

# %%
vc = fit.varcorr
corr = vc[vc["term2"].notna()].set_index(["term1", "term2"])["sd_or_corr"]
corr.loc[[("weekw0", "weekw1"), ("weekw0", "weekw2"), ("weekw0", "weekw5")]].round(3)

# %%
rho_hat = fit.covariance_parameters.iloc[1]
np.testing.assert_allclose(corr.loc[("weekw0", "weekw2")], rho_hat**2, rtol=1e-8)

# %% [markdown]
# `ranova()` tests the random part. A structured term is removed whole: dropping one
# week's column would change what $\rho$ measures, so there is no lmerTest-style
# column reduction of it (the table's note says so).

# %%
rt = fit.ranova()
print(rt.attrs["note"])
rt.round(3)

# %%
assert rt["p"].iloc[1] < 1e-10

# %% [markdown]
# ## The treatment effect
#
# The question of the trial is the difference in slopes, `t:armdrug`. Satterthwaite's
# t test under the chosen structure, beside the random-intercept model's, which
# ignores the decay of the correlation, and the residual-AR(1) model's. The random
# intercept treats late and early visits as equally correlated and so understates the
# uncertainty of a slope; the two AR(1) models agree closely:

# %%
rows_ct = {name: candidates[name].coef_table().loc["t:armdrug"]
           for name in ["ar1", "(1 | patient)", "residual ar1"]}
effect = pd.DataFrame(rows_ct).T[["estimate", "se", "df", "p"]]
effect.round(4)

# %%
assert abs(effect.loc["ar1", "estimate"] - TRUTH["b3"]) < 2.5 * effect.loc["ar1", "se"]
assert effect.loc["ar1", "p"] < 0.05
assert effect.loc["(1 | patient)", "se"] < effect.loc["ar1", "se"]
assert abs(effect.loc["residual ar1", "se"] / effect.loc["ar1", "se"] - 1) < 0.1
