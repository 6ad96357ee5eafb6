# Regenerates results_section.json: estimated marginal means and contrasts (emmeans),
# ICC and Nakagawa's R2 (performance), cluster-robust CR2 tests (clubSandwich) on five
# models, and writes the simulated and exported datasets they use to data/.
# Needs R with lme4, lmerTest, pbkrtest, emmeans, performance, clubSandwich, nlme, jsonlite
# (Debian: r-cran-lme4 r-cran-lmertest r-cran-pbkrtest r-cran-emmeans r-cran-performance
#  r-cran-clubsandwich r-cran-nlme r-cran-jsonlite).
# Run from this folder:  Rscript make_results_section.R
suppressMessages({library(lme4); library(lmerTest); library(pbkrtest); library(emmeans)
  library(performance); library(clubSandwich); library(jsonlite)})

rd <- function(f) read.csv(file.path("data", f), stringsAsFactors = TRUE)
rows <- function(df) if (is.null(df)) NULL else lapply(seq_len(nrow(df)), function(i) as.list(df[i, , drop = FALSE]))

# --- datasets -----------------------------------------------------------------------
set.seed(2024)
# two-factor design: A within subject (3 levels), B between subjects (2 levels), interaction
sub <- factor(sprintf("s%02d", 1:24))
tf <- expand.grid(rep = 1:2, A = c("a1", "a2", "a3"), subject = sub)
tf$B <- ifelse(as.integer(tf$subject) %% 2 == 0, "b2", "b1")
eff <- c(a1 = 0, a2 = 1.5, a3 = 2.5)
u <- rnorm(24, sd = 2)
tf$y <- round(10 + eff[as.character(tf$A)] + ifelse(tf$B == "b2", 1, 0) +
  ifelse(tf$B == "b2" & tf$A == "a3", -1.5, 0) + u[as.integer(tf$subject)] + rnorm(nrow(tf)), 4)
tf <- tf[c("y", "A", "B", "subject")]
tf <- tf[-c(5, 17, 40), ]  # unbalanced
write.csv(tf, "data/twofactor.csv", row.names = FALSE)
# split plot: nlme's Oats, nitrogen as a factor
oats <- as.data.frame(nlme::Oats)
oats <- data.frame(yield = oats$yield, Variety = as.character(oats$Variety),
                   nf = as.character(oats$nitro), Block = as.character(oats$Block))
write.csv(oats, "data/oats.csv", row.names = FALSE)
# crossed random effects: subjects x items, a three-level condition varying within both
cr <- expand.grid(subj = sprintf("p%02d", 1:16), item = sprintf("i%02d", 1:12))
cr$cond <- c("c1", "c2", "c3")[(as.integer(cr$subj) + as.integer(cr$item)) %% 3 + 1]
cr$y <- round(5 + c(c1 = 0, c2 = 0.4, c3 = 0.9)[cr$cond] + rnorm(16, sd = 0.8)[cr$subj] +
  rnorm(12, sd = 0.5)[cr$item] + rnorm(nrow(cr)), 4)
cr <- cr[c("y", "cond", "subj", "item")]
write.csv(cr, "data/crossed.csv", row.names = FALSE)

tf <- rd("twofactor.csv"); oats <- rd("oats.csv"); cr <- rd("crossed.csv")
oats$nf <- factor(oats$nf)
cw <- rd("chickweight.csv"); cw$Diet <- factor(cw$Diet); cw$Chick <- factor(cw$Chick)
ss <- rd("sleepstudy.csv"); ss$Subject <- factor(ss$Subject)

