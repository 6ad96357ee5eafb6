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
# # A full results section: a split-plot field trial
#
# Three varieties are sown on the whole plots of each of 8 blocks; each whole plot is
# split into four subplots that get 0, 0.2, 0.4 or 0.6 units of nitrogen (the design of
# nlme's `Oats`). The yield is
#
# $$y = \mu_{v,n} + b_{\text{block}} + w_{\text{plot in block}} + \varepsilon,$$
#
# with block and whole-plot effects normal with SDs $\tau_B$ and $\tau_W$ and
# $\varepsilon \sim N(0, \sigma^2)$. In lme4's syntax:
# `yield ~ variety * nitrogen + (1 | block/variety)`.
#
# The data are simulated with known truth, so every number below can be checked. The
# section reports what an applied paper would: the fitted model, estimated marginal
# means with Kenward–Roger df, Tukey-adjusted comparisons, a trend contrast, ICC and R²,
# and cluster-robust standard errors as a check on the variance model.

# %%
import warnings

import matplotlib
import numpy as np
import pandas as pd

import hierlm
import hierlm.plots

matplotlib.use("Agg")
rng = np.random.default_rng(11)
VARIETY = {"Golden": 0.0, "Marvel": 6.0, "Victory": -8.0}
NITRO = {"0": 0.0, "0.2": 19.0, "0.4": 34.0, "0.6": 44.0}
TRUTH = {"mu": 80.0, "tau_B": 12.0, "tau_W": 8.0, "sigma": 12.0}
rows = []
for b in range(8):
    b_eff = rng.normal(0, TRUTH["tau_B"])
    for v, v_eff in VARIETY.items():
        w_eff = rng.normal(0, TRUTH["tau_W"])
        for n, n_eff in NITRO.items():
            y = TRUTH["mu"] + v_eff + n_eff + b_eff + w_eff + rng.normal(0, TRUTH["sigma"])
            rows.append({"yield": round(y, 2), "variety": v, "nitrogen": n,
                         "block": f"B{b + 1}"})
field = pd.DataFrame(rows)
field.head()

# %% [markdown]
# ## The model and its F tests
#
# Kenward–Roger's F tests (pbkrtest's) put the variety test on the whole-plot stratum
# (about 14 denominator df) and the nitrogen and interaction tests on the subplot
# stratum (63 df), as the split-plot ANOVA does.

# %%
res = hierlm.fit("yield ~ variety * nitrogen + (1 | block/variety)", field)
print(res.varcorr.round(2).to_string(index=False))
res.anova(ddf="kenward-roger").round(3)

# %% [markdown]
# ## Estimated marginal means
#
# The means of each nitrogen level, averaged over the varieties with equal weights (as
# emmeans does), with Kenward–Roger df and 95% intervals.

# %%
e_n = res.emmeans("nitrogen")
e_n.table.round(2)

# %%
truth_n = {n: TRUTH["mu"] + np.mean(list(VARIETY.values())) + eff for n, eff in NITRO.items()}
dev = (e_n.table.set_index("nitrogen")["emmean"] - pd.Series(truth_n)) / e_n.table["se"].values
assert np.all(np.abs(dev) < 3), dev  # each mean within 3 SEs of the truth
dev.round(2)

# %% [markdown]
# Tukey-adjusted pairwise comparisons of the nitrogen levels, with simultaneous 95%
# intervals, and the polynomial trend (emmeans' `poly`: linear, quadratic, cubic).

# %%
pairs = e_n.pairs(intervals=True)
pairs.round(3)

# %%
trend = e_n.contrast("poly")
assert trend.set_index("contrast").loc["linear", "p"] < 1e-6
trend.round(4)

# %% [markdown]
# The interaction plot: each variety's nitrogen means (emmeans' `emmip`), and the
# pairwise differences with their Tukey intervals.

# %%
fig = hierlm.plots.emmeans(res.emmeans(["nitrogen", "variety"]))

# %%
fig = hierlm.plots.emmeans_pairs(e_n)

# %% [markdown]
# ## ICC and R²
#
# performance's ICC (the share of the variance, after the fixed effects, that lies
# between blocks and whole plots) and Nakagawa's marginal and conditional R².

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    icc, r2 = res.icc(), res.r2()
true_icc = (TRUTH["tau_B"] ** 2 + TRUTH["tau_W"] ** 2) / (
    TRUTH["tau_B"] ** 2 + TRUTH["tau_W"] ** 2 + TRUTH["sigma"] ** 2)
print(f"adjusted ICC {icc['adjusted']:.3f} (truth {true_icc:.3f}); "
      f"R2 marginal {r2['marginal']:.3f}, conditional {r2['conditional']:.3f}")
assert abs(icc["adjusted"] - true_icc) < 0.25

# %% [markdown]
# ## Cluster-robust standard errors
#
# clubSandwich's CR2 standard errors, clustered on the blocks, with their Satterthwaite
# df. With the variance model right, they are close to the model-based ones; with only
# 8 clusters their df are small, which is why the small-sample correction matters.

# %%
cr2 = res.coef_table(vcov="CR2")
kr = res.coef_table(ddf="kenward-roger")
pd.DataFrame({"se_model": kr["se"], "se_CR2": cr2["se"], "df_CR2": cr2["df"]}).round(3)

# %% [markdown]
# ## The results paragraph
#
# The numbers of the paragraph come straight from the tables above.

# %%
lin = trend.set_index("contrast").loc["linear"]
big = pairs.set_index("contrast").loc["nitrogen0 - nitrogen0.6"]  # emmeans' labels
text = (
    f"Yield rose with nitrogen (linear trend {lin['estimate']:.1f}, "
    f"t({lin['df']:.0f}) = {lin['t']:.2f}, p < 0.001). Averaged over varieties, the "
    f"estimated marginal mean yield was {e_n.table['emmean'].iloc[0]:.1f} "
    f"(95% CI {e_n.table['lower'].iloc[0]:.1f} to {e_n.table['upper'].iloc[0]:.1f}) "
    f"without nitrogen and {e_n.table['emmean'].iloc[3]:.1f} "
    f"({e_n.table['lower'].iloc[3]:.1f} to {e_n.table['upper'].iloc[3]:.1f}) at 0.6 "
    f"(Kenward-Roger df {e_n.table['df'].iloc[0]:.1f}); the difference, "
    f"{-big['estimate']:.1f} (Tukey-adjusted 95% CI {-big['upper']:.1f} to "
    f"{-big['lower']:.1f}), was the largest of the six comparisons. Blocks and whole "
    f"plots together held {icc['adjusted']:.0%} of the residual variance (adjusted ICC); "
    f"the fixed effects explained {r2['marginal']:.0%} of the variance and the whole "
    f"model {r2['conditional']:.0%} (Nakagawa's R2).")
print(text)
