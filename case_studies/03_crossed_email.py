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
# # Crossed factors: email between senders and receivers
#
# In an organization, every person sends email to many others and receives from many.
# The (log) volume from sender $i$ to receiver $j$ depends on how much $i$ writes and how
# much $j$ is written to:
#
# $$y_{ij} = \mu + a_i + b_j + \varepsilon_{ij},\quad a_i \sim N(0, \tau_a^2),\;
# b_j \sim N(0, \tau_b^2),\; \varepsilon_{ij} \sim N(0, \sigma^2).$$
#
# Senders and receivers are *crossed*, not nested: `y ~ 1 + (1 | sender) + (1 | receiver)`.

# %%
import warnings

import arviz as az
import numpy as np
import pandas as pd

import hierlm

TRUTH = {"mu": 2.0, "tau_a": 0.8, "tau_b": 0.5, "sigma": 0.6}
rng = np.random.default_rng(11)
n = 40
people = [f"u{i:02d}" for i in range(n)]
a = rng.normal(0, TRUTH["tau_a"], n)
b = rng.normal(0, TRUTH["tau_b"], n)
y = TRUTH["mu"] + a[:, None] + b[None, :] + rng.normal(0, TRUTH["sigma"], (n, n))
# The raw data: a sender x receiver matrix of log volumes; nobody mails themselves, and
# a quarter of the pairs never exchanged mail.
y[np.eye(n, dtype=bool)] = np.nan
y[rng.random((n, n)) < 0.25] = np.nan
matrix = pd.DataFrame(y.round(3), index=pd.Index(people, name="sender"), columns=people)
matrix.iloc[:4, :6]

# %%
pairs = (matrix.reset_index().melt(id_vars="sender", var_name="receiver",
                                   value_name="log_volume")
         .dropna(subset=["log_volume"]).reset_index(drop=True))
print(pairs.shape)
pairs.head()

# %% [markdown]
# ## REML

# %%
model = hierlm.Model("log_volume ~ 1 + (1 | sender) + (1 | receiver)", pairs)
reml = model.fit("reml")
print(reml.summary())

# %%
vc = reml.varcorr.set_index("group")["sd_or_corr"]
est = {"mu": reml.fixef["(Intercept)"], "tau_a": vc["sender"], "tau_b": vc["receiver"],
       "sigma": reml.sigma}
recovery = pd.DataFrame({"truth": TRUTH, "REML": est})
recovery

# %%
assert abs(est["mu"] - TRUTH["mu"]) < 3 * reml.fixef_se["(Intercept)"]
for k in ("tau_a", "tau_b"):
    assert abs(est[k] / TRUTH[k] - 1) < 0.35, k
assert abs(est["sigma"] / TRUTH["sigma"] - 1) < 0.1

# %% [markdown]
# ## The marginal covariance rules
#
# Two pairs with the same sender share $a_i$: covariance $\tau_a^2$. The same receiver:
# $\tau_b^2$. Neither: 0.

# %%
rows = pd.DataFrame({"sender": ["u00", "u00", "u01", "u02"],
                     "receiver": ["u05", "u06", "u05", "u07"]})
mean, cov = reml.marginal_moments(rows)
cov

# %%
ta2, tb2, s2 = est["tau_a"] ** 2, est["tau_b"] ** 2, reml.sigma ** 2
np.testing.assert_allclose(cov.iloc[0, 1], ta2, rtol=1e-10)   # same sender
np.testing.assert_allclose(cov.iloc[0, 2], tb2, rtol=1e-10)   # same receiver
assert cov.iloc[0, 3] == 0 and cov.iloc[1, 2] == 0            # nothing shared
np.testing.assert_allclose(cov.iloc[0, 0], ta2 + tb2 + s2, rtol=1e-10)

# %% [markdown]
# ## NUTS against REML

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    nuts = model.fit("nuts", random_seed=3, progressbar=False)
nvc = nuts.varcorr.set_index("group")["sd_or_corr"]
recovery["NUTS"] = pd.Series({"mu": nuts.fixef["(Intercept)"], "tau_a": nvc["sender"],
                              "tau_b": nvc["receiver"], "sigma": nuts.sigma})
recovery

# %%
print(nuts.summary())
assert nuts.extra["divergences"] == 0 and nuts.extra["max_rhat"] <= 1.01
for k in ("tau_a", "tau_b", "sigma"):
    assert abs(recovery.loc[k, "NUTS"] / TRUTH[k] - 1) < 0.35, k

# %% [markdown]
# The posterior of the two SDs, from ArviZ:

# %%
az.summary(nuts.idata).head(6)
