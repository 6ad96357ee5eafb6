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
# # Longitudinal blood pressure: random intercepts and random slopes
#
# Systolic blood pressure (SBP) is measured on the same people at several visits. Each
# person has their own level and their own rate of increase with age:
#
# $$\text{sbp}_{ij} = (a + \alpha_i) + (b + \beta_i)\, t_{ij} + \varepsilon_{ij},\qquad
# (\alpha_i, \beta_i) \sim N\!\left(0, \begin{pmatrix}\tau_a^2 & \tau_{ab}\\ \tau_{ab} & \tau_b^2\end{pmatrix}\right),\quad
# \varepsilon_{ij} \sim N(0, \sigma^2)$$
#
# with age coded as years beyond 20, $t = \text{age} - 20$, so that $a$ is the mean SBP at
# age 20. In lme4's syntax: `sbp ~ 1 + t + (1 + t | person)`.
#
# We simulate the data with known values, so we can check that REML and NUTS recover them.

# %%
import warnings

import numpy as np
import pandas as pd
from scipy import stats

import hierlm
import hierlm.plots

TRUTH = {"a": 110.0, "b": 0.6, "tau_a": 8.0, "tau_b": 0.5, "rho": -0.3, "sigma": 5.0}
rng = np.random.default_rng(2024)
n_people, n_visits = 150, 5
cov = np.array([[TRUTH["tau_a"] ** 2, TRUTH["rho"] * TRUTH["tau_a"] * TRUTH["tau_b"]],
                [TRUTH["rho"] * TRUTH["tau_a"] * TRUTH["tau_b"], TRUTH["tau_b"] ** 2]])
effects = rng.multivariate_normal([0.0, 0.0], cov, size=n_people)
first_age = rng.uniform(25, 55, size=n_people)

# The raw data come as one row per person, one pair of columns per visit (wide form).
wide = pd.DataFrame({"person": [f"P{i:03d}" for i in range(n_people)]})
for v in range(1, n_visits + 1):
    age = first_age + 2.0 * (v - 1) + rng.uniform(-0.3, 0.3, size=n_people)
    t = age - 20
    sbp = (TRUTH["a"] + effects[:, 0] + (TRUTH["b"] + effects[:, 1]) * t
           + rng.normal(0, TRUTH["sigma"], size=n_people))
    wide[f"age_{v}"] = age.round(1)
    wide[f"sbp_{v}"] = sbp.round(1)
wide.head()

# %% [markdown]
# Mixed models want one row per measurement (long form). `pandas.wide_to_long` reshapes:

# %%
long = (pd.wide_to_long(wide, stubnames=["age", "sbp"], i="person", j="visit", sep="_")
        .reset_index().sort_values(["person", "visit"], ignore_index=True))
long["t"] = long["age"] - 20
long.head()

# %% [markdown]
# ## REML

# %%
formula = "sbp ~ 1 + t + (1 + t | person)"
model = hierlm.Model(formula, long)
reml = model.fit("reml")
print(reml.summary())

# %% [markdown]
# The estimates are close to the values the data were simulated with:

# %%
vc = reml.varcorr
est = {
    "a": reml.fixef["(Intercept)"], "b": reml.fixef["t"],
    "tau_a": vc.loc[(vc.term1 == "(Intercept)") & vc.term2.isna() & (vc.group == "person"),
                    "sd_or_corr"].item(),
    "tau_b": vc.loc[(vc.term1 == "t") & vc.term2.isna(), "sd_or_corr"].item(),
    "rho": vc.loc[vc.term2.notna(), "sd_or_corr"].item(),
    "sigma": reml.sigma,
}
recovery = pd.DataFrame({"truth": TRUTH, "REML": est})
recovery

# %% [markdown]
# ## Tests and intervals
#
# Satterthwaite degrees of freedom and p-values for the fixed effects (as lmerTest), and
# profile-likelihood intervals for every parameter (as lme4's `confint`):

# %%
reml.coef_table()

# %%
ci = reml.confint(method="profile")
ci

# %% [markdown]
# The intercept at age 20 lies outside the ages observed (25-63), so $\tau_a$ and the
# correlation are the least precise estimates. The checks this study makes: every true
# value inside its 95% profile interval, and the slope and residual SD within 10%.

