# lme4 side of the inference benchmark: profile intervals and bootMer on sleepstudy.
#
# Usage: Rscript inference_lme4.R <sleepstudy.csv> <bootstrap replicates>
# Prints one line "RESULT <json>" with the elapsed times (system.time, seconds) of
# confint(fit, method = "profile") and of bootMer(fit, FUN, nsim) with FUN returning
# the fixed effects, sigma and theta (what hierlm's bootstrap table holds), and the
# 95% profile intervals.  Needs lme4 and jsonlite.
args <- commandArgs(trailingOnly = TRUE)
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
d <- read.csv(args[1])
d$Subject <- factor(d$Subject)
nsim <- as.integer(args[2])
fit <- lmer(Reaction ~ 1 + Days + (1 + Days | Subject), d, REML = TRUE)
t_prof <- system.time(ci <- suppressWarnings(confint(fit, method = "profile",
                                                     oldNames = FALSE)))[["elapsed"]]
FUN <- function(m) c(fixef(m), sigma = sigma(m), getME(m, "theta"))
t_boot <- system.time(b <- bootMer(fit, FUN, nsim = nsim, seed = 1))[["elapsed"]]
cat("RESULT", toJSON(list(profile_s = t_prof, bootstrap_s = t_boot, nsim = nsim,
                          n_failed = sum(!complete.cases(b$t)),
                          ci = list(parameter = rownames(ci), lower = ci[, 1],
                                    upper = ci[, 2])),
                     auto_unbox = TRUE, digits = NA), "\n")
