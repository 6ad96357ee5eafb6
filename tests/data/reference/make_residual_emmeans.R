# Regenerates nlme_residual_emmeans.json: emmeans' marginal means and pairwise contrasts
# on nlme::lme fits with residual structures (corAR1 + varIdent on Orthodont, corCAR1 on
# BodyWeight), REML, with emmeans' Satterthwaite df for lme (mode = "appx-satterthwaite",
# from the REML fit's approximate covariance of the variance parameters, apVar) and the
# df-free asymptotic mode (the only one emmeans offers for lme fits with a varStruct).  Fields: residual_emmeans.md.
# Needs R with nlme, emmeans and jsonlite.  Run from this folder:
#   Rscript make_residual_emmeans.R
suppressMessages({library(nlme); library(emmeans); library(jsonlite)})

rd <- function(f) read.csv(file.path("data", f), stringsAsFactors = FALSE)
orth <- rd("orthodont.csv")
orth$Subject <- factor(orth$Subject, levels = unique(orth$Subject))
orth$Sex <- factor(orth$Sex, levels = c("Male", "Female"))
orth$visit <- as.integer((orth$age - 8) / 2 + 1)
orth$agef <- factor(orth$age)
bw <- rd("bodyweight.csv"); bw$Rat <- factor(bw$Rat, levels = unique(bw$Rat))
bw$Diet <- factor(bw$Diet)

ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, niterEM = 100, tolerance = 1e-10,
                   msTol = 1e-12, opt = "nlminb")
tab <- function(x) {
  d <- as.data.frame(x)
  lapply(d, function(col) if (is.factor(col)) as.character(col) else col)
}
# the fits are made at top level with literal calls: emmeans' Satterthwaite df for lme
# re-evaluate the call, and recover_data() reads its weights argument
case <- function(name, fit, fixed, data, hierlm, specs, by = NULL,
                 modes = c("appx-satterthwaite", "asymptotic")) {
  out <- list(name = name, fixed = fixed, random = deparse(fit$call$random),
              hierlm_formula = hierlm$formula, residual = hierlm$residual,
              sigma_formula = hierlm$sigma, specs = specs, by = by,
              criterion = -2 * as.numeric(logLik(fit)), fixef = as.list(fixef(fit)))
  for (mode in modes) {
    em <- if (is.null(fit$call$weights)) emmeans(fit, specs, by = by, mode = mode) else
      # recover_data() stops inside varWeights() for lme fits with a varStruct: the
      # grid from the fixed-effects formula, fixef and vcov (qdrg), z tests
      emmeans(qdrg(as.formula(fixed), data = data, coef = fixef(fit), vcov = vcov(fit),
                   df = Inf), specs, by = by)
    out[[paste0("emmeans_", sub("appx-", "", mode))]] <- tab(summary(em))
    out[[paste0("pairs_", sub("appx-", "", mode))]] <- tab(summary(pairs(em, adjust = "none")))
  }
  out
}
f_ar1 <- lme(distance ~ Sex * agef, random = ~ 1 | Subject, data = orth,
             correlation = corAR1(form = ~ visit | Subject), method = "REML", control = ctrl)
f_vi <- lme(distance ~ Sex * agef, random = ~ 1 | Subject, data = orth,
            correlation = corAR1(form = ~ visit | Subject), weights = varIdent(form = ~ 1 | Sex),
            method = "REML", control = ctrl)
f_car <- lme(weight ~ Diet + Time, random = ~ 1 | Rat, data = bw,
             correlation = corCAR1(form = ~ Time | Rat), method = "REML", control = ctrl)
cases <- list(
  case("orthodont_ar1", f_ar1, "distance ~ Sex * agef", orth,
       list(formula = "distance ~ Sex * agef + (1 | Subject)",
            residual = "ar1(visit | Subject)", sigma = NULL), "Sex", "agef"),
  # emmeans' Satterthwaite df for lme stop ("Unable to estimate Satterthwaite
  # parameters") when the fit has a varStruct: means and SEs only
  case("orthodont_ar1_varident", f_vi, "distance ~ Sex * agef", orth,
       list(formula = "distance ~ Sex * agef + (1 | Subject)",
            residual = "ar1(visit | Subject)", sigma = "~ Sex"), "agef", "Sex",
       modes = "asymptotic"),
  # the rats' intercept SD is near zero here, and emmeans' Satterthwaite df stop
  # ("Unable to estimate Satterthwaite parameters"): means and SEs only
  case("bodyweight_car1", f_car, "weight ~ Diet + Time", bw,
       list(formula = "weight ~ Diet + Time + (1 | Rat)", residual = "car1(Time | Rat)",
            sigma = NULL), "Diet", modes = "asymptotic")
)
versions <- list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
                 emmeans = as.character(packageVersion("emmeans")))
write_json(list(versions = versions, cases = cases), "nlme_residual_emmeans.json",
           digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null")