# %%
names = {"a": "(Intercept)", "b": "t", "tau_a": "sd_(Intercept)|person",
         "tau_b": "sd_t|person", "rho": "cor_t.(Intercept)|person", "sigma": "sigma"}
for key, name in names.items():
    assert ci.loc[name, "lower"] < TRUTH[key] < ci.loc[name, "upper"], key
for key in ("b", "sigma"):
    assert abs(est[key] / TRUTH[key] - 1) < 0.1, key

# %% [markdown]
# ## Interpreting the random slope
#
# The slopes $b + \beta_i$ are normal with mean $b$ and SD $\tau_b$, so the share of people
# whose SBP rises faster than $b + \tau_b$ per year is $1 - \Phi(1) \approx 16\%$.
# With the estimates: about 16% of people gain more than
# $\hat b + \hat\tau_b$ mmHg per year.

# %%
threshold = est["b"] + est["tau_b"]
share_model = 1 - stats.norm.cdf(1.0)
share_truth = float(np.mean(TRUTH["b"] + effects[:, 1] > threshold))
print(f"b + tau_b = {threshold:.2f} mmHg/year; model: {share_model:.1%} of people above it; "
      f"in the simulated population: {share_truth:.1%}")
assert abs(share_truth - share_model) < 0.08

# %% [markdown]
# ## The marginal covariance of three visits
#
# Integrating out the person effects, the visits of one person at $t = s$ and $t$ are
# correlated:
#
# $$\operatorname{Var}(y_t) = \tau_a^2 + \tau_b^2 t^2 + 2\tau_{ab} t + \sigma^2,\qquad
# \operatorname{Cov}(y_s, y_t) = \tau_a^2 + \tau_{ab}(s + t) + \tau_b^2 s t.$$
#
# `marginal_moments` computes the mean and covariance the fitted model implies for any
# rows; here three visits of one person at $t = -1, 0, 1$:

# %%
rows = pd.DataFrame({"t": [-1.0, 0.0, 1.0], "person": "P000"})
mean, cov_y = reml.marginal_moments(rows)
cov_y

# %%
ta, tb, rho_hat, s2 = est["tau_a"], est["tau_b"], est["rho"], reml.sigma ** 2
tab = rho_hat * ta * tb
t = rows["t"].to_numpy()
closed = ta**2 + tab * (t[:, None] + t[None, :]) + tb**2 * np.outer(t, t) + s2 * np.eye(3)
np.testing.assert_allclose(cov_y.to_numpy(), closed, rtol=1e-10)
closed

# %% [markdown]
# ## Subject trajectories and the conditional predictions

# %%
fig = hierlm.plots.trajectories(reml, long, x="t", group="person")

# %% [markdown]
# Predictions for a new visit of known people (conditional on their random effects) and
# for a new person (population level), with prediction intervals:

# %%
new = pd.DataFrame({"t": [30.0, 30.0], "person": ["P000", "P001"]})
reml.predict(new, interval="prediction")

# %%
reml.predict(pd.DataFrame({"t": [30.0]}), re_form="~0", interval="confidence")

# %% [markdown]
# ## Serially correlated errors: AR(1) residuals
#
# Above, the errors of one person are independent once their level and slope are known.
# Measurements close in time often share more than that (a stressful season, a new
# medication), so the error of one visit carries over to the next:
# $\varepsilon_{ij} = \phi\, \varepsilon_{i,j-1} + \sqrt{1 - \phi^2}\, \sigma z_{ij}$.
# That is an R-side structure (see the docs page on residual structures): nlme's
# `corAR1`, `residual="ar1(visit | person)"` in hierlm. We simulate the same people
# again with AR(1) errors, $\phi = 0.6$, and let a likelihood-ratio test decide.

# %%
rng_ar = np.random.default_rng(7)
phi_true = 0.6
z = rng_ar.normal(size=(n_people, n_visits))
e = np.empty_like(z)
e[:, 0] = z[:, 0]
for v in range(1, n_visits):
    e[:, v] = phi_true * e[:, v - 1] + np.sqrt(1 - phi_true**2) * z[:, v]
