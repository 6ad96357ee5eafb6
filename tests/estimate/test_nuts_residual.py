"""NUTS with residual structure: the log density against a dense Gaussian marginal."""

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import hierlm
from hierlm.design.residual_design import build_residual
from hierlm.errors import MethodError
from hierlm.estimate.nuts_residual import build_residual_model, residual_classes
from hierlm.objective.gram import term_matrix
from hierlm.objective.residual_classes import MAX_CLASSES


def _data(seed=0, n_sub=12, n_vis=6, phi=0.6):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sub):
        b = rng.normal(0, 1.0)
        e = np.zeros(n_vis)
        e[0] = rng.normal()
        for t in range(1, n_vis):
            e[t] = phi * e[t - 1] + np.sqrt(1 - phi**2) * rng.normal()
        grp = "b" if s % 2 else "a"
        sd = 1.5 if grp == "b" else 1.0
        for t in range(n_vis):
            if (s, t) in ((1, 2), (4, 3)):
                continue  # gaps in the visit index
            rows.append({"subject": f"s{s}", "visit": t, "x": t / n_vis, "grp": grp,
                         "y": 1.0 + 0.5 * t / n_vis + b + sd * e[t]})
    return pd.DataFrame(rows)


def _dense_logp(d, design, rd, beta, sigma, sd_int, phi, delta):
    n = len(d)
    Z = term_matrix(design.terms[0]).toarray()
    s = np.exp(rd.V @ delta) if rd.V.shape[1] else np.ones(n)
    C = np.eye(n) if rd.spec is None else np.zeros((n, n))
    for g in np.unique(rd.group) if rd.spec is not None else []:
        idx = np.flatnonzero(rd.group == g)
        t = rd.time[idx]
        C[np.ix_(idx, idx)] = phi ** np.abs(np.subtract.outer(t, t))
    V = sigma**2 * (s[:, None] * C * s[None, :]) + sd_int**2 * Z @ Z.T
    ll = st.multivariate_normal(design.X @ beta, V).logpdf(design.y)
    return ll


@pytest.mark.parametrize("residual,sig", [("ar1(visit | subject)", None),
                                          ("ar1(visit | subject)", "~ grp"),
                                          (None, "~ grp")])
def test_log_density_matches_dense_marginal(residual, sig):
    d = _data()
    design = hierlm.build_design("y ~ x + (1 | subject)", d)
    rd = build_residual(residual, sig, d, design)
    model = build_residual_model(design, rd)
    logp = model.compile_logp(jacobian=False)
    pr = hierlm.estimate.priors.resolve_priors(design, None)
    rng = np.random.default_rng(3)
    vals, dense = [], []
    for _ in range(4):
        beta = rng.normal(1.0, 0.3, size=2)
        sigma, sd_int = rng.uniform(0.5, 2.0), rng.uniform(0.3, 2.0)
        phi = rng.uniform(-0.8, 0.9) if residual else 0.0
        delta = rng.normal(0, 0.5, size=rd.V.shape[1])
        point = {"beta": beta, "sigma_log__": np.log(sigma),
                 "sd_subject_log__": np.log([sd_int])}
        prior = (st.norm(pr.beta_mu, pr.beta_sigma).logpdf(beta).sum()
                 + np.log(2) + st.t(pr.sigma_nu, scale=pr.sigma_scale).logpdf(sigma)
                 + st.halfnorm(scale=pr.sd_scale[0]).logpdf(sd_int).sum())
        if residual:
            point["ar1_phi_interval__"] = np.log((phi + 1) / (1 - phi))
            prior += np.log(0.5)
        if rd.V.shape[1]:
            point["log_sd_ratio"] = delta
            prior += st.norm(0, 1).logpdf(delta).sum()
        vals.append(float(logp(point)))
        dense.append(_dense_logp(d, design, rd, beta, sigma, sd_int, phi, delta) + prior)
    vals, dense = np.array(vals), np.array(dense)
    np.testing.assert_allclose(np.diff(vals), np.diff(dense), rtol=1e-8,
                               atol=1e-8 * np.abs(dense).max())
    np.testing.assert_allclose(vals, dense, rtol=1e-8)


