# glmmTMB's fit times for benchmarks/residual_bench.py: one glmmTMB() per model and repeat.
# Usage: Rscript residual_glmmtmb.R data.csv repeats   (prints one JSON line per model)
# glmmTMB's ar1() is a random-effects (G-side) structure; the residual AR(1) is written as
# an ar1() term over the visit factor within subject with the residual variance fixed
# near zero (dispformula = ~ 0), so that the ar1() term is the residual:
#   y ~ x + visit + (1 | subject) + ar1(0 + factor(visit) | subject), dispformula = ~ 0
# (equally spaced visits 1..8; REML = TRUE).  One random effect per row: 16,000 + 2,000.
suppressMessages({library(glmmTMB); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); d$subject <- factor(d$subject); d$fvisit <- factor(d$visit)
reps <- as.integer(args[2])
models <- list(intercept = y ~ x + visit + (1 | subject) + ar1(0 + fvisit | subject),
               slope = y ~ x + visit + (visit | subject) + ar1(0 + fvisit | subject))
for (name in names(models)) {
  times <- numeric(reps)
  for (i in seq_len(reps)) {
    times[i] <- system.time(fit <- glmmTMB(models[[name]], d, dispformula = ~ 0,
                                           REML = TRUE))[["elapsed"]]
  }
  vc <- VarCorr(fit)$cond$subject.1
  cat(toJSON(list(model = name, seconds = times, criterion = -2 * as.numeric(logLik(fit)),
                  phi = attr(vc, "correlation")[1, 2],
                  converged = fit$sdr$pdHess && fit$fit$convergence == 0,
                  glmmTMB = as.character(packageVersion("glmmTMB"))), auto_unbox = TRUE,
             digits = NA), "\n")
}