who = long["person"].str[1:].astype(int).to_numpy()
serial = long.assign(sbp=TRUTH["a"] + effects[who, 0] + (TRUTH["b"] + effects[who, 1]) * long["t"]
                     + TRUTH["sigma"] * e[who, long["visit"].to_numpy() - 1])
iid_fit = hierlm.fit(formula, serial)
ar1_fit = hierlm.fit(formula, serial, residual="ar1(visit | person)")
lrt = hierlm.anova(iid_fit, ar1_fit)
lrt[["npar", "aic", "bic", "loglik", "chisq", "df", "p"]]

# %%
phi_ci = ar1_fit.confint("profile")
print(ar1_fit.residual_parameters.round(3).to_dict(), phi_ci.round(3).values.tolist())
# the test rejects independent errors, and the interval for phi lies well above 0
assert lrt["p"].iloc[1] < 1e-3 and lrt["aic"].iloc[1] < lrt["aic"].iloc[0]
assert phi_ci.loc["rho", "lower"] > 0.3

# %% [markdown]
# With five visits per person, $\phi$ and the person-level intercept variance trade off:
# a slowly fading AR(1) correlation looks much like a shared level, so the estimate of
# $\phi$ is imprecise here (nlme's `lme(..., correlation = corAR1(form = ~ visit |
# person))` on the same data reaches $\phi = 0.759$ at a slightly higher $-2\log L$).
# More visits per person separate the two.

# %% [markdown]
# With AR(1) errors the marginal covariance of three visits of one person gains
# $\sigma^2 \phi^{|j - k|}$ between visits $j$ and $k$ in place of $\sigma^2$ on the
# diagonal only:

# %%
rows3 = pd.DataFrame({"t": [-1.0, 0.0, 1.0], "visit": [1, 2, 3], "person": "P000"})
_, cov_ar = ar1_fit.marginal_moments(rows3)
vc = ar1_fit.varcorr
ta2 = vc.loc[(vc.term1 == "(Intercept)") & vc.term2.isna() & (vc.group == "person"),
             "variance_or_cov"].item()
tb2 = vc.loc[(vc.term1 == "t") & vc.term2.isna(), "variance_or_cov"].item()
tab = vc.loc[vc.term2.notna(), "variance_or_cov"].item()
phi_hat = ar1_fit.residual_parameters["rho"]
t3, v3 = rows3["t"].to_numpy(), rows3["visit"].to_numpy()
closed_ar = (ta2 + tab * (t3[:, None] + t3[None, :]) + tb2 * np.outer(t3, t3)
             + ar1_fit.sigma**2 * phi_hat ** np.abs(v3[:, None] - v3[None, :]))
np.testing.assert_allclose(cov_ar.to_numpy(), closed_ar, rtol=1e-10)
cov_ar

# %% [markdown]
# ## NUTS
#
# The same likelihood, sampled: hierlm samples only $\beta$, $\sigma$ and the covariance
# parameters, and draws the random effects exactly from their conditional distribution.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    nuts = model.fit("nuts", random_seed=1, progressbar=False)
print(nuts.summary())

# %%
nuts_vc = nuts.varcorr
nuts_est = {
    "a": nuts.fixef["(Intercept)"], "b": nuts.fixef["t"],
    "tau_a": nuts_vc.loc[(nuts_vc.term1 == "(Intercept)") & nuts_vc.term2.isna()
                         & (nuts_vc.group == "person"), "sd_or_corr"].item(),
    "tau_b": nuts_vc.loc[(nuts_vc.term1 == "t") & nuts_vc.term2.isna(), "sd_or_corr"].item(),
    "rho": nuts_vc.loc[nuts_vc.term2.notna(), "sd_or_corr"].item(),
    "sigma": nuts.sigma,
}
recovery["NUTS"] = pd.Series(nuts_est)
recovery

# %%
# NUTS agrees with REML within the REML profile intervals, and recovers b and sigma.
for key, name in names.items():
    assert ci.loc[name, "lower"] < nuts_est[key] < ci.loc[name, "upper"], key
for key in ("b", "sigma"):
    assert abs(nuts_est[key] / TRUTH[key] - 1) < 0.1, key
assert nuts.extra["divergences"] == 0 and nuts.extra["max_rhat"] <= 1.01