def test_short_run_recovers_phi():
    d = _data(seed=11, n_sub=60, n_vis=8, phi=0.6)
    design = hierlm.build_design("y ~ x + (1 | subject)", d)
    rd = build_residual("ar1(visit | subject)", "~ grp", d, design)
    from hierlm.estimate.nuts_residual import sample_residual

    idata = sample_residual(design, rd, draws=300, tune=300, chains=2, random_seed=5)
    phi = idata.posterior["ar1_phi"].values.ravel()
    print(f"phi {phi.mean():.4f} sd {phi.std():.4f}")
    assert abs(phi.mean() - 0.6) < 3 * phi.std()
    assert phi.std() < 0.15
    ratio = idata.posterior["log_sd_ratio"].sel(sigma_term="grpb").values.ravel()
    print(f"log ratio {ratio.mean():.4f} sd {ratio.std():.4f}")
    assert abs(ratio.mean() - np.log(1.5)) < 3 * ratio.std()


@pytest.mark.parametrize("residual,sig", [("car1(t | subject)", None),
                                          ("car1(t | subject)", "~ z"),
                                          (None, "~ z")])
def test_many_classes_log_density_matches_dense_marginal(residual, sig):
    """Real times / a numeric SD covariate: more row classes than MAX_CLASSES, so the
    graph sums sparse class matrices; its log density against the dense marginal."""
    d = _data(n_sub=20)
    rng = np.random.default_rng(0)
    d["t"] = d["visit"] + rng.uniform(0, 0.9, len(d))
    d["z"] = rng.uniform(-1, 1, len(d))
    design = hierlm.build_design("y ~ x + (1 | subject)", d)
    rd = build_residual(residual, sig, d, design)
    cg = residual_classes(design, rd)
    assert cg.sparse and len(cg.first) > MAX_CLASSES
    model = build_residual_model(design, rd)
    logp = model.compile_logp(jacobian=False)
    dlogp = model.compile_dlogp(jacobian=False)
    pr = hierlm.estimate.priors.resolve_priors(design, None)
    vals, dense = [], []
    for _ in range(4):
        beta = rng.normal(1.0, 0.3, size=2)
        sigma, sd_int = rng.uniform(0.5, 2.0), rng.uniform(0.3, 2.0)
        phi = rng.uniform(0.05, 0.95) if residual else 0.0
        delta = rng.normal(0, 0.5, size=rd.V.shape[1])
        point = {"beta": beta, "sigma_log__": np.log(sigma),
                 "sd_subject_log__": np.log([sd_int])}
        prior = (st.norm(pr.beta_mu, pr.beta_sigma).logpdf(beta).sum()
                 + np.log(2) + st.t(pr.sigma_nu, scale=pr.sigma_scale).logpdf(sigma)
                 + st.halfnorm(scale=pr.sd_scale[0]).logpdf(sd_int).sum())
        if residual:
            point["car1_phi_interval__"] = np.log(phi / (1 - phi))  # Uniform(0, 1)
        if rd.V.shape[1]:
            point["log_sd_ratio"] = delta
            prior += st.norm(0, 1).logpdf(delta).sum()
        vals.append(float(logp(point)))
        dense.append(_dense_logp(d, design, rd, beta, sigma, sd_int, phi, delta) + prior)
        # the gradient (sparse product differentiated in its weights) by central differences
        x = model.initial_point()
        x.update({k: np.asarray(v, dtype=float) for k, v in point.items()})
        grad = dlogp(x)
        k = "car1_phi_interval__" if residual else "log_sd_ratio"
        step = np.zeros_like(x[k])
        step.flat[0] = 1e-5
        up, down = dict(x), dict(x)
        up[k], down[k] = x[k] + step, x[k] - step
        fd = (float(logp(up)) - float(logp(down))) / 2e-5
        at = model.initial_point()
        offset = sum(np.size(at[n]) for n in list(at)[:list(at).index(k)])
        assert grad[offset] == pytest.approx(fd, rel=1e-5, abs=1e-6)
    vals, dense = np.array(vals), np.array(dense)
    np.testing.assert_allclose(vals, dense, rtol=1e-8)


