# Regenerates nlme_residual.json: nlme's fits with residual (R-side) structures
# (corAR1, corCAR1, corCompSymm, varIdent and a combination), REML and ML, the
# datasets they use (data/ovary.csv, data/bodyweight.csv, data/oats_plots.csv; the
# Orthodont fits read data/orthodont.csv), and a check that nlme and lme4 agree on a
# model without residual structure.  Fields: residual.md.
# Needs R with nlme, lme4 and jsonlite (Debian: r-cran-nlme r-cran-lme4 r-cran-jsonlite).
# Run from this folder:  Rscript make_residual.R
suppressMessages({library(nlme); library(lme4); library(jsonlite)})

ov <- as.data.frame(nlme::Ovary)
ov <- data.frame(Mare = as.character(ov$Mare), Time = ov$Time, follicles = ov$follicles)
ov <- ov[order(as.integer(ov$Mare), ov$Time), ]
ov$visit <- ave(ov$Time, ov$Mare, FUN = seq_along)
ov$s <- sin(2 * pi * ov$Time); ov$c <- cos(2 * pi * ov$Time)
write.csv(ov, "data/ovary.csv", row.names = FALSE)
bw <- as.data.frame(nlme::BodyWeight)
bw <- data.frame(Rat = as.character(bw$Rat), Diet = as.character(bw$Diet), Time = bw$Time,
                 weight = bw$weight)
bw <- bw[order(as.integer(bw$Rat), bw$Time), ]
write.csv(bw, "data/bodyweight.csv", row.names = FALSE)
oats <- as.data.frame(nlme::Oats)
oats <- data.frame(Block = as.character(oats$Block), Variety = as.character(oats$Variety),
                   nitro = oats$nitro, yield = oats$yield)
oats$plot <- paste(oats$Block, oats$Variety, sep = ":")
oats <- oats[order(oats$plot, oats$nitro), ]
write.csv(oats, "data/oats_plots.csv", row.names = FALSE)

rd <- function(f) read.csv(file.path("data", f), stringsAsFactors = FALSE)
ov <- rd("ovary.csv"); ov$Mare <- factor(ov$Mare, levels = unique(ov$Mare))
bw <- rd("bodyweight.csv"); bw$Rat <- factor(bw$Rat, levels = unique(bw$Rat))
bw$Diet <- factor(bw$Diet)
oats <- rd("oats_plots.csv"); oats$Block <- factor(oats$Block)
oats$plot <- factor(oats$plot, levels = unique(oats$plot)); oats$Variety <- factor(oats$Variety)
orth <- rd("orthodont.csv")
orth$Subject <- factor(orth$Subject, levels = unique(orth$Subject))
orth$Sex <- factor(orth$Sex, levels = c("Male", "Female"))
orth$visit <- as.integer((orth$age - 8) / 2 + 1)

fit_case <- function(fixed, random, data, correlation = NULL, weights = NULL,
                     hierlm = NULL, method = "REML") {
  ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, niterEM = 100, tolerance = 1e-10,
                     msTol = 1e-12, opt = "nlminb")
  fit <- lme(as.formula(fixed), data = data, random = as.formula(random),
             correlation = correlation, weights = weights, method = method, control = ctrl)
  N <- nrow(data); p <- length(fixef(fit))
  # vcov() is lme4's convention; summary()'s t table divides by N - p under ML too,
  # so its ML SEs are larger by sqrt(N / (N - p))
  se <- sqrt(diag(vcov(fit)))
  se_summary <- summary(fit)$tTable[, "Std.Error"]
  res <- fit$residuals
  stopifnot(all(rownames(res) == rownames(data)) || is.null(rownames(res)))
  out <- list(fixed = fixed, random = random, hierlm_formula = hierlm$formula,
              residual = hierlm$residual, sigma_formula = hierlm$sigma, method = method,
              nobs = N, loglik = as.numeric(logLik(fit)),
              criterion = -2 * as.numeric(logLik(fit)),
              fixef = as.list(fixef(fit)), se = as.list(se), se_summary = as.list(se_summary),
              sigma = sigma(fit),
              residual_sd = as.numeric(attr(res, "std")),
              ranef_sd = as.numeric(VarCorr(fit)[, "StdDev"][
                  seq_len(nrow(VarCorr(fit)) - 1)]))
  if (!is.null(fit$modelStruct$corStruct))
    out$rho <- as.numeric(coef(fit$modelStruct$corStruct, unconstrained = FALSE))
  if (!is.null(fit$modelStruct$varStruct))
    out$sd_ratio <- as.list(coef(fit$modelStruct$varStruct, unconstrained = FALSE))
  out
}

