# Regenerates lme4_coding.json: R's factor coding (level order, contrasts, coefficient names,
# column order) for hierlm's design tests.
# Needs R with lme4, mlmRev and jsonlite (Debian: r-cran-lme4 r-cran-mlmrev r-cran-jsonlite).
# Run from this folder:  Rscript make_coding.R
# Writes data/exam.csv (mlmRev's Exam, the columns used), data/coding_synth.csv (simulated
# data with awkward level and column names) and lme4_coding.json.
suppressMessages({library(lme4); library(mlmRev); library(jsonlite)})

exam <- Exam[, c("normexam", "standLRT", "schgend", "sex", "vr", "intake", "school")]
write.csv(exam, "data/exam.csv", row.names = FALSE)
stopifnot(identical(levels(exam$schgend), c("mixed", "boys", "girls")))

# Simulated data: level names with dots, "T.", spaces, digits; columns PCT.x and Intercept.
set.seed(21)
n <- 240
radix <- function(x) factor(x, levels = sort(unique(x), method = "radix"))  # C-locale order
synth <- data.frame(
  g = rep(sprintf("g%02d", 1:12), each = n / 12),
  city = sample(c("ST.LOUIS", "SLOUIS", "T.A", "NEW YORK"), n, replace = TRUE),
  a = sample(c("p", "q", "r"), n, replace = TRUE),
  b = sample(c("u", "v"), n, replace = TRUE),
  f5 = sample(c("k1", "k2", "k3", "k4", "k5"), n, replace = TRUE),
  x = round(rnorm(n), 3), PCT.x = round(runif(n), 3), Intercept = round(rnorm(n, 2), 3),
  check.names = FALSE)
u <- rnorm(12, sd = 0.7)
cm <- c(ST.LOUIS = 0.8, SLOUIS = -0.4, T.A = 0.2, `NEW YORK` = 0)
synth$y <- round(1 + cm[synth$city] + 0.5 * synth$x - 0.3 * synth$PCT.x + 0.2 * synth$Intercept +
                 0.3 * (synth$a == "q") * (synth$b == "v") + 0.1 * as.integer(factor(synth$f5)) +
                 u[as.integer(factor(synth$g))] + rnorm(n, sd = 0.5), 4)
write.csv(synth, "data/coding_synth.csv", row.names = FALSE)
for (c in c("g", "city", "a", "b", "f5")) synth[[c]] <- radix(synth[[c]])

fit_entry <- function(formula, data, contrasts = NULL, note = "") {
  fit <- lmer(as.formula(formula), data = data, REML = TRUE, contrasts = contrasts,
              control = lmerControl(optimizer = "bobyqa"))
  list(formula = formula, contrasts = if (is.null(contrasts)) NULL else contrasts, note = note,
       fixef_names = names(fixef(fit)), fixef = unname(fixef(fit)),
       se = unname(sqrt(diag(as.matrix(vcov(fit))))),
       reml_criterion = unname(REMLcrit(fit)), sigma = sigma(fit), theta = unname(getME(fit, "theta")),
       fitted_head = unname(head(fitted(fit), 10)))
}

fits <- list()
fits$exam_default <- fit_entry("normexam ~ standLRT + schgend + (1 | school)", exam,
  note = "schgend levels mixed, boys, girls (the factor's order, not alphabetical)")
ex_girls <- exam; ex_girls$schgend <- relevel(ex_girls$schgend, ref = "girls")
fits$exam_relevel_girls <- fit_entry("normexam ~ standLRT + schgend + (1 | school)", ex_girls,
  note = "schgend releveled: relevel(schgend, ref = 'girls'), levels girls, mixed, boys")
fits$exam_sum <- fit_entry("normexam ~ standLRT + schgend + (1 | school)", exam,
  contrasts = list(schgend = "contr.sum"))
fits$exam_helmert <- fit_entry("normexam ~ standLRT + schgend + (1 | school)", exam,
  contrasts = list(schgend = "contr.helmert"))
fits$exam_poly <- fit_entry("normexam ~ standLRT + schgend + (1 | school)", exam,
  contrasts = list(schgend = "contr.poly"))