def test_cs_with_a_numeric_sd_column_matches_dense_marginal():
    """cs with one SD level per row (too many classes for residual_cs_classes): the
    graph sums the rows' and row pairs' matrices; its log-likelihood against the dense
    marginal, and its gradient in rho and delta against central differences."""
    from hierlm.objective.residual_cs_pairs import CSPairGram

    d = _data(n_sub=20)
    d["t"] = d["visit"] + np.random.default_rng(0).uniform(0, 0.9, len(d))
    design = hierlm.build_design("y ~ x + (1 | subject)", d)
    rd = build_residual("cs(1 | subject)", "~ t", d, design)
    assert isinstance(residual_classes(design, rd), CSPairGram)
    model = build_residual_model(design, rd)
    names = [v.name for v in model.unobserved_value_vars]
    constrained = model.compile_fn(model.unobserved_value_vars, inputs=model.value_vars,
                                   on_unused_input="ignore")
    loglik = model.compile_logp(vars=model.potentials, jacobian=False)
    dlogp = model.compile_dlogp(jacobian=False)
    logp = model.compile_logp(jacobian=False)
    Z = term_matrix(design.terms[0]).toarray()
    subj = d["subject"].to_numpy()
    same = subj[:, None] == subj[None, :]
    rng = np.random.default_rng(2)
    at = model.initial_point()
    for _ in range(3):
        point = {k: v + 0.5 * rng.normal(size=np.shape(v)) for k, v in at.items()}
        v = dict(zip(names, constrained(point), strict=True))
        rho = float(v["cs_rho"])
        s = np.exp(rd.V @ v["log_sd_ratio"])
        C = np.where(same, rho, 0.0) + (1.0 - rho) * np.eye(len(d))
        V = (v["sigma"] ** 2 * s[:, None] * C * s[None, :]
             + float(v["sd_subject"][0]) ** 2 * Z @ Z.T)
        dense = st.multivariate_normal(design.X @ v["beta"], V).logpdf(design.y)
        np.testing.assert_allclose(float(loglik(point)), dense, rtol=1e-8)
        grad = dlogp(point)
        for k in ("cs_rho_interval__", "log_sd_ratio"):
            up, down = dict(point), dict(point)
            step = np.zeros_like(np.asarray(point[k], dtype=float))
            step.flat[0] = 1e-5
            up[k], down[k] = point[k] + step, point[k] - step
            fd = (float(logp(up)) - float(logp(down))) / 2e-5
            offset = sum(np.size(at[n]) for n in list(at)[:list(at).index(k)])
            assert grad[offset] == pytest.approx(fd, rel=1e-5, abs=1e-6)


def test_prior_weights_refused_clearly():
    d = _data()
    w = np.linspace(1.0, 2.0, len(d))
    with pytest.raises(MethodError, match="nuts.*prior weights"):
        hierlm.fit("y ~ x + (1 | subject)", d.assign(w=w), method="nuts",
                   residual="cs(1 | subject)", weights="w")


def test_likelihood_with_correlated_slopes_matches_dense_marginal():
    d = _data()
    design = hierlm.build_design("y ~ x + (x | subject)", d)
    rd = build_residual("ar1(visit | subject)", "~ grp", d, design)
    model = build_residual_model(design, rd)
    rng = np.random.default_rng(0)
    point = model.initial_point()
    for k in point:
        point[k] = point[k] + 0.3 * rng.normal(size=np.shape(point[k]))
    names = [v.name for v in model.unobserved_value_vars]
    constrained = model.compile_fn(model.unobserved_value_vars, inputs=model.value_vars,
                                   on_unused_input="ignore")
    v = dict(zip(names, constrained(point), strict=True))
    sd, L = v["sd_subject"], v["chol_corr_subject"]
    assert abs(L[1, 0]) > 0.05  # a correlated point
    Sig = (sd[:, None] * L) @ (sd[:, None] * L).T
    Z = term_matrix(design.terms[0]).toarray()
    n = len(d)
    s = np.exp(rd.V @ v["log_sd_ratio"])
    C = np.zeros((n, n))
    for g in np.unique(rd.group):
        i = np.flatnonzero(rd.group == g)
        C[np.ix_(i, i)] = v["ar1_phi"] ** np.abs(np.subtract.outer(rd.time[i], rd.time[i]))
    V = (v["sigma"] ** 2 * s[:, None] * C * s[None, :]
         + Z @ np.kron(np.eye(design.terms[0].n_levels), Sig) @ Z.T)
    dense = st.multivariate_normal(design.X @ v["beta"], V).logpdf(design.y)
    loglik = model.compile_logp(vars=model.potentials, jacobian=False)(point)
    np.testing.assert_allclose(float(loglik), dense, rtol=1e-8)


