# lme4 side of the hierlm benchmark suite.
#
# Usage:
#   Rscript lme4_bench.R <csv> <formula> <factor columns, comma separated> <REML: TRUE|FALSE>
#                        <repeats> [budget seconds]
#
# Reads the CSV (the named columns as factors), then
#   repeats >= 1: one warm-up lmer() fit, then up to <repeats> timed fits
#                 (fewer if the warm-up fit shows they would exceed the budget;
#                 none if the warm-up fit alone took longer than the budget, in
#                 which case it is the one reported time),
#                 then (median of up to 3) fits with lmerControl(calc.derivs = FALSE);
#   repeats == 0: exactly one fit (used to time a fresh Rscript process end to end).
# Prints one line "RESULT <json>" with the elapsed times (system.time, seconds),
# the criterion (REMLcrit for REML, deviance for ML), theta, fixef, sigma and
# the number of objective evaluations (fit@optinfo$feval).  No packages beyond
# lme4 are needed.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) < 5) stop("usage: lme4_bench.R csv formula factors REML repeats [budget]")
csv_path <- args[1]
form <- as.formula(args[2])
factor_cols <- strsplit(args[3], ",", fixed = TRUE)[[1]]
use_reml <- as.logical(args[4])
repeats <- as.integer(args[5])
budget <- if (length(args) >= 6) as.numeric(args[6]) else 60

suppressPackageStartupMessages(library(lme4))

header <- names(read.csv(csv_path, nrows = 1, check.names = FALSE))
classes <- ifelse(header %in% factor_cols, "character", NA)
names(classes) <- header
dat <- read.csv(csv_path, colClasses = classes, check.names = FALSE)
for (col in intersect(factor_cols, header)) dat[[col]] <- factor(dat[[col]])

fit_once <- function() {
  fit <- NULL
  elapsed <- system.time(fit <- lmer(form, data = dat, REML = use_reml))[["elapsed"]]
  list(fit = fit, elapsed = elapsed)
}

num <- function(x, digits = 17) {
  ifelse(is.finite(x), trimws(formatC(x, digits = digits, format = "g")), "null")
}
json_str <- function(s) {
  paste0("\"", gsub("\"", "\\\\\"", gsub("\\\\", "\\\\\\\\", s)), "\"")
}
json_vec <- function(x, digits = 17) paste0("[", paste(num(x, digits), collapse = ","), "]")
json_named <- function(x) {
  paste0("{", paste(json_str(names(x)), num(unname(x)), sep = ":", collapse = ","), "}")
}

warmup <- NA_real_
times <- numeric(0)
if (repeats <= 0) {
  res <- fit_once()
  times <- res$elapsed
} else {
  res <- fit_once()
  warmup <- res$elapsed
  if (warmup > budget) {
    # A fit this slow is its own measurement (R compiles nothing on first use).
    times <- warmup
    warmup <- NA_real_
  } else {
    n <- max(1L, min(repeats, as.integer(floor(budget / max(warmup, 1e-3)))))
    for (i in seq_len(n)) {
      res <- fit_once()
      times <- c(times, res$elapsed)
    }
  }
}
fit <- res$fit
# One more fit without lme4's post-fit derivative check (calc.derivs), which for
# many covariance parameters costs more objective evaluations than the fit itself.
noderivs <- NA_real_
if (repeats > 0 && !is.na(warmup)) {
  ctrl <- lmerControl(calc.derivs = FALSE)
  noderivs <- median(vapply(seq_len(min(n, 3L)), function(i) {
    system.time(lmer(form, data = dat, REML = use_reml, control = ctrl))[["elapsed"]]
  }, 0))
}
crit <- if (use_reml) REMLcrit(fit) else deviance(fit)
msgs <- fit@optinfo$conv$lme4$messages
out <- paste0(
  "{",
  "\"times\":", json_vec(times, 6),
  ",\"median\":", num(median(times), 6),
  ",\"warmup\":", num(warmup, 6),
  ",\"fit_noderivs_s\":", num(noderivs, 6),
  ",\"objective\":", num(crit),
  ",\"theta\":", json_vec(getME(fit, "theta")),
  ",\"fixef\":", json_named(fixef(fit)),
  ",\"sigma\":", num(sigma(fit)),
  ",\"n_evals\":", as.integer(fit@optinfo$feval),
  ",\"optimizer\":", json_str(fit@optinfo$optimizer),
  ",\"singular\":", if (isSingular(fit)) "true" else "false",
  ",\"messages\":[", paste(vapply(as.character(msgs), json_str, ""), collapse = ","), "]",
  ",\"nrow\":", nrow(dat),
  "}"
)
cat("RESULT ", out, "\n", sep = "")