emm_df <- function(e) {
  d <- as.data.frame(e)
  names(d)[names(d) %in% c("SE")] <- "se"
  names(d)[names(d) %in% c("lower.CL", "asymp.LCL")] <- "lower"
  names(d)[names(d) %in% c("upper.CL", "asymp.UCL")] <- "upper"
  for (c in names(d)) if (is.factor(d[[c]])) d[[c]] <- as.character(d[[c]])
  d
}
con_df <- function(cn) {
  d <- tryCatch(as.data.frame(summary(cn)), error = function(e) NULL)
  if (is.null(d)) return(NULL)
  names(d)[names(d) == "SE"] <- "se"
  names(d)[names(d) %in% c("t.ratio", "z.ratio")] <- "t"
  names(d)[names(d) == "p.value"] <- "p"
  for (c in names(d)) if (is.factor(d[[c]])) d[[c]] <- as.character(d[[c]])
  d
}
vc_cs <- function(fit) {
  out <- tryCatch({
    ct <- coef_test(fit, vcov = "CR2", test = "Satterthwaite")
    V <- as.matrix(vcovCR(fit, type = "CR2"))
    list(table = data.frame(term = ct$Coef, estimate = ct$beta, se = ct$SE, t = ct$tstat,
                            df = ct$df_Satt, p = ct$p_Satt),
         vcov = unname(V))
  }, error = function(e) list(error = conditionMessage(e)))
  out
}
icc_r2 <- function(fit) {
  i <- suppressWarnings(icc(fit)); r <- suppressWarnings(r2_nakagawa(fit))
  if (!is.list(i)) i <- list(ICC_adjusted = NA, ICC_unadjusted = NA)  # singular: NA
  list(remlcrit = REMLcrit(fit), theta = unname(getME(fit, "theta")),
       icc_adjusted = i$ICC_adjusted, icc_unadjusted = i$ICC_unadjusted,
       r2_marginal = unname(r$R2_marginal), r2_conditional = unname(r$R2_conditional))
}
emm_case <- function(fit, specs, by = NULL, at = NULL, contrasts = list()) {
  out <- list(specs = specs, by = by, at = at)
  for (ddf in c("kenward-roger", "satterthwaite", "asymptotic")) {
    e <- emmeans(fit, specs, by = by, at = at, lmer.df = ddf)
    key <- gsub("-", "_", ddf)
    out[[key]] <- list(
      table = rows(emm_df(e)),
      pairs_tukey = rows(con_df(pairs(e))),
      pairs_holm = rows(con_df(pairs(e, adjust = "holm"))),
      pairs_bonferroni = rows(con_df(pairs(e, adjust = "bonferroni"))),
      pairs_sidak = rows(con_df(pairs(e, adjust = "sidak"))),
      pairs_none = rows(con_df(pairs(e, adjust = "none"))),
      revpairwise = rows(con_df(contrast(e, "revpairwise"))),
      trt_vs_ctrl = rows(con_df(contrast(e, "trt.vs.ctrl"))),
      poly = tryCatch(rows(con_df(contrast(e, "poly"))), error = function(e) NULL))
    for (nm in names(contrasts))
      out[[key]][[paste0("custom_", nm)]] <- rows(con_df(contrast(e, contrasts[[nm]])))
  }
  out
}

cases <- list()
f <- lmer(y ~ A * B + (1 | subject), data = tf)
cases$twofactor <- list(data = "twofactor.csv", formula = "y ~ A * B + (1 | subject)",
  emmeans = list(emm_case(f, "A", contrasts = list(w = list(`a1 vs rest` = c(1, -0.5, -0.5),
                                                        `a2 - a3` = c(0, 1, -1)))),
                 emm_case(f, c("A", "B")), emm_case(f, "A", by = "B")),
  icc_r2 = icc_r2(f), cr2 = vc_cs(f))
f <- lmer(yield ~ Variety * nf + (1 | Block/Variety), data = oats)
cases$oats <- list(data = "oats.csv", formula = "yield ~ Variety * nf + (1 | Block/Variety)",
  emmeans = list(emm_case(f, "nf"), emm_case(f, "Variety"), emm_case(f, "nf", by = "Variety")),
  icc_r2 = icc_r2(f), cr2 = vc_cs(f))
