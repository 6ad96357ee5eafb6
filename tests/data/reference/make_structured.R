# Regenerates glmmtmb_structured.json: REML and ML references for structured random-effect
# covariances (us, diag, homdiag, cs, homcs, ar1, hetar1, toep, homtoep), on lme4's scale,
# and the datasets data/structured_{sim5,sim6,orthodont}.csv.
# Needs R with glmmTMB, lme4, nlme, numDeriv and jsonlite
# (Debian: r-cran-glmmtmb r-cran-lme4 r-cran-nlme r-cran-numderiv r-cran-jsonlite).
# Run from this folder:  Rscript make_structured.R   (fields: structured.md)
# STRUCTURED_STARTS=<k> sets the number of random starts per case (default 10).
suppressMessages({library(glmmTMB); library(lme4); library(jsonlite); library(numDeriv)})
source("structured_brute.R")
n_random <- as.integer(Sys.getenv("STRUCTURED_STARTS", "10"))

# ---- data ----------------------------------------------------------------------------------
simulate <- function(seed, n_subj, n_time, sds, corr, sigma, drop = 0) {
  set.seed(seed)
  d <- expand.grid(rep = 1:2, time = sprintf("t%d", seq_len(n_time)),
                   subject = sprintf("s%02d", seq_len(n_subj)), stringsAsFactors = FALSE)
  d <- d[, c("subject", "time", "rep")]
  grp <- setNames(rep(c("A", "B"), length.out = n_subj), sprintf("s%02d", seq_len(n_subj)))
  d$grp <- unname(grp[d$subject])
  d$x <- round(rnorm(nrow(d)), 3)
  U <- matrix(rnorm(n_subj * n_time), n_subj) %*% chol(outer(sds, sds) * corr)
  u <- U[cbind(match(d$subject, sprintf("s%02d", seq_len(n_subj))),
               match(d$time, sprintf("t%d", seq_len(n_time))))]
  d$y <- round(10 + 0.5 * d$x + 1.0 * (d$grp == "B") + u + rnorm(nrow(d), sd = sigma), 4)
  if (drop > 0) d <- d[sort(sample(nrow(d), round((1 - drop) * nrow(d)))), ]
  d[, c("y", "x", "grp", "time", "subject", "rep")]
}
sim5 <- simulate(20261205, 50, 5, sds = c(1.0, 1.2, 1.4, 1.6, 1.8),
                 corr = 0.6^abs(outer(1:5, 1:5, "-")), sigma = 0.8)
sim6 <- simulate(20261206, 40, 6, sds = rep(1.5, 6),
                 corr = toeplitz(c(1, 0.5, 0.35, 0.3, 0.2, 0.1)), sigma = 1.0, drop = 0.05)
orth <- as.data.frame(nlme::Orthodont)
orth <- data.frame(distance = orth$distance, age = orth$age,
                   agef = sprintf("a%02d", orth$age), Subject = as.character(orth$Subject),
                   Sex = as.character(orth$Sex))
write.csv(sim5, "data/structured_sim5.csv", row.names = FALSE)
write.csv(sim6, "data/structured_sim6.csv", row.names = FALSE)
write.csv(orth, "data/structured_orthodont.csv", row.names = FALSE)
# fit what the CSV files hold (factors with R's sorted levels)
rd <- function(f) read.csv(file.path("data", f), stringsAsFactors = TRUE)
DATA <- list(sim5 = rd("structured_sim5.csv"), sim6 = rd("structured_sim6.csv"),
             orthodont = rd("structured_orthodont.csv"))
stopifnot(identical(levels(DATA$sim5$time), sprintf("t%d", 1:5)),
          identical(levels(DATA$orthodont$agef), c("a08", "a10", "a12", "a14")))

