# Brute-force REML / ML criteria for one structured random-effect term, sourced by
# make_structured.R.  Nothing here comes from lme4 or glmmTMB: the criterion is the Gaussian
# (restricted) likelihood of y = X beta + Z u + e, u_i ~ N(0, G), e ~ N(0, sigma^2 I), with
# V = Z G Z' + sigma^2 I, written on lme4's scale:
#   ML:   -2 log L  = n log(2 pi) + log|V| + r'V^-1 r,                 r = y - X beta
#   REML: -2 log LR = (n - p) log(2 pi) + log|V| + log|X'V^-1 X| + r'V^-1 r,  beta = GLS
# With G = sigma^2 Gr (Gr relative to the residual variance) beta and sigma profile out, which
# gives lme4's profiled forms (Vr = Z Gr Z' + I):
#   ML:   log|Vr| + n (1 + log(2 pi rss / n))
#   REML: log|Vr| + log|X'Vr^-1 X| + (n - p) (1 + log(2 pi rss / (n - p))),  rss = r'Vr^-1 r.
# `crit_dense` builds the n x n V densely (used for the checks); `crit_fast` uses that V is
# block diagonal by group and that groups with the same rows of Z share one block.

# ---- correlation parameterizations (unconstrained -> correlation matrix) -------------------
# Durbin-Levinson: partial autocorrelations in (-1, 1) <-> lag correlations of a positive
# definite Toeplitz correlation matrix.
pacf_to_acf <- function(pac) {
  K <- length(pac); r <- numeric(K); phi <- numeric(0)
  for (k in seq_len(K)) {
    if (k == 1) { r[1] <- pac[1]; phi <- pac[1]; next }
    v <- 1 - sum(phi * r[seq_len(k - 1)])
    r[k] <- sum(phi * r[(k - 1):1]) + pac[k] * v
    phi <- c(phi - pac[k] * rev(phi), pac[k])
  }
  r
}
acf_to_pacf <- function(r) {
  K <- length(r); pac <- numeric(K); phi <- numeric(0)
  for (k in seq_len(K)) {
    if (k == 1) { pac[1] <- r[1]; phi <- r[1]; next }
    v <- 1 - sum(phi * r[seq_len(k - 1)])
    pac[k] <- (r[k] - sum(phi * r[(k - 1):1])) / v
    phi <- c(phi - pac[k] * rev(phi), pac[k])
  }
  pac
}

# A structure: how many log-SD parameters (1 = homogeneous) and which correlation family.
STRUCTURES <- list(
  us = list(hom = FALSE, corr = "us"), diag = list(hom = FALSE, corr = "none"),
  homdiag = list(hom = TRUE, corr = "none"), cs = list(hom = FALSE, corr = "cs"),
  homcs = list(hom = TRUE, corr = "cs"), ar1 = list(hom = TRUE, corr = "ar1"),
  hetar1 = list(hom = FALSE, corr = "ar1"), toep = list(hom = FALSE, corr = "toep"),
  homtoep = list(hom = TRUE, corr = "toep"))

n_corr_par <- function(corr, nc) switch(corr, none = 0, us = nc * (nc - 1) / 2, cs = 1,
                                         ar1 = 1, toep = nc - 1)
n_par <- function(s, nc) (if (s$hom) 1 else nc) + n_corr_par(s$corr, nc)

