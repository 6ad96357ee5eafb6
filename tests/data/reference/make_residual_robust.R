# Regenerates nlme_residual_robust.json: clubSandwich's cluster-robust covariance (CR2,
# CR0) and Satterthwaite df of the fixed effects of nlme::lme fits with residual
# structures, the fitted marginal covariance (random effects plus corAR1 / varIdent) as
# the working model.  Fields: residual_robust.md.
# Needs R with nlme, clubSandwich and jsonlite.  Run from this folder:
#   Rscript make_residual_robust.R
suppressMessages({library(nlme); library(clubSandwich); library(jsonlite)})

rd <- function(f) read.csv(file.path("data", f), stringsAsFactors = FALSE)
orth <- rd("orthodont.csv")
orth$Subject <- factor(orth$Subject, levels = unique(orth$Subject))
orth$Sex <- factor(orth$Sex, levels = c("Male", "Female"))
orth$visit <- as.integer((orth$age - 8) / 2 + 1)
ov <- rd("ovary.csv"); ov$Mare <- factor(ov$Mare, levels = unique(ov$Mare))
bw <- rd("bodyweight.csv"); bw$Rat <- factor(bw$Rat, levels = unique(bw$Rat))
bw$Diet <- factor(bw$Diet)
oats <- rd("oats_plots.csv"); oats$Block <- factor(oats$Block)
oats$plot <- factor(oats$plot, levels = unique(oats$plot)); oats$Variety <- factor(oats$Variety)

ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, niterEM = 100, tolerance = 1e-10,
                   msTol = 1e-12, opt = "nlminb")
mat <- function(V) lapply(seq_len(nrow(V)), function(i) as.numeric(V[i, ]))
case <- function(name, fit, hierlm) {
  out <- list(name = name, hierlm_formula = hierlm$formula, residual = hierlm$residual,
              sigma_formula = hierlm$sigma, method = fit$method,
              criterion = -2 * as.numeric(logLik(fit)), coef_names = names(fixef(fit)),
              fixef = as.numeric(fixef(fit)))
  for (type in c("CR2", "CR0")) {
    V <- vcovCR(fit, type = type)
    ct <- coef_test(fit, vcov = V, test = "Satterthwaite")
    out[[type]] <- list(vcov = mat(as.matrix(V)), se = as.numeric(ct$SE),
                        df = as.numeric(ct$df_Satt))
  }
  out
}
f_ar1 <- lme(distance ~ Sex * age, random = ~ 1 | Subject, data = orth,
             correlation = corAR1(form = ~ visit | Subject), method = "REML", control = ctrl)
f_vi <- lme(distance ~ Sex * age, random = ~ age | Subject, data = orth,
            correlation = corAR1(form = ~ visit | Subject), weights = varIdent(form = ~ 1 | Sex),
            method = "REML", control = ctrl)
f_ov <- lme(follicles ~ s + c, random = ~ 1 | Mare, data = ov,
            correlation = corAR1(form = ~ visit | Mare), method = "ML", control = ctrl)
f_bw <- lme(weight ~ Time * Diet, random = ~ Time | Rat, data = bw,
            correlation = corCAR1(form = ~ Time | Rat), method = "REML", control = ctrl)
f_oats <- lme(yield ~ nitro + Variety, random = ~ 1 | Block, data = oats,
              correlation = corCompSymm(form = ~ 1 | Block/Variety), method = "REML",
              control = ctrl)
cases <- list(
  case("orthodont_ar1", f_ar1, list(formula = "distance ~ Sex * age + (1 | Subject)",
                                    residual = "ar1(visit | Subject)", sigma = NULL)),
  case("orthodont_slope_ar1_varident", f_vi,
       list(formula = "distance ~ Sex * age + (age | Subject)",
            residual = "ar1(visit | Subject)", sigma = "~ Sex")),
  case("ovary_ar1_ml", f_ov, list(formula = "follicles ~ s + c + (1 | Mare)",
                                  residual = "ar1(visit | Mare)", sigma = NULL)),
  case("bodyweight_car1", f_bw, list(formula = "weight ~ Time * Diet + (Time | Rat)",
                                     residual = "car1(Time | Rat)", sigma = NULL)),
  case("oats_cs", f_oats, list(formula = "yield ~ nitro + Variety + (1 | Block)",
                               residual = "cs(1 | plot)", sigma = NULL))
)
versions <- list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
                 clubSandwich = as.character(packageVersion("clubSandwich")),
                 jsonlite = as.character(packageVersion("jsonlite")))
write_json(list(versions = versions, cases = cases), "nlme_residual_robust.json",
           digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null")