# ---- checks: the brute force against lme4, and glmmTMB's REML scale against lme4's ---------
lme4_point <- function(fit) {  # lme4's estimates as (G, sigma, beta)
  s <- sigma(fit)
  th <- getME(fit, "theta"); nc <- round((sqrt(8 * length(th) + 1) - 1) / 2)
  Tm <- matrix(0, nc, nc); Tm[lower.tri(Tm, diag = TRUE)] <- th
  list(G = s^2 * tcrossprod(Tm), sigma = s, beta = fixef(fit))
}
check_us <- function(dname, fixed, response, zt, group) {
  d <- DATA[[dname]]
  P <- make_problem(d, fixed, response, zt, group)
  f_lmer <- as.formula(sprintf("%s + (%s | %s)", fixed, sub("^~ *", "", zt), group))
  f_lmer <- update(f_lmer, as.formula(paste(response, "~ .")))
  f_tmb <- as.formula(sprintf("%s ~ %s + us(%s | %s)", response, sub("^~ *", "", fixed),
                              sub("^~ *", "", zt), group))
  out <- list()
  for (reml in c(TRUE, FALSE)) {
    fit <- lmer(f_lmer, d, REML = reml,
                control = lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12,
                                                                           maxfun = 1e5)))
    lc <- if (reml) REMLcrit(fit) else deviance(fit)
    pt <- lme4_point(fit)
    dense <- crit_dense(P, pt$G, pt$sigma, reml, pt$beta)
    fast <- crit_fast(P, pt$G / pt$sigma^2, reml)
    tmb <- glmmTMB(f_tmb, d, REML = reml)
    tmb_m2ll <- -2 * as.numeric(logLik(tmb))
    vc <- VarCorr(tmb)$cond[[1]]
    tmb_brute <- crit_dense(P, vc[, ], sigma(tmb), reml, fixef(tmb)$cond)
    key <- if (reml) "reml" else "ml"
    out[[key]] <- list(
      lme4_criterion = lc, dense_at_lme4_estimates = dense, blockwise_at_lme4_estimates = fast,
      dense_minus_lme4_rel = (dense - lc) / abs(lc), blockwise_minus_dense_rel = (fast - dense) / abs(dense),
      glmmTMB_minus2loglik = tmb_m2ll, glmmTMB_minus_lme4_rel = (tmb_m2ll - lc) / abs(lc),
      dense_at_glmmTMB_estimates = tmb_brute,
      glmmTMB_minus2loglik_minus_dense_at_its_estimates_rel = (tmb_m2ll - tmb_brute) / abs(tmb_brute))
    stopifnot(abs(dense - lc) / abs(lc) < 1e-8, abs(fast - dense) / abs(dense) < 1e-10)
  }
  list(data = sprintf("data/structured_%s.csv", dname), lme4_formula = deparse(f_lmer),
       glmmTMB_formula = deparse(f_tmb), reml = out$reml, ml = out$ml)
}
r <- c(0.5, 0.3, -0.2, 0.1); stopifnot(max(abs(acf_to_pacf(pacf_to_acf(r)) - r)) < 1e-14)
checks <- list(
  us_sim5 = check_us("sim5", "~ x + grp", "y", "~ 0 + time", "subject"),
  us_orthodont = check_us("orthodont", "~ age + Sex", "distance", "~ 1 + age", "Subject"),
  notes = paste(
    "dense_at_lme4_estimates: the dense n x n criterion of structured_brute.R at lme4's",
    "estimates; it must equal lme4's REMLcrit (REML) / deviance (ML) to 1e-8 relative.",
    "glmmTMB_minus_lme4_rel: glmmTMB's -2 logLik (REML=TRUE: its restricted likelihood)",
    "against lme4's criterion for the same unstructured model, each at its own optimum;",
    "glmmTMB_minus2loglik_minus_dense_at_its_estimates_rel compares glmmTMB's -2 logLik",
    "with the brute-force criterion at glmmTMB's own estimates, so any difference in scale",
    "(a constant such as p log(2 pi)) shows there independently of convergence."))

# ---- cases -----------------------------------------------------------------------------------
HIERLM <- c(us = "us(%s)", diag = "diag(%s)", homdiag = "diag(%s, hom=True)", cs = "cs(%s)",
            homcs = "cs(%s, hom=True)", ar1 = "ar1(%s)", hetar1 = "ar1(%s, het=True)",
            toep = "toep(%s)", homtoep = "toep(%s, hom=True)")
TMB <- c(us = "us", diag = "diag", homdiag = "diag", cs = "cs", homcs = "cs", ar1 = "ar1",
         hetar1 = NA, toep = "toep", homtoep = "toep")
tmb_map <- function(st, nc) switch(st, homdiag = rep(1, nc), homcs = c(rep(1, nc), 2),
                                   homtoep = c(rep(1, nc), 1 + seq_len(nc - 1)), NULL)

fit_glmmTMB <- function(st, d, fml, reml, nc) {
  if (is.na(TMB[[st]])) return(NULL)
  mp <- tmb_map(st, nc)
  warn <- character(0)
  fit <- withCallingHandlers(
    tryCatch(if (is.null(mp)) glmmTMB(fml, d, REML = reml)
             else glmmTMB(fml, d, REML = reml, map = list(theta = factor(mp))),
             error = function(e) { warn <<- c(warn, conditionMessage(e)); NULL }),
    warning = function(w) { warn <<- c(warn, conditionMessage(w)); invokeRestart("muffleWarning") })
  if (is.null(fit)) return(list(error = paste(unique(warn), collapse = "; ")))
  vc <- VarCorr(fit)$cond[[1]]
  list(m2ll = -2 * as.numeric(logLik(fit)), sd = unname(attr(vc, "stddev")),
       corr = unname(cov2cor(vc[, ])), sigma = sigma(fit), beta = fixef(fit)$cond,
       pdHess = isTRUE(fit$sdr$pdHess), convergence = fit$fit$convergence,
       warnings = unique(warn), map = !is.null(mp))
}