f <- lmer(weight ~ Time * Diet + (Time | Chick), data = cw)
cases$chickweight <- list(data = "chickweight.csv",
  formula = "weight ~ Time * Diet + (Time | Chick)",
  emmeans = list(emm_case(f, "Diet"), emm_case(f, "Diet", by = "Time",
                                               at = list(Time = c(0, 10, 20)))),
  icc_r2 = icc_r2(f), cr2 = vc_cs(f))
f <- lmer(y ~ cond + (1 | subj) + (1 | item), data = cr)
cases$crossed <- list(data = "crossed.csv", formula = "y ~ cond + (1 | subj) + (1 | item)",
  emmeans = list(emm_case(f, "cond")), icc_r2 = icc_r2(f), cr2 = vc_cs(f))
f <- lmer(Reaction ~ Days + (Days | Subject), data = ss)
cases$sleepstudy <- list(data = "sleepstudy.csv", formula = "Reaction ~ Days + (Days | Subject)",
  emmeans = list(), icc_r2 = icc_r2(f), cr2 = vc_cs(f))
f <- lmer(Reaction ~ 1 + (Days | Subject), data = ss)  # a random slope not in the fixed part
cases$sleepstudy_slope_only <- list(data = "sleepstudy.csv",
  formula = "Reaction ~ 1 + (Days | Subject)", emmeans = list(), icc_r2 = icc_r2(f), cr2 = vc_cs(f))
ds2 <- rd("dyestuff2.csv"); ds2$Batch <- factor(ds2$Batch)
f <- lmer(Yield ~ 1 + (1 | Batch), data = ds2)  # singular: no random-effects variance
cases$dyestuff2 <- list(data = "dyestuff2.csv", formula = "Yield ~ 1 + (1 | Batch)",
  emmeans = list(), icc_r2 = icc_r2(f), cr2 = vc_cs(f))

# a 20,000-row design: emmeans' default switches Kenward-Roger (and Satterthwaite) off
# above 3,000 rows; with the limit raised, pbkrtest's dense n x n computation runs
set.seed(2)
n <- 20000; ng <- 200
g <- rep(seq_len(ng), each = 100)
A <- sample(c("a1", "a2", "a3", "a4"), n, TRUE); x <- round(rnorm(n), 6)
y <- round(rnorm(ng)[g] + 0.5 * rnorm(ng)[g] * x + (A == "a2") + rnorm(n), 6)
write.csv(data.frame(y, A, x, g = sprintf("g%03d", g)), "data/large20k.csv", row.names = FALSE)
big <- rd("large20k.csv")
f <- lmer(y ~ A + x + (1 + x | g), data = big)
e_default <- suppressMessages(emmeans(f, "A"))
secs <- system.time(e <- emmeans(f, "A", lmer.df = "kenward-roger", pbkrtest.limit = 1e6))
cases$large20k <- list(data = "large20k.csv", formula = "y ~ A + x + (1 + x | g)",
  emmeans_default_df = as.data.frame(e_default)$df,
  kr_seconds = secs[["elapsed"]],
  emmeans = list(list(specs = "A", by = NULL, at = NULL, kenward_roger = list(
    table = rows(emm_df(e)), pairs_tukey = rows(con_df(pairs(e)))))))

# where emmeans gives up on KR and Satterthwaite df (rows), and its default adjustments
versions <- sapply(c("lme4", "lmerTest", "pbkrtest", "emmeans", "performance", "insight",
                     "clubSandwich", "nlme"), function(p) as.character(packageVersion(p)))
out <- list(R = R.version.string, packages = as.list(versions),
            emm_options = list(pbkrtest.limit = get_emm_option("pbkrtest.limit"),
                               lmerTest.limit = get_emm_option("lmerTest.limit")),
            cases = cases)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null",
                  pretty = FALSE), "results_section.json")
