# Regenerates nlme_residual_ranova.json: likelihood-ratio tests for removing or reducing
# a random term of an nlme::lme fit while the residual structure stays (nlme's
# anova(reduced, full) of two REML fits, or of an lme and a gls fit when no random term
# is left), for hierlm's ranova() on fits with residual= / sigma=.  Fields:
# residual_ranova.md.  Needs R with nlme and jsonlite.  Run from this folder:
#   Rscript make_residual_ranova.R
suppressMessages({library(nlme); library(jsonlite)})

rd <- function(f) read.csv(file.path("data", f), stringsAsFactors = FALSE)
orth <- rd("orthodont.csv")
orth$Subject <- factor(orth$Subject, levels = unique(orth$Subject))
orth$Sex <- factor(orth$Sex, levels = c("Male", "Female"))
orth$visit <- as.integer((orth$age - 8) / 2 + 1)
ov <- rd("ovary.csv"); ov$Mare <- factor(ov$Mare, levels = unique(ov$Mare))
bw <- rd("bodyweight.csv"); bw$Rat <- factor(bw$Rat, levels = unique(bw$Rat))
bw$Diet <- factor(bw$Diet)

ctrl <- lmeControl(maxIter = 500, msMaxIter = 500, niterEM = 100, tolerance = 1e-10,
                   msTol = 1e-12, opt = "nlminb")
gctrl <- glsControl(maxIter = 500, msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12,
                    opt = "nlminb")
row <- function(full, reduced, label) {
  a <- anova(reduced, full)
  list(label = label, loglik = as.numeric(logLik(reduced)),
       npar = attr(logLik(reduced), "df"), lrt = a$L.Ratio[2], df = a$df[2] - a$df[1],
       p = a$`p-value`[2])
}
case <- function(name, full, hierlm, rows) {
  list(name = name, hierlm_formula = hierlm$formula, residual = hierlm$residual,
       sigma_formula = hierlm$sigma, method = full$method,
       loglik = as.numeric(logLik(full)), npar = attr(logLik(full), "df"), rows = rows)
}

# (age | Subject) with AR(1) errors: age goes, (1 | Subject) and the AR(1) stay
o_full <- lme(distance ~ Sex * age, random = ~ age | Subject, data = orth,
              correlation = corAR1(form = ~ visit | Subject), method = "REML", control = ctrl)
o_red <- lme(distance ~ Sex * age, random = ~ 1 | Subject, data = orth,
             correlation = corAR1(form = ~ visit | Subject), method = "REML", control = ctrl)
# (1 | Subject) with AR(1) errors and SDs by sex: no random term is left (gls)
v_full <- lme(distance ~ Sex * age, random = ~ 1 | Subject, data = orth,
              correlation = corAR1(form = ~ visit | Subject),
              weights = varIdent(form = ~ 1 | Sex), method = "REML", control = ctrl)
v_red <- gls(distance ~ Sex * age, data = orth, correlation = corAR1(form = ~ visit | Subject),
             weights = varIdent(form = ~ 1 | Sex), method = "REML", control = gctrl)
# Ovary, ML: (1 | Mare) with AR(1) errors against gls with AR(1) errors
m_full <- lme(follicles ~ s + c, random = ~ 1 | Mare, data = ov,
              correlation = corAR1(form = ~ visit | Mare), method = "ML", control = ctrl)
m_red <- gls(follicles ~ s + c, data = ov, correlation = corAR1(form = ~ visit | Mare),
             method = "ML", control = gctrl)
# (Time | Rat) with continuous-time AR(1) errors: Time goes
b_full <- lme(weight ~ Time * Diet, random = ~ Time | Rat, data = bw,
              correlation = corCAR1(form = ~ Time | Rat), method = "REML", control = ctrl)
b_red <- lme(weight ~ Time * Diet, random = ~ 1 | Rat, data = bw,
             correlation = corCAR1(form = ~ Time | Rat), method = "REML", control = ctrl)
# (1 | Subject) with SDs by sex only: gls with varIdent, ML
s_full <- lme(distance ~ age + Sex, random = ~ 1 | Subject, data = orth,
              weights = varIdent(form = ~ 1 | Sex), method = "ML", control = ctrl)
s_red <- gls(distance ~ age + Sex, data = orth, weights = varIdent(form = ~ 1 | Sex),
             method = "ML", control = gctrl)

cases <- list(
  case("orthodont_slope_ar1", o_full,
       list(formula = "distance ~ Sex * age + (age | Subject)",
            residual = "ar1(visit | Subject)", sigma = NULL),
       list(row(o_full, o_red, "age in (age | Subject)"))),
  case("orthodont_ar1_varident", v_full,
       list(formula = "distance ~ Sex * age + (1 | Subject)",
            residual = "ar1(visit | Subject)", sigma = "~ Sex"),
       list(row(v_full, v_red, "(1 | Subject)"))),
  case("ovary_ar1_ml", m_full,
       list(formula = "follicles ~ s + c + (1 | Mare)", residual = "ar1(visit | Mare)",
            sigma = NULL),
       list(row(m_full, m_red, "(1 | Mare)"))),
  case("bodyweight_slope_car1", b_full,
       list(formula = "weight ~ Time * Diet + (Time | Rat)", residual = "car1(Time | Rat)",
            sigma = NULL),
       list(row(b_full, b_red, "Time in (Time | Rat)"))),
  case("orthodont_varident_ml", s_full,
       list(formula = "distance ~ age + Sex + (1 | Subject)", residual = NULL,
            sigma = "~ Sex"),
       list(row(s_full, s_red, "(1 | Subject)")))
)
versions <- list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
                 jsonlite = as.character(packageVersion("jsonlite")))
write_json(list(versions = versions, cases = cases), "nlme_residual_ranova.json",
           digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null")