run_case <- function(dname, response, fixed, group, zt, st, reml, identifiable = TRUE,
                     ref_fit = NULL) {
  d <- DATA[[dname]]; s <- STRUCTURES[[st]]
  P <- make_problem(d, paste("~", fixed), response, paste("~", zt), group)
  nc <- P$nc; term <- sprintf("%s | %s", zt, group)
  tmb <- fit_glmmTMB(st, d, as.formula(sprintf("%s ~ %s + %s(%s)", response, fixed,
                                               if (is.na(TMB[[st]])) "us" else TMB[[st]], term)),
                     reml, nc)
  f <- function(par) crit_fast(P, par_to_Gr(par, s, nc), reml)
  starts <- list(); at_tmb <- NULL
  if (!is.null(tmb$m2ll)) {
    Gr <- outer(tmb$sd, tmb$sd) * tmb$corr / tmb$sigma^2
    at_tmb <- crit_fast(P, Gr, reml)
    starts <- c(starts, list(Gr_to_par(Gr, s, nc)))
  }
  if (!is.null(ref_fit)) {  # hetar1: also start from the homogeneous ar1 optimum
    Gr <- outer(ref_fit$sd, ref_fit$sd) * ref_fit$corr / ref_fit$sigma^2
    starts <- c(starts, list(Gr_to_par(Gr, s, nc)))
  }
  set.seed(7)
  npar <- n_par(s, nc)
  starts <- c(starts, lapply(seq_len(n_random), function(i) rnorm(npar, 0, 0.7)))
  opt <- optimize_from(f, starts)
  # a correlation parameter running off to +-infinity: the optimum lies on the boundary
  # (rho = 1, or a partial autocorrelation of +-1); optimize the rest with it fixed there
  k <- if (s$hom) 1 else nc
  far <- k + which(abs(opt$par[-seq_len(k)]) > 6)
  boundary <- NULL
  if (length(far)) {
    fixed_at <- sign(opt$par[far]) * Inf
    fb <- function(q) { pp <- opt$par; pp[far] <- fixed_at; pp[-far] <- q; f(pp) }
    ob <- optimize_from(fb, list(opt$par[-far]))
    if (ob$value <= opt$value + 1e-9 * abs(opt$value)) {
      pp <- opt$par; pp[far] <- fixed_at; pp[-far] <- ob$par
      boundary <- sprintf("boundary: correlation parameter(s) %s at their limit (criterion %.3g below the interior run)",
                          paste(far - k, collapse = ","), opt$value - ob$value)
      opt <- list(par = pp, value = ob$value, grad_max = ob$grad_max, step_left = ob$step_left,
                  start_values = opt$start_values)
    }
  }
  Gr <- par_to_Gr(opt$par, s, nc)
  full <- crit_fast(P, Gr, reml, full = TRUE)
  sd <- full$sigma * sqrt(diag(Gr)); corr <- cov2cor(Gr)
  n_tmb <- if (is.null(tmb$m2ll)) 0 else 1
  cmp <- NULL; src <- "brute force optim"
  if (!is.null(tmb$m2ll)) {
    cmp <- list(
      minus2loglik = tmb$m2ll, minus_reference = tmb$m2ll - opt$value,
      minus_reference_rel = (tmb$m2ll - opt$value) / abs(opt$value),
      brute_force_at_its_estimates = at_tmb,
      max_abs_diff_sd = max(abs(tmb$sd - sd)), max_abs_diff_corr = max(abs(tmb$corr - corr)),
      abs_diff_sigma = abs(tmb$sigma - full$sigma),
      max_abs_diff_fixef = max(abs(tmb$beta - full$beta)),
      pdHess = tmb$pdHess, convergence = tmb$convergence, warnings = tmb$warnings)
    ok <- cmp$minus_reference_rel < 1e-6 && max(cmp$max_abs_diff_sd, cmp$max_abs_diff_corr,
                                                 cmp$abs_diff_sigma) < 2e-3 &&
      cmp$max_abs_diff_fixef < 1e-4
    if (ok) src <- if (tmb$map) "glmmTMB map" else "glmmTMB"
  } else if (!is.null(tmb$error)) cmp <- list(error = tmb$error)
  notes <- c(
    if (!identifiable) paste("identifiable: false: one observation per", group, "and",
                             zt, "cell, so the term's variances trade with the residual",
                             "variance on a ridge; only the criterion (and fixef) is a reference,",
                             "sd/corr/sigma are one point of the ridge"),
    if (is.na(TMB[[st]])) "glmmTMB 1.1.5 has no hetar1 and map cannot express it",
    boundary,
    if (!is.null(tmb$m2ll) && src != "brute force optim")
      sprintf("glmmTMB%s agrees with the brute-force optimum (criterion %+.3g relative); values are the brute-force optimum started at glmmTMB's estimates and Newton-polished",
              if (tmb$map) " (with map)" else "", cmp$minus_reference_rel),
    if (!is.null(tmb$m2ll) && src == "brute force optim")
      sprintf("glmmTMB stopped short: its -2 logLik is %.6g above the brute-force optimum (%.3g relative); max |diff| sd %.3g, corr %.3g, sigma %.3g, fixef %.3g",
              cmp$minus_reference, cmp$minus_reference_rel, cmp$max_abs_diff_sd,
              cmp$max_abs_diff_corr, cmp$abs_diff_sigma, cmp$max_abs_diff_fixef),
    if (!is.null(tmb$error)) paste("glmmTMB failed:", tmb$error))
  within <- sum(opt$start_values - opt$value < 1e-6 * abs(opt$value))
  case <- list(
    name = sprintf("%s_%s_%s", dname, st, if (reml) "reml" else "ml"),
    data = sprintf("data/structured_%s.csv", dname),
    formula = sprintf("%s ~ %s + %s", response, fixed, sprintf(HIERLM[[st]], term)),
    reml = reml, structure = st, identifiable = identifiable, boundary = !is.null(boundary),
    criterion = opt$value, fixef = as.list(full$beta), fixef_se = as.list(full$se),
    sigma = full$sigma, sd = unname(sd), corr = unname(corr),
    params = own_params(Gr, s, full$sigma), cov_npar = npar, response = response,
    group = group, re_columns = colnames(P$Zt), nobs = P$n,
    source = src, notes = paste(notes, collapse = "; "),
    glmmTMB = cmp,
    optimizer = list(starts = length(starts), starts_from_glmmTMB = n_tmb,
                     `starts_within_1e-6_rel` = within, grad_max_abs = opt$grad_max,
                     newton_step_left = opt$step_left))
  cat(sprintf("%-28s crit %.10g  source %-18s tmb-ref %s  starts ok %d/%d grad %.2g step %.2g\n",
              case$name, case$criterion, src,
              if (is.null(cmp$minus_reference)) "-" else sprintf("%.3g", cmp$minus_reference),
              within, length(starts), opt$grad_max, opt$step_left))
  case
}

