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
# # Nested geography: people in neighborhoods, in cities, in states
#
# Body-mass index (BMI) varies between states, between cities within a state and
# between neighborhoods within a city:
#
# $$\text{bmi} = \mu + s_{\text{state}} + c_{\text{city in state}} + n_{\text{neighborhood in city}} + \varepsilon,$$
#
# each effect normal with its own variance $\tau_S^2, \tau_C^2, \tau_N^2$, and
# $\varepsilon \sim N(0, \sigma^2)$. In lme4's syntax: `bmi ~ 1 + (1 | state/city/neighborhood)`,
# which expands to `(1 | state) + (1 | city:state) + (1 | neighborhood:city:state)`.
#
# The labels repeat across parents, as they do in real survey files: every state has a
# city called `C1`, every city a neighborhood called `N1`. That is why the nesting syntax
# matters.

# %%
import numpy as np
import pandas as pd

import hierlm
import hierlm.plots

TRUTH = {"mu": 27.0, "tau_S": 1.0, "tau_C": 1.5, "tau_N": 0.8, "sigma": 3.0}
rng = np.random.default_rng(7)
n_states, n_cities, n_nbhd, n_people = 30, 5, 4, 8
records = []
for s in range(n_states):
    s_eff = rng.normal(0, TRUTH["tau_S"])
    for c in range(n_cities):
        c_eff = rng.normal(0, TRUTH["tau_C"])
        for k in range(n_nbhd):
            n_eff = rng.normal(0, TRUTH["tau_N"])
            bmi = TRUTH["mu"] + s_eff + c_eff + n_eff + rng.normal(0, TRUTH["sigma"], n_people)
            # raw survey rows: one row per neighborhood, one column per respondent
            records.append({"state": f"S{s + 1}", "city": f"C{c + 1}",
                            "neighborhood": f"N{k + 1}",
                            **{f"person{j + 1}": round(v, 2) for j, v in enumerate(bmi)}})
raw = pd.DataFrame(records)
raw.iloc[:3, :7]

# %% [markdown]
# One row per person (long form) with `melt`:

# %%
people = raw.melt(id_vars=["state", "city", "neighborhood"], var_name="person",
                  value_name="bmi")
print(people.shape)
people.head()

# %% [markdown]
# ## The nested model

# %%
nested = hierlm.fit("bmi ~ 1 + (1 | state/city/neighborhood)", people)
print(nested.summary())

# %%
def sd_of(res: hierlm.FitResult, group: str) -> float:
    vc = res.varcorr
    return float(vc.loc[vc.group == group, "sd_or_corr"].iloc[0])

est = {"mu": nested.fixef["(Intercept)"], "tau_S": sd_of(nested, "state"),
       "tau_C": sd_of(nested, "city:state"), "tau_N": sd_of(nested, "neighborhood:city:state"),
       "sigma": nested.sigma}
pd.DataFrame({"truth": TRUTH, "nested": est})

# %% [markdown]
# Profile-likelihood intervals for every parameter. The checks this study makes: each
# true value inside its 95% interval, and the residual SD within 10%.

# %%
ci = nested.confint(method="profile")
ci

# %%
names = {"mu": "(Intercept)", "tau_S": "sd_(Intercept)|state",
         "tau_C": "sd_(Intercept)|city:state",
         "tau_N": "sd_(Intercept)|neighborhood:city:state", "sigma": "sigma"}
for key, name in names.items():
    assert ci.loc[name, "lower"] < TRUTH[key] < ci.loc[name, "upper"], key
assert abs(est["sigma"] / TRUTH["sigma"] - 1) < 0.1

# %% [markdown]
# ## What goes wrong without the nesting
#
# `(1 | state) + (1 | city) + (1 | neighborhood)` treats every `C1` as one city and every
# `N1` as one neighborhood, pooling unrelated places: the city and neighborhood variances
# are estimated near zero, and their variation is pushed into the residual.

# %%
crossed = hierlm.fit("bmi ~ 1 + (1 | state) + (1 | city) + (1 | neighborhood)", people)
pd.DataFrame({"nested": nested.varcorr.set_index("group")["sd_or_corr"],
              "labels as written": crossed.varcorr.set_index("group")["sd_or_corr"]})

# %%
assert sd_of(crossed, "city") < 0.5 * est["tau_C"]
assert crossed.sigma > nested.sigma
assert crossed.loglik < nested.loglik

# %% [markdown]
# Writing the full labels (`city = state:city`) is the same as the nesting syntax.

# %% [markdown]
# ## Variance decomposition with profile intervals
#
# The share of each level in the total variance, with the profile intervals above:

# %%
fig = hierlm.plots.variance_decomposition(nested, intervals=ci)

# %% [markdown]
# ## The marginal covariance between people
#
# Two people in the same city but different neighborhoods share the state and city
# effects: their covariance is $\tau_C^2 + \tau_S^2$. A person in another state shares
# nothing: covariance 0. Persons in states S1, S1, S2, cities C1, C1, C2 and
# neighborhoods N1, N2, N3:

# %%
rows = pd.DataFrame({"state": ["S1", "S1", "S2"], "city": ["C1", "C1", "C2"],
                     "neighborhood": ["N1", "N2", "N3"]})
mean, cov = nested.marginal_moments(rows)
cov

# %%
tS, tC, tN, s2 = est["tau_S"], est["tau_C"], est["tau_N"], nested.sigma ** 2
assert np.isclose(cov.iloc[0, 1], tC**2 + tS**2, rtol=1e-10)
assert cov.iloc[0, 2] == 0 and cov.iloc[1, 2] == 0
assert np.isclose(cov.iloc[0, 0], tS**2 + tC**2 + tN**2 + s2, rtol=1e-10)