ex_ord <- exam; ex_ord$schgend <- factor(ex_ord$schgend, ordered = TRUE)
fits$exam_ordered <- fit_entry("normexam ~ standLRT + schgend + (1 | school)", ex_ord,
  note = "schgend ordered (mixed < boys < girls): contr.poly by default")
fits$exam_ordered_treatment <- fit_entry("normexam ~ standLRT + schgend + (1 | school)", ex_ord,
  contrasts = list(schgend = "contr.treatment"), note = "schgend ordered, contrasts given")
fits$exam_factor_by_factor <- fit_entry("normexam ~ vr * intake + (1 | school)", exam)
fits$exam_numeric_by_factor <- fit_entry("normexam ~ standLRT * sex + (1 | school)", exam)
fits$exam_factor_by_numeric <- fit_entry("normexam ~ sex * standLRT + (1 | school)", exam)
fits$exam_power <- fit_entry("normexam ~ standLRT + I(standLRT^2) + sex + (1 | school)", exam)
fits$exam_mixed_contrasts <- fit_entry("normexam ~ schgend * sex + vr + (1 | school)", exam,
  contrasts = list(schgend = "contr.sum", vr = "contr.helmert"))
fits$synth_names <- fit_entry("y ~ city + PCT.x + Intercept + (1 | g)", synth,
  note = "levels ST.LOUIS, SLOUIS, T.A, NEW YORK; numeric columns PCT.x and Intercept")
fits$synth_three_way <- fit_entry("y ~ a * b * x + (1 | g)", synth)
fits$synth_poly5 <- fit_entry("y ~ f5 + x + (1 | g)", synth, contrasts = list(f5 = "contr.poly"))

# Model matrices (column names and values) for formulas written in various orders.
mm_formulas <- c("~ x * a", "~ a * x", "~ b:a + a", "~ a + b:a", "~ a:b", "~ 0 + a:b",
                 "~ a:x", "~ 0 + a", "~ a - 1", "~ a * b * x", "~ (a + b + x)^2", "~ a / b",
                 "~ x:a + b", "~ a + I(x^2) + log(PCT.x)", "~ b * a", "~ city * b",
                 "~ x + a:b", "~ a:b + x", "~ 0 + x + a", "~ (a + b):(x + f5)")
mm <- lapply(mm_formulas, function(f) {
  M <- model.matrix(as.formula(f), synth)
  list(formula = f, names = colnames(M), values = unname(M[1:12, , drop = FALSE]))
})

# Random-effects terms: lme4 codes them with the default contrasts (treatment, poly for an
# ordered factor), whatever the contrasts argument says (it applies to the fixed part).
random_names <- list()
f_sum <- suppressMessages(lmer(normexam ~ sex + (sex | school), exam,
                               contrasts = list(sex = "contr.sum")))
random_names$sex_sum <- list(formula = "normexam ~ sex + (sex | school)",
  contrasts = list(sex = "contr.sum"), fixef_names = names(fixef(f_sum)),
  ranef_names = colnames(ranef(f_sum)$school))
ex_vr <- exam; ex_vr$vr <- factor(ex_vr$vr, ordered = TRUE)
f_vr <- suppressWarnings(suppressMessages(lmer(normexam ~ 1 + (vr | school), ex_vr)))
random_names$vr_ordered <- list(formula = "normexam ~ 1 + (vr | school)", contrasts = NULL,
  fixef_names = names(fixef(f_vr)), ranef_names = colnames(ranef(f_vr)$school))

contr <- list()
for (k in 2:6) {
  contr[[paste0("poly", k)]] <- list(matrix = unname(contr.poly(k)), names = colnames(contr.poly(k)))
  contr[[paste0("helmert", k)]] <- list(matrix = unname(contr.helmert(k)))
  contr[[paste0("sum", k)]] <- list(matrix = unname(contr.sum(k)))
}

out <- list(
  r_version = R.version.string, lme4_version = as.character(packageVersion("lme4")),
  mlmRev_version = as.character(packageVersion("mlmRev")),
  fits = fits, model_matrices = mm, random_names = random_names, contrasts = contr)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
           "lme4_coding.json")
