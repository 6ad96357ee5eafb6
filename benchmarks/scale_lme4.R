# lme4 on the simulated MovieLens-10M-sized crossed design of benchmarks/scale_bench.py.
# Usage: Rscript benchmarks/scale_lme4.R data.csv out.json
# (run by python -m benchmarks.scale_lme4, which writes the CSV and applies the time limit)
suppressPackageStartupMessages({library(lme4); library(data.table); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
d <- fread(args[1])
d[, user := factor(user)]
d[, item := factor(item)]
t_read <- proc.time()[["elapsed"]] - t0
t1 <- proc.time()[["elapsed"]]
fit <- lmer(rating ~ 1 + (1 | user) + (1 | item), data = d, REML = TRUE)
t_fit <- proc.time()[["elapsed"]] - t1
write_json(list(read_s = t_read, fit_s = t_fit, REMLcrit = unname(REMLcrit(fit)),
                theta = unname(getME(fit, "theta")), sigma = sigma(fit),
                n_evals = fit@optinfo$feval, R = R.version.string,
                lme4 = as.character(packageVersion("lme4"))),
           args[2], auto_unbox = TRUE, digits = NA)
