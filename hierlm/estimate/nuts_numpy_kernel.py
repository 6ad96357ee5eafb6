"""One evaluation of the NumPy NUTS log density and its gradient, in few NumPy calls.

The function is :mod:`hierlm.estimate.nuts_numpy`'s (its docstring states the math);
this module arranges its evaluation so that nutpie's Python-function interface, which
calls it tens of thousands of times a fit, spends little time in the interpreter:

- the priors, the log-Jacobians, the LKJ maps and the chain rule back from ``theta``
  run on Python floats (``x.tolist()`` once): a model has a handful of them, and a
  float operation costs tens of nanoseconds where a NumPy call on a small array costs
  about a microsecond;
- the deviance takes one product of the Gram matrix per quantity, with ``F_-`` the
  Gram matrix of ``[Z X y]`` with its first ``q`` columns negated and ``W`` the rows
  ``Lambda'[A_ZZ A_ZR]``::

      W' = [A_ZZ; A_RZ] Lambda,  K = Lambda' W'[:q] + I = L L',  X = L^-1 (dtrtri)
      u  = X'X W[:, q:] c                                  (= K^-1 Lambda'A_ZR c)
      F_- [Lambda u; c] = [A_ZR c - A_ZZ Lambda u;  A_RR c - A_RZ Lambda u] = [e; s]
      r^2 = c's,   d deviance / d Lambda_rc = 2 S_cr - 2 e_r u_c / sigma^2,
      S_cr = (K^-1 Lambda'A_ZZ)[c, r] = sum_l X[l, c] (X Lambda'A_ZZ)[l, r],

  since ``(A_ZZ Lambda K^-1)[r, c] = (K^-1 Lambda'A_ZZ)[c, r]``; ``S_cr`` is taken only
  at ``Lambda``'s entries, the ``beta`` gradient is ``s[:p] / sigma^2`` and the
  ``Lambda`` gradient is summed onto ``theta`` by one ``bincount``.

Why: nutpie calls a Python log density once per leapfrog step (51,202 gradients for
sleepstudy's 4 chains x (1000 + 1000) draws), and with nothing compiled those calls
are most of the first fit.  Measured on the 2-core machine, shared with other work
(one BLAS thread; sleepstudy, ``Reaction ~ 1 + Days + (1 + Days | Subject)``,
``q = 36``):

- one log density and gradient (``python -m benchmarks.nuts_numpy_bench --rounds 3
  --calls 2000``, at the prior's centre): 118-120 us, against 168-218 us for the first
  arrangement run just before (an export of the earlier commit) and 32-36 us for the
  compiled graph, at load 4.4-4.5 (wall time: the process had about half a core);
- the same point in one process, best of 5 x 2000 calls, against the first
  implementation (kept as ``tests/estimate/numpy_density_reference.py``): 56 us
  against 102 us (load 2), 38 against 69-84 us for ``(1 | Subject) + (1 | g2)``
  (``q = 21``), 97 against 163 us for ``(Days + x3 | Subject) + (1 | g2)`` (``q = 57``);
  by section for sleepstudy: 7 us of Python floats (priors, LKJ maps, chain rule),
  32 us from ``Lambda`` to ``u`` and ``[e; s]``, 13 us for ``S_cr`` and the ``theta``
  gradient, 5 us of call and return;
- ``K^-1 W`` by one ``dpotrs`` (``q + p + 1`` right-hand sides, 17-21 us alone) in
  place of ``X``: 55.5 against 56.7 us for sleepstudy, 106 against 98 us at ``q = 57``
  (alternating rounds); ``X`` is kept for the larger models;
- not done: ``Lambda``, ``W'`` and ``K`` as products of precomputed per-``theta``
  matrices (about 6 us less for sleepstudy, but the matrices grow as
  ``n_theta^2 q^2``); calling the kernel through a ``ctypes`` C callback in nutpie's
  compiled-model interface instead of its Python-function interface: the same CPU
  time (3.9-4.2 s against 3.9 s of sampling, identical draws), so nutpie's cost per
  call (about 20 us) is not the Python-function interface's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.linalg.lapack import dpotrf, dtrtri

_LOG_2PI = math.log(2.0 * math.pi)


class DensityKernel:
    """``x -> (log p(x), d log p / dx)`` for a :class:`~hierlm.estimate.nuts_numpy.
    NumpyDensity`'s model, evaluated as the module docstring says.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate.priors import resolve_priors
    >>> from hierlm.estimate.nuts_numpy import NumpyDensity
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> d = NumpyDensity(m.objective, resolve_priors(m.design))
    >>> kernel = DensityKernel(d)
    >>> x = np.zeros(d.ndim)
    >>> value, grad = kernel(x)
    >>> bool(np.isclose(value, d(x)[0], rtol=1e-12)), grad.shape
    (True, (6,))
    """

    def __init__(self, d: Any) -> None:  # a NumpyDensity (which builds its kernel)
        p, q = d.p, d.q
        self.p, self.q, self.ndim, self.n = p, q, d.ndim, d.n
        self.n_theta = d.n_theta
        Fm = np.block([[-d.A_ZZ, d.A_ZR], [-d.A_ZR.T, d.A_RR]])
        self.F_minus = np.ascontiguousarray(Fm)
        self.W_left = np.ascontiguousarray(np.vstack([d.A_ZZ, d.A_ZR.T]))  # [A_ZZ; A_RZ]
        self.eye = np.eye(q)
        self.lam_flat = np.asarray(d._lam_flat, dtype=np.intp)
        self.lam_theta = np.asarray(d.lam_theta, dtype=np.intp)
        self.lam_rows = np.asarray(d.lam_rows, dtype=np.intp)
        self.lam_cols = np.asarray(d.lam_cols, dtype=np.intp)
        # S[c, r] is S.T[r, c]: S.T is C-contiguous (q + p + 1, q) when S is Fortran
        self.s_index = self.lam_rows * q + self.lam_cols
        self.offset = [float(v) for v in d.offset]
        self.beta_mu = [float(v) for v in d.beta_mu]
        self.beta_inv_sd = [1.0 / float(v) for v in d.beta_sigma]
        self.beta_const = d._beta_const
        nu, s = d.sigma_nu, d.sigma_scale
        self.sigma_half_nu1 = (nu + 1) / 2
        self.sigma_nu_s2 = nu * s * s
        self.sigma_const = d._sigma_const
        self.terms = []
        for t in d.terms:
            r, c = t.rows.tolist(), t.cols.tolist()
            self.terms.append((
                t.p, t.sd.start, t.z.start, t.theta.start,
                list(zip(t.fill_row.tolist(), t.fill_col.tolist(), strict=True)),
                list(zip(r, c, strict=True)),
                [1.0 / float(v) for v in np.broadcast_to(t.sd_scale, (t.p,))],
                t.sd_const, t.lkj_const, t.lkj_w.tolist()))

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(log p(x), d log p / dx)``; ``(-inf, 0)`` where it is not finite."""
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                out = self._evaluate(x.tolist())
        except (OverflowError, ValueError, ZeroDivisionError):
            out = None
        if out is None:
            return -math.inf, np.zeros(self.ndim)
        return out

    def _evaluate(self, xl: list[float]) -> tuple[float, np.ndarray] | None:
        p, q, n = self.p, self.q, self.n
        exp, log = math.exp, math.log
        g = [0.0] * self.ndim
        log_sigma = xl[p]
        sigma = exp(log_sigma)
        s2 = sigma * sigma
        inv_sigma = 1.0 / sigma
        # fixed effects: their normal prior; c = [offset - beta; 1]
        lp = self.beta_const
        c = [0.0] * (p + 1)
        for i in range(p):
            b = xl[i]
            zb = (b - self.beta_mu[i]) * self.beta_inv_sd[i]
            lp -= 0.5 * zb * zb
            g[i] = -zb * self.beta_inv_sd[i]
            c[i] = self.offset[i] - b
        c[p] = 1.0
        # sigma: half-Student-t prior and the log transform's Jacobian
        ratio = s2 / self.sigma_nu_s2
        lp += self.sigma_const - self.sigma_half_nu1 * math.log1p(ratio) + log_sigma
        g[p] = 1.0 - 2.0 * self.sigma_half_nu1 * ratio / (1.0 + ratio)
        # each term: half-normal SDs, LKJ factor, theta = diag(sd / sigma) L
        theta: list[float] = []
        kept: list[tuple[list[float], list[list[float]] | None, list[float]]] = []
        for (pt, sd0, z0, _t0, fill, pairs, inv_scale, sd_const, lkj_const,
             lkj_w) in self.terms:
            sds = []
            lp += sd_const
            for i in range(pt):
                xs = xl[sd0 + i]
                sd = exp(xs)
                uu = sd * inv_scale[i]
                uu *= uu
                lp += xs - 0.5 * uu
                g[sd0 + i] = 1.0 - uu
                sds.append(sd)
            if pt == 1:
                theta.append(sds[0] * inv_sigma)
                kept.append((sds, None, []))
                continue
            L = [[0.0] * pt for _ in range(pt)]
            for i in range(pt):
                L[i][i] = 1.0
            for b, (fr, fc) in enumerate(fill):
                L[fr][fc] = xl[z0 + b]
            diag = []
            lp += lkj_const
            for i in range(pt):
                row = L[i]
                inv_norm = 1.0 / math.sqrt(math.fsum(v * v for v in row[:i + 1]))
                for j in range(i + 1):
                    row[j] *= inv_norm
                diag.append(inv_norm)  # L_ii = 1 / |row i before normalizing|
                lp += lkj_w[i] * log(inv_norm)
            for r, cc in pairs:
                theta.append(sds[r] * inv_sigma * L[r][cc])
            kept.append((sds, L, diag))
        # the marginal deviance (module docstring)
        th = np.array(theta)
        lam = np.zeros(q * q)
        lam[self.lam_flat] = th.take(self.lam_theta)
        lam = lam.reshape(q, q)
        Wt = self.W_left @ lam  # [A_ZZ; A_RZ] Lambda
        K = lam.T @ Wt[:q]
        K += self.eye
        Lk, info = dpotrf(K.T, lower=1, clean=1, overwrite_a=1)  # K symmetric: K.T is K
        if info != 0:  # not positive definite (an overflow upstream)
            return None
        logdet = 2.0 * float(np.log(Lk.diagonal()).sum())
        X, info = dtrtri(Lk, lower=1, overwrite_c=1)  # L^-1 in L's place (upper zero)
        if info != 0:
            return None
        XT = X.T  # C-contiguous
        c_arr = np.array(c)
        u = XT @ (X @ (c_arr @ Wt[q:]))  # K^-1 Lambda'A_ZR c
        es = self.F_minus @ np.concatenate((lam @ u, c_arr))  # [e; s]
        tail = es[q:].tolist()
        r2 = math.fsum(ci * si for ci, si in zip(c, tail, strict=True))
        lp -= 0.5 * (logdet + n * (_LOG_2PI + 2.0 * log_sigma) + r2 / s2)
        # S[c, r] = (K^-1 Lambda'A_ZZ)[c, r] = sum_l X[l, c] (X Lambda'A_ZZ)[l, r]
        YT = Wt[:q] @ XT  # (X Lambda'A_ZZ)'
        S_cr = np.einsum("ij,ij->i", XT.take(self.lam_cols, axis=0),
                         YT.take(self.lam_rows, axis=0))
        G = S_cr - es.take(self.lam_rows) * u.take(self.lam_cols) / s2
        g_theta = np.bincount(self.lam_theta, G, minlength=self.n_theta).tolist()  # half
        # back to x: beta, log sigma (directly and through theta), each term
        inv_s2 = 1.0 / s2
        for i in range(p):
            g[i] += tail[i] * inv_s2
        g_sigma = -n + r2 * inv_s2
        pos = 0
        for (pt, sd0, z0, _t0, fill, pairs, _s, _c, _k, lkj_w), (sds, Lt, diag) in zip(
                self.terms, kept, strict=True):
            if Lt is None:  # one coefficient: theta = sd / sigma
                gt = -g_theta[pos] * theta[pos]  # -(1/2) d dev / d theta * theta
                g[sd0] += gt
                g_sigma -= gt
                pos += 1
                continue
            Lbar = [[0.0] * pt for _ in range(pt)]
            for r, cc in pairs:
                gt = -g_theta[pos]
                v = gt * theta[pos]
                g[sd0 + r] += v
                g_sigma -= v
                Lbar[r][cc] = gt * sds[r] * inv_sigma
                pos += 1
            dot = []
            for i in range(pt):
                Lbar[i][i] += lkj_w[i] / diag[i]
                row, bar = Lt[i], Lbar[i]
                dot.append(math.fsum(bar[j] * row[j] for j in range(i + 1))
                           * diag[i] * diag[i])
            for b, (fr, fc) in enumerate(fill):
                g[z0 + b] = Lbar[fr][fc] * diag[fr] - xl[z0 + b] * dot[fr]
        g[p] += g_sigma
        if not math.isfinite(lp) or not all(map(math.isfinite, g)):
            return None
        return lp, np.array(g)