corr_matrix <- function(corr, cp, nc) {
  switch(corr,
    none = diag(nc),
    us = { L <- diag(nc); L[lower.tri(L)] <- cp; cov2cor(tcrossprod(L)) },
    cs = { a <- 1 / (nc - 1); rho <- -a + (1 + a) * plogis(cp)
           m <- matrix(rho, nc, nc); diag(m) <- 1; m },
    ar1 = tanh(cp)^abs(outer(seq_len(nc), seq_len(nc), "-")),
    toep = toeplitz(c(1, pacf_to_acf(tanh(cp)))))
}
# unconstrained parameters -> relative covariance Gr
par_to_Gr <- function(par, s, nc) {
  k <- if (s$hom) 1 else nc
  sds <- if (s$hom) rep(exp(par[1]), nc) else exp(par[seq_len(k)])
  outer(sds, sds) * corr_matrix(s$corr, par[-seq_len(k)], nc)
}
# relative SDs and correlation matrix -> unconstrained parameters (the inverse of par_to_Gr)
Gr_to_par <- function(Gr, s, nc) {
  sds <- sqrt(diag(Gr)); C <- cov2cor(Gr)
  ls <- if (s$hom) mean(log(sds)) else log(sds)
  cp <- switch(s$corr,
    none = numeric(0),
    us = { L <- t(chol(C)); L <- L / diag(L); L[lower.tri(L)] },
    cs = { a <- 1 / (nc - 1); qlogis((mean(C[upper.tri(C)]) + a) / (1 + a)) },
    ar1 = atanh(C[1, 2]),
    toep = atanh(acf_to_pacf(sapply(seq_len(nc - 1), function(k)
      mean(C[cbind(seq_len(nc - k), seq_len(nc - k) + k)])))))
  c(ls, cp)
}
# the structure's own parameters, named as in the JSON
own_params <- function(Gr, s, sigma) {
  C <- cov2cor(Gr); nc <- nrow(C); out <- list()
  if (s$hom) out$sd <- sigma * sqrt(Gr[1, 1])
  if (s$corr %in% c("cs", "ar1")) out$rho <- C[1, 2]
  if (s$corr == "toep") for (k in seq_len(nc - 1)) out[[paste0("rho", k)]] <- C[1, 1 + k]
  if (length(out) == 0) out <- structure(list(), names = character(0))
  out
}

# ---- the problem: y, X, the term's columns Zt, the groups ----------------------------------
make_problem <- function(d, fixed, response, zt_formula, group) {
  X <- model.matrix(as.formula(fixed), d)
  Zt <- model.matrix(as.formula(zt_formula), d)
  g <- factor(d[[group]]); y <- d[[response]]
  idx <- split(seq_len(nrow(d)), g)
  keys <- vapply(idx, function(i) paste(sprintf("%.17g", Zt[i, , drop = FALSE]), collapse = ","), "")
  pats <- lapply(split(names(idx), keys), function(gs) {
    rows <- idx[gs]
    B <- do.call(cbind, lapply(rows, function(i) cbind(X[i, , drop = FALSE], y[i])))
    list(Z = Zt[rows[[1]], , drop = FALSE], B = B, m = length(rows), nk = length(rows[[1]]))
  })
  list(X = X, y = y, Zt = Zt, g = g, pats = pats, n = nrow(X), p = ncol(X), nc = ncol(Zt))
}

# profiled criterion at relative covariance Gr, with beta, sigma and lme4's vcov(beta)
crit_fast <- function(P, Gr, reml, full = FALSE) {
  p <- P$p; n <- P$n; logdet <- 0; W <- vector("list", length(P$pats))
  for (k in seq_along(P$pats)) {
    pt <- P$pats[[k]]
    V <- pt$Z %*% Gr %*% t(pt$Z); diag(V) <- diag(V) + 1
    R <- tryCatch(chol(V), error = function(e) NULL)
    if (is.null(R)) return(if (full) NULL else Inf)
    logdet <- logdet + pt$m * 2 * sum(log(diag(R)))
    Wk <- backsolve(R, pt$B, transpose = TRUE)
    W[[k]] <- matrix(aperm(array(Wk, c(pt$nk, p + 1, pt$m)), c(1, 3, 2)), ncol = p + 1)
  }
  RA <- tryCatch(chol(crossprod(do.call(rbind, W))), error = function(e) NULL)
  if (is.null(RA)) return(if (full) NULL else Inf)
  rss <- RA[p + 1, p + 1]^2; RX <- RA[seq_len(p), seq_len(p), drop = FALSE]
  dfr <- if (reml) n - p else n
  crit <- logdet + dfr * (1 + log(2 * pi * rss / dfr)) + if (reml) 2 * sum(log(diag(RX))) else 0
  if (!full) return(crit)
  sigma2 <- rss / dfr
  beta <- backsolve(RX, RA[seq_len(p), p + 1])
  names(beta) <- colnames(P$X)
  vc <- sigma2 * chol2inv(RX)
  list(crit = crit, beta = beta, sigma = sqrt(sigma2), se = setNames(sqrt(diag(vc)), colnames(P$X)))
}