SPECS <- list(
  sim5 = list(response = "y", fixed = "x + grp", group = "subject", zt = "0 + time",
              structures = names(STRUCTURES)),
  sim6 = list(response = "y", fixed = "x + grp", group = "subject", zt = "0 + time",
              structures = names(STRUCTURES)),
  orthodont = list(response = "distance", fixed = "age + Sex", group = "Subject",
                   zt = "0 + agef", structures = c("ar1", "hetar1", "cs", "diag", "homcs"),
                   not_identifiable = c("diag", "homcs")),
  orthodont_us = list(data = "orthodont", response = "distance", fixed = "age + Sex",
                      group = "Subject", zt = "1 + age", structures = "us"))
only <- strsplit(Sys.getenv("STRUCTURED_ONLY", ""), ",")[[1]]
cases <- list()
for (key in names(SPECS)) {
  sp <- SPECS[[key]]; dname <- if (is.null(sp$data)) key else sp$data
  for (reml in c(TRUE, FALSE)) {
    ar1_fit <- NULL
    for (st in sp$structures) {
      if (length(only) && !(st %in% only)) next
      cs <- run_case(dname, sp$response, sp$fixed, sp$group, sp$zt, st, reml,
                     identifiable = !(st %in% sp$not_identifiable),
                     ref_fit = if (st == "hetar1") ar1_fit else NULL)
      if (st == "ar1") ar1_fit <- cs
      cases[[length(cases) + 1]] <- cs
    }
  }
}

pv <- function(p) as.character(packageVersion(p))
out <- list(
  versions = list(R = R.version.string, glmmTMB = pv("glmmTMB"), TMB = pv("TMB"),
                  lme4 = pv("lme4"), Matrix = pv("Matrix"), nlme = pv("nlme"),
                  numDeriv = pv("numDeriv"), jsonlite = pv("jsonlite")),
  checks = c(checks, list(glmmTMB_ar1 = paste(
    "glmmTMB", pv("glmmTMB"), "ar1 has one variance (its theta is one log-SD and one",
    "correlation parameter) and ar1 correlation rho^|i-j|: the homogeneous ar1 of the table")),
    list(random_starts_per_case = n_random)),
  cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           "glmmtmb_structured.json")
cat(length(cases), "cases written\n")
