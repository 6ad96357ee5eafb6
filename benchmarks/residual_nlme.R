# nlme's fit times for benchmarks/residual_bench.py: one lme() per model and repeat.
# Usage: Rscript residual_nlme.R data.csv repeats   (prints one JSON line per model)
suppressMessages({library(nlme); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); d$subject <- factor(d$subject)
reps <- as.integer(args[2])
models <- list(intercept = ~ 1 | subject, slope = ~ visit | subject)
for (name in names(models)) {
  times <- numeric(reps)
  for (i in seq_len(reps)) {
    times[i] <- system.time(fit <- lme(y ~ x + visit, d, random = models[[name]],
                                       correlation = corAR1(form = ~ visit | subject),
                                       method = "REML"))[["elapsed"]]
  }
  cat(toJSON(list(model = name, seconds = times, criterion = -2 * as.numeric(logLik(fit)),
                  phi = as.numeric(coef(fit$modelStruct$corStruct, unconstrained = FALSE)),
                  nlme = as.character(packageVersion("nlme"))), auto_unbox = TRUE,
             digits = NA), "\n")
}