# dense, non-profiled criterion at absolute G and sigma (beta: GLS at V for REML; given for ML)
dense_V <- function(P, G, sigma) {
  Z <- do.call(cbind, lapply(levels(P$g), function(l) P$Zt * (P$g == l)))
  Gfull <- kronecker(diag(nlevels(P$g)), G)
  V <- Z %*% Gfull %*% t(Z); diag(V) <- diag(V) + sigma^2
  V
}
crit_dense <- function(P, G, sigma, reml, beta = NULL) {
  V <- dense_V(P, G, sigma); R <- chol(V)
  Xw <- backsolve(R, P$X, transpose = TRUE); yw <- backsolve(R, P$y, transpose = TRUE)
  XtViX <- crossprod(Xw)
  if (reml || is.null(beta)) beta <- solve(XtViX, crossprod(Xw, yw))
  rw <- yw - Xw %*% beta
  n <- P$n; p <- P$p
  val <- 2 * sum(log(diag(R))) + sum(rw^2)
  if (reml) val + (n - p) * log(2 * pi) + determinant(XtViX)$modulus[[1]] else val + n * log(2 * pi)
}

# ---- optimization: nlminb -> BFGS -> Nelder-Mead -> BFGS from each start, Newton polish ------
newton_polish <- function(f, par, maxit = 30) {
  val <- f(par)
  for (it in seq_len(maxit)) {
    g <- numDeriv::grad(f, par)
    H <- tryCatch(numDeriv::hessian(f, par), error = function(e) NULL)
    if (is.null(H) || any(!is.finite(H))) break
    e <- eigen((H + t(H)) / 2, symmetric = TRUE)
    ev <- pmax(e$values, 1e-8 * max(abs(e$values)), 1e-12)
    step <- -e$vectors %*% ((t(e$vectors) %*% g) / ev)
    t <- 1; improved <- FALSE
    while (t > 1e-6) {
      cand <- par + t * as.vector(step); cv <- f(cand)
      if (is.finite(cv) && cv <= val) { improved <- TRUE; break }
      t <- t / 2
    }
    if (!improved) break
    done <- max(abs(t * step)) < 1e-10
    par <- cand; val <- cv
    if (done) break
  }
  # the Newton step still left at the end: an estimate of the parameters' remaining error
  g <- numDeriv::grad(f, par)
  H <- tryCatch(numDeriv::hessian(f, par), error = function(e) NULL)
  left <- if (is.null(H)) NA else tryCatch(max(abs(solve(H, g))), error = function(e) NA)
  list(par = par, value = val, grad = g, step_left = left)
}

# From each start: nlminb (a trust-region quasi-Newton: from a far start plain BFGS can take
# one huge first step onto a flat region such as SD -> 0), then BFGS, Nelder-Mead (up to 8
# parameters; beyond that it crawls) and BFGS again.
optimize_from <- function(f, starts) {
  bfgs <- list(reltol = 1e-14, maxit = 5000)
  runs <- lapply(starts, function(s0) {
    if (!is.finite(f(s0))) return(list(par = s0, value = Inf))
    o <- nlminb(s0, f, control = list(rel.tol = 1e-14, eval.max = 1e5, iter.max = 1e4))
    o <- optim(o$par, f, method = "BFGS", control = bfgs)
    if (length(s0) > 1 && length(s0) <= 8)
      o <- optim(o$par, f, method = "Nelder-Mead", control = list(reltol = 1e-14, maxit = 20000))
    o <- optim(o$par, f, method = "BFGS", control = bfgs)
    list(par = o$par, value = o$value)
  })
  vals <- vapply(runs, `[[`, 0, "value")
  best <- runs[[which.min(vals)]]
  pol <- newton_polish(f, best$par)
  list(par = pol$par, value = pol$value, grad_max = max(abs(pol$grad)), step_left = pol$step_left,
       start_values = vals)
}