cases <- list()
for (m in c("REML", "ML")) {
  k <- tolower(m)
  cases[[paste0("ovary_ar1_", k)]] <- fit_case(
    "follicles ~ s + c", "~ 1 | Mare", ov, corAR1(form = ~ visit | Mare),
    hierlm = list(formula = "follicles ~ s + c + (1 | Mare)",
                  residual = "ar1(visit | Mare)"), method = m)
  cases[[paste0("bodyweight_car1_", k)]] <- fit_case(
    "weight ~ Time * Diet", "~ Time | Rat", bw, corCAR1(form = ~ Time | Rat),
    hierlm = list(formula = "weight ~ Time * Diet + (Time | Rat)",
                  residual = "car1(Time | Rat)"), method = m)
  cases[[paste0("orthodont_varident_", k)]] <- fit_case(
    "distance ~ age + Sex", "~ age | Subject", orth, weights = varIdent(form = ~ 1 | Sex),
    hierlm = list(formula = "distance ~ age + Sex + (age | Subject)", sigma = "~ Sex"),
    method = m)
  cases[[paste0("oats_cs_", k)]] <- fit_case(
    "yield ~ nitro + Variety", "~ 1 | Block", oats, corCompSymm(form = ~ 1 | Block/Variety),
    hierlm = list(formula = "yield ~ nitro + Variety + (1 | Block)",
                  residual = "cs(1 | plot)"), method = m)
  cases[[paste0("orthodont_varident_ar1_", k)]] <- fit_case(
    "distance ~ age + Sex", "~ 1 | Subject", orth, corAR1(form = ~ visit | Subject),
    weights = varIdent(form = ~ 1 | Sex),
    hierlm = list(formula = "distance ~ age + Sex + (1 | Subject)",
                  residual = "ar1(visit | Subject)", sigma = "~ Sex"), method = m)
  # no residual structure: the iid fit, for LRTs
  cases[[paste0("ovary_iid_", k)]] <- fit_case(
    "follicles ~ s + c", "~ 1 | Mare", ov,
    hierlm = list(formula = "follicles ~ s + c + (1 | Mare)"), method = m)
}
# corAR1 on an integer index with gaps equals corCAR1 on that index (phi^|lag|)
# weeks 1..10 (day 44 dropped); week 4 missing for odd rats and week 8 for rats 3, 6, ...
rat <- as.integer(as.character(bw$Rat))
gaps <- bw[bw$Time != 44 & !(bw$Time == 22 & rat %% 2 == 1) & !(bw$Time == 50 & rat %% 3 == 0), ]
gaps$week <- as.integer((gaps$Time - 1) / 7 + 1)
ar_gap <- lme(weight ~ Time, gaps, random = ~ 1 | Rat, correlation = corAR1(form = ~ week | Rat))
car_gap <- lme(weight ~ Time, gaps, random = ~ 1 | Rat, correlation = corCAR1(form = ~ week | Rat))
gap_check <- list(ar1_loglik = as.numeric(logLik(ar_gap)), car1_loglik = as.numeric(logLik(car_gap)),
                  ar1_phi = as.numeric(coef(ar_gap$modelStruct$corStruct, unconstrained = FALSE)),
                  car1_phi = as.numeric(coef(car_gap$modelStruct$corStruct, unconstrained = FALSE)))
# nlme against lme4 on a model without residual structure (lme4's scale: -2 logLik)
lme4_check <- list()
for (m in c("REML", "ML")) {
  a <- lme(distance ~ age + Sex, orth, random = ~ 1 | Subject, method = m)
  b <- lmer(distance ~ age + Sex + (1 | Subject), orth, REML = (m == "REML"))
  lme4_check[[tolower(m)]] <- list(nlme = -2 * as.numeric(logLik(a)),
                                   lme4 = if (m == "REML") REMLcrit(b) else deviance(b),
                                   nlme_se = as.list(sqrt(diag(vcov(a)))),
                                   lme4_se = as.list(sqrt(diag(as.matrix(vcov(b))))),
                                   nlme_sigma = sigma(a), lme4_sigma = sigma(b))
}
out <- list(versions = list(R = R.version.string,
                            nlme = as.character(packageVersion("nlme")),
                            lme4 = as.character(packageVersion("lme4")),
                            jsonlite = as.character(packageVersion("jsonlite"))),
            models = cases, ar1_gaps_equal_car1 = gap_check, nlme_vs_lme4 = lme4_check)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "nlme_residual.json")