@pytest.mark.parametrize("formula,sig", [("y ~ x + (1 | subject)", "~ grp"),
                                         ("y ~ x + (x | subject)", None)])
def test_cs_likelihood_matches_dense_marginal(formula, sig):
    """cs within plots (two per subject, unequal sizes), with and without varIdent."""
    d = _data()
    d["plot"] = d["subject"] + "_" + (d["visit"] % 2).astype(str)
    design = hierlm.build_design(formula, d)
    rd = build_residual("cs(1 | plot)", sig, d, design)
    model = build_residual_model(design, rd)
    rng = np.random.default_rng(1)
    names = [v.name for v in model.unobserved_value_vars]
    constrained = model.compile_fn(model.unobserved_value_vars, inputs=model.value_vars,
                                   on_unused_input="ignore")
    loglik = model.compile_logp(vars=model.potentials, jacobian=False)
    Z = term_matrix(design.terms[0]).toarray()
    plot = d["plot"].to_numpy()
    lo = -0.5  # groups of at most 3 rows: C is positive definite for rho > -1/2
    for rho in (-0.4, 0.2, 0.8):
        point = model.initial_point()
        for k in point:
            point[k] = point[k] + 0.5 * rng.normal(size=np.shape(point[k]))
        point["cs_rho_interval__"] = np.log((rho - lo) / (1.0 - rho))
        v = dict(zip(names, constrained(point), strict=True))
        assert float(v["cs_rho"]) == pytest.approx(rho, rel=1e-12)
        sd = np.atleast_1d(v["sd_subject"])
        if "chol_corr_subject" in v:
            L = sd[:, None] * v["chol_corr_subject"]
            Sig = L @ L.T
        else:
            Sig = np.diag(sd**2)
        s = np.exp(rd.V @ v["log_sd_ratio"]) if rd.V.shape[1] else np.ones(len(d))
        same = plot[:, None] == plot[None, :]
        C = np.where(same, rho, 0.0) + (1.0 - rho) * np.eye(len(d))
        V = (v["sigma"] ** 2 * s[:, None] * C * s[None, :]
             + Z @ np.kron(np.eye(design.terms[0].n_levels), Sig) @ Z.T)
        dense = st.multivariate_normal(design.X @ v["beta"], V).logpdf(design.y)
        np.testing.assert_allclose(float(loglik(point)), dense, rtol=1e-8)


@pytest.mark.parametrize("residual,sig", [("ar1(visit | subject)", "~ grp"),
                                          ("car1(t | subject)", "~ z"),
                                          ("cs(1 | subject)", "~ z")])
def test_nuts_takes_every_parameter(residual, sig):
    """The log density has a gradient in phi and the log SD ratios too, so PyMC puts
    every free variable under NUTS (no Slice / Metropolis step for them)."""
    from pymc.sampling.mcmc import assign_step_methods
    from pymc.step_methods.hmc.nuts import NUTS

    d = _data(n_sub=20)
    rng = np.random.default_rng(0)
    d["t"] = d["visit"] + rng.uniform(0, 0.9, len(d))
    d["z"] = rng.uniform(-1, 1, len(d))
    design = hierlm.build_design("y ~ x + (x | subject)", d)
    model = build_residual_model(design, build_residual(residual, sig, d, design))
    with model:
        _, selected = assign_step_methods(model)
    assert list(selected) == [NUTS]
    assert len(selected[NUTS]) == len(model.value_vars)
