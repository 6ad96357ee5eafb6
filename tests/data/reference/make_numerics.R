# Regenerates lme4_numerics.json: lme4 / lmerTest answers for the numerical edge cases
# (a profile whose endpoint needs a careful inner minimization, ranova with `||`,
# row order of anova and ranova) and the two datasets they use.
# Needs R with lme4, lmerTest, nlme, mlmRev and jsonlite
# (Debian: r-cran-lme4 r-cran-lmertest r-cran-nlme r-cran-mlmrev r-cran-jsonlite).
# Run from this folder:  Rscript make_numerics.R
suppressMessages({library(lme4); library(lmerTest); library(nlme); library(mlmRev)
                  library(jsonlite)})
rows <- function(df) lapply(seq_len(nrow(df)), function(i) as.list(df[i, , drop = FALSE]))

orth <- as.data.frame(nlme::Orthodont)
orth <- data.frame(distance = orth$distance, age = orth$age,
                   Subject = as.character(orth$Subject), Sex = as.character(orth$Sex))
write.csv(orth, "data/orthodont.csv", row.names = FALSE)
hsb <- mlmRev::Hsb82
hsb <- data.frame(school = as.character(hsb$school), sector = as.character(hsb$sector),
                  meanses = hsb$meanses, cses = hsb$cses, mAch = hsb$mAch)
write.csv(hsb, "data/hsb82.csv", row.names = FALSE)

rd <- function(f) read.csv(file.path("data", f), stringsAsFactors = TRUE)
orth <- rd("orthodont.csv"); orth$Subject <- factor(orth$Subject)
orth$Sex <- relevel(orth$Sex, "Male")
hsb <- rd("hsb82.csv"); hsb$school <- factor(hsb$school)
pen <- rd("penicillin.csv")

profile_case <- function(formula, d) {
  fit <- lmer(as.formula(formula), d, REML = TRUE)
  ml <- refitML(fit)
  ci <- suppressWarnings(confint(fit, method = "profile", oldNames = FALSE))
  list(formula = formula, ml_deviance = deviance(ml), ml_theta = unname(getME(ml, "theta")),
       ml_sigma = sigma(ml),
       confint_profile_95 = rows(data.frame(parameter = rownames(ci), lower = ci[, 1],
                                            upper = ci[, 2], row.names = NULL)))
}
ranova_case <- function(formula, d) {
  fit <- lmer(as.formula(formula), d, REML = TRUE)
  r <- lmerTest::ranova(fit)
  list(formula = formula, reml = REMLcrit(fit),
       ranova = rows(data.frame(term = rownames(r), npar = r[["npar"]],
                                loglik = r[["logLik"]], lrt = r[["LRT"]], df = r[["Df"]],
                                p = r[["Pr(>Chisq)"]], row.names = NULL)))
}
anova_case <- function(formula, d) {
  fit <- lmer(as.formula(formula), d, REML = TRUE)
  tab <- function(a) rows(data.frame(term = rownames(a), num_df = a[["NumDF"]],
                                     den_df = a[["DenDF"]], F = a[["F value"]],
                                     p = a[["Pr(>F)"]], row.names = NULL))
  list(formula = formula, anova = tab(anova(fit, ddf = "Satterthwaite", type = 3)),
       anova_type1 = tab(anova(fit, ddf = "Satterthwaite", type = 1)))
}

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  lmerTest = as.character(packageVersion("lmerTest")),
                  nlme = as.character(packageVersion("nlme")),
                  mlmRev = as.character(packageVersion("mlmRev"))),
  orthodont_profile = c(list(data = "orthodont"),
                        profile_case("distance ~ age * Sex + (1 + age | Subject)", orth)),
  hsb82_ranova_uncorrelated = c(list(data = "hsb82"),
                                ranova_case("mAch ~ cses + (1 + cses || school)", hsb)),
  penicillin_ranova_order = c(list(data = "penicillin"),
                              ranova_case("diameter ~ 1 + (1 | sample) + (1 | plate)", pen)),
  hsb82_ranova_order = c(list(data = "hsb82"),
                         ranova_case("mAch ~ cses + (1 | sector) + (1 + cses | school)", hsb)),
  hsb82_anova_order = c(list(data = "hsb82"),
                        anova_case("mAch ~ cses:sector + meanses + cses + sector + (1 | school)",
                                   hsb))
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "lme4_numerics.json")
