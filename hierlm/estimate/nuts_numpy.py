"""The NUTS log density of a small model in plain NumPy: sampling with nothing compiled.

The same function as the compiled ``logp`` graph of :mod:`hierlm.estimate.nuts_compiled`,
on the same unconstrained coordinates ``x`` (``beta``, ``log sigma``, each term's
``log sd`` and, for ``p_i > 1``, the ``p_i (p_i - 1) / 2`` unconstrained values ``z_i`` of
its LKJ factor ``L_i``, :mod:`hierlm.estimate.corr_cholesky`)::

    log p(x) = log N(beta; mu, s) + log HalfStudentT(sigma; nu, s_sigma) + log sigma
               + sum_i [log HalfNormal(sd_i; s_i) + sum log sd_i
                        + log LKJ(L_i; eta_i) + sum_j (j + 2) log L_i,jj]
               - deviance(beta, theta, sigma) / 2,
    theta_i  = diag(sd_i / sigma) L_i, packed as lme4 packs it,
    log LKJ(L; eta) = c(eta, n) + sum_{j=1..n} (2 eta - 2 + n - j) log L_jj.

The deviance is evaluated densely over ``[Z X y]`` (``A`` its Gram matrix, ``Lambda``
the ``q x q`` relative factor, ``c = [a - beta; 1]`` on ``[X y]`` with ``a`` the offset
the Gram blocks were centred by)::

    K = Lambda'A_ZZ Lambda + I = L L',   b = Lambda'A_ZR c,   u = K^-1 b,
    r^2 = c'A_RR c - b'u,
    deviance = log|K| + n log(2 pi sigma^2) + r^2 / sigma^2,

which is the marginal ``-2 log N(y; X beta, sigma^2 (I + Z Lambda Lambda'Z'))`` of
:func:`hierlm.objective.cholesky.unprofiled_deviance`.  Its gradient in ``Lambda``
(``r^2`` is the minimum over ``u`` of ``|e - Z Lambda u|^2 + |u|^2``, so the minimizer's
own change does not count)::

    d deviance / d Lambda = 2 A_ZZ Lambda K^-1 - 2 (A_ZR c - A_ZZ Lambda u) u' / sigma^2,

summed onto theta by its positions in ``Lambda``; in ``beta``,
``d r^2 / d beta = -2 (A_RR c - A_RZ Lambda u)[X rows]``.  The chain rule runs on
through ``theta = diag(sd / sigma) L`` (``d theta / d log sigma = -theta``) and
through the LKJ map (``dz_b = Lbar_ib L_ii - z_b (Lbar_i . L_i) L_ii^2``, as
:mod:`hierlm.estimate.corr_cholesky`'s reverse mode).

Why: the compiled density is machine code made by Numba per model structure.  With
empty caches its first fit spent 99 s of 100 s compiling (``benchmarks/first_fit_results.md``,
against bambi's 32 s).  Here nothing is compiled: a handful of dense LAPACK calls per
evaluation, called by nutpie through its Python-function interface
(``nutpie.compiled_pyfunc.from_pyfunc``); :mod:`hierlm.estimate.nuts_first` says when
it is chosen.  Measured on the 2-core machine, shared with other work (load 6-9), for
sleepstudy (``Reaction ~ 1 + Days + (1 + Days | Subject)``, 4 chains x 1000 draws
after 1000 tuning steps, 51,276 gradients):

- one log density and gradient: 320-410 us at first (about 90 NumPy calls, each a few
  microseconds, were most of it), against 44-52 us for the compiled graph called from
  Python in the same process (``python -m benchmarks.nuts_numpy_bench``).  Now
  :mod:`hierlm.estimate.nuts_numpy_kernel` evaluates it (scalars on Python floats, one
  Gram product per quantity): 56 us against 102 us for the first arrangement in one
  process (load 2); its docstring has the details and what else was weighed;
- sampling, fresh process with empty caches: 12.0 s (load 6), 18.8 and 19.8 s (load 7-8)
  at first, against 6.9 s for the compiled density once compiled (load 9) and 99 s to
  compile it (``benchmarks/first_fit_results.md``, 2026-12-01); the draws, ESS and
  gradient count equal the compiled path's at the same seed to the digits printed (min
  bulk ESS 3716.37, 51,276 gradients: the two densities agree to about 1e-12);
- chains in threads, which share the interpreter lock here.  At load 8-9, ``cores=1``
  28.2 s, ``cores=2`` 18.2 s, ``cores=4`` 21.3 s of sampling with the first arrangement
  (two busy threads get more of a loaded machine's CPU).  With the kernel, at load 1.8
  in one process: ``cores=1`` 5.8 s, ``cores=2`` 9.8 s (11.0 s of CPU for 9.8 s of
  wall: the threads hand the lock back and forth, 4.0 s of system time in a fresh
  process against 1.0 s with one thread), the same draws (min bulk ESS 3663.54 both).
  So the NumPy density's chains run in one thread unless ``cores`` is given
  (:func:`hierlm.estimate.nuts_nutpie.nutpie_sample`); nutpie's own work is about
  20 us a gradient beside the kernel's 56 us;
- compiling the structure afterwards in a thread of the same process took 113 s
  (nothing else running in it); it would share the interpreter lock with whatever the
  user runs next and be cut off at exit, so :mod:`hierlm.estimate.nuts_warm_up` does it
  in a process at ``nice 19`` (2 min 11 s at load 7-9), after which a new process
  samples the compiled density.  It starts when sampling has ended, at ``nice 19``
  from its first line (before importing hierlm: :data:`hierlm.estimate.nuts_first.
  _LAUNCH`), so it never competes with the sampling for the 2 cores.

- ``python -m benchmarks.first_fit --bambi-path /tmp/bambi_site`` (2026-12-05, load
  8-9): with empty caches, REML 0.54 s + first NUTS fit 14.96 s (13.27 s sampling this
  density) = 15.5 s, against 41.8 s for bambi's empty-cache first fit in the same run
  (before: 100.4 s against 32.0 s at a low load).  At load 0.6 (19:45): REML 0.16 s +
  NUTS 15.77 s (15.30 s sampling) = 15.93 s against bambi's 14.12 s: not met.  With
  the kernel and one thread (2026-12-05 21:07, load 4.9 at the start, other test
  suites running at the same priority): REML 0.40 s + NUTS 13.78 s (12.51 s sampling)
  = 14.18 s, 7.04 s of CPU, against 21.03 s for bambi's fit (its process 26.0 s, 18.6 s
  of CPU): met.  Fresh empty-cache processes of this script's fits run one after
  another, the earlier commit's and this one's alternating (``/tmp`` export, load
  5.3-5.8): REML + NUTS 15.1 and 18.2 s (10.9 and 11.7 s of process CPU) before,
  14.2 and 10.7 s (8.5 s of CPU each) after; at load 2, 11.7 s before (0.21 + 11.5 s,
  13.0 s of CPU with 2.1 s of system time), 6.5 s after (0.21 + 6.25 s, 5.6 s sampling).

Not tried: PyTensor's C backend for the first fit (its per-Op modules are kept across
structures, but with empty caches every Op of the graph goes through a C compiler first;
two small helper evaluations that used it had cost about 15 s of an empty-cache fit,
``docs/nuts.md``), and compiling less with Numba (the ``expand`` and ``forward`` graphs
in NumPy: the log density and its gradient, most of what Numba compiles, would remain).
Neither needs less than nothing compiled, which this density does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.names import posterior_name
from hierlm.covariance.term_layout import TermLayout
from hierlm.estimate.corr_cholesky import fill_order
from hierlm.estimate.nuts_numpy_kernel import DensityKernel
from hierlm.estimate.priors import Priors
from hierlm.objective.numpy_link import _constants
from hierlm.objective.profiled import ProfiledObjective

#: Largest number of random-effect coefficients ``q`` evaluated densely here.  A
#: gradient took 270 us at q = 36 and 570-640 us at q = 80 (simulated, 10 rows per
#: level, load 11): at tens of thousands of gradients a fit, still well under the
#: minutes Numba takes to compile a structure at that load.
MAX_Q = 80
_LOG_2PI = math.log(2.0 * math.pi)


def suits(objective: ProfiledObjective) -> bool:
    """Whether this density serves the model: every term unstructured (``us``), no
    residual structure, and ``q`` at most :data:`MAX_Q`.

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> suits(m.objective)
    True
    """
    design = objective.design
    if DesignCovariance.of(design).structured:
        return False
    return sum(t.p * t.n_levels for t in design.terms) <= MAX_Q


@dataclass(frozen=True)
class _Term:
    p: int
    sd: slice  # in x
    z: slice  # in x (empty when p == 1)
    theta: slice  # in theta
    rows: np.ndarray  # theta's rows and columns in T (lme4's packing)
    cols: np.ndarray
    fill_row: np.ndarray  # z's positions in L (PyMC's order)
    fill_col: np.ndarray
    lkj_const: float
    lkj_w: np.ndarray  # weight of log L_jj: LKJ exponent plus the transform's log-Jacobian
    sd_scale: np.ndarray
    sd_const: float  # the HalfNormal priors' constant: sum(log(2 / pi) / 2 - log scale)
    label: str


def _lkj_constant(eta: float, n: int) -> float:
    """PyMC's log normalizing constant of the LKJ correlation density."""
    k = np.arange(1, n)
    return float((n - 1) * math.lgamma(eta + 0.5 * (n - 1))
                 - sum(0.5 * kk * math.log(math.pi) + math.lgamma(eta + 0.5 * (n - 1 - kk))
                       for kk in k))


class NumpyDensity:
    """``x -> (log p(x), d log p / dx)`` of one model (see the module docstring).

    Also maps ``x`` to the constrained draws (:meth:`expand`) and back
    (:meth:`forward`), and carries the names, shapes and dimensions nutpie's output
    uses, the same as :class:`~hierlm.estimate.nuts_compiled.DensityGraphs`'.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate.priors import resolve_priors
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> d = NumpyDensity(m.objective, resolve_priors(m.design))
    >>> d.names, d.ndim
    (('beta', 'sigma', 'sd_Subject', 'chol_corr_Subject'), 6)
    >>> value, grad = d(np.zeros(6))
    >>> bool(np.isfinite(value)), grad.shape
    (True, (6,))
    """

    def __init__(self, objective: ProfiledObjective, pr: Priors) -> None:
        design, g = objective.design, objective.gram
        self.p = p = design.p
        self.n = float(g.n)
        qr = int(g.q_rest)
        A, rows, cols, tidx, *_ = _constants(g.A11, g.nz_val, g.nz_level, g.nz_row, g.A_RR,
                                             g.lam_row, g.lam_col, g.lam_theta, qr)
        self.q = q = g.A11.shape[0] * g.A11.shape[1] + qr
        self.A_ZZ = np.ascontiguousarray(A[:q, :q])
        self.A_ZR = np.ascontiguousarray(A[:q, q:])
        self.A_RR = np.ascontiguousarray(A[q:, q:])
        self.lam_rows, self.lam_cols, self.lam_theta = rows, cols, tidx
        self._lam_flat = rows * q + cols
        self.offset = np.asarray(g.beta_offset, dtype=float)
        self.beta_mu = np.asarray(pr.beta_mu, dtype=float)
        self.beta_sigma = np.asarray(pr.beta_sigma, dtype=float)
        self.sigma_nu, self.sigma_scale = float(pr.sigma_nu), float(pr.sigma_scale)
        self._beta_const = float(-np.log(self.beta_sigma).sum() - 0.5 * _LOG_2PI * p)
        nu, s = self.sigma_nu, self.sigma_scale
        self._sigma_const = (math.log(2.0) + math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)
                             - 0.5 * math.log(nu * math.pi * s * s))
        names = ["beta"] * bool(p) + ["sigma"]
        shapes: list[tuple[int, ...]] = [(p,)] * bool(p) + [()]
        value_names = ["beta"] * bool(p) + ["sigma_log__"]
        value_shapes: list[tuple[int, ...]] = [(p,)] * bool(p) + [()]
        dims: dict[str, tuple[str, ...]] = {"beta": ("coef",)} if p else {}
        terms, pos, tpos = [], p + 1, 0
        for label, t, scale, eta in zip(pr.labels, design.terms, pr.sd_scale, pr.lkj_eta,
                                        strict=True):
            k = t.p * (t.p - 1) // 2
            r, c = TermLayout(t.p).template_index()
            fr, fc = fill_order(t.p)
            j = np.arange(1, t.p + 1)
            w = (2 * float(eta) - 2 + t.p - j) + (j + 1) if t.p > 1 else np.zeros(1)
            terms.append(_Term(t.p, slice(pos, pos + t.p), slice(pos + t.p, pos + t.p + k),
                               slice(tpos, tpos + len(r)), r, c, fr, fc,
                               _lkj_constant(float(eta), t.p) if t.p > 1 else 0.0,
                               np.asarray(w, dtype=float), np.asarray(scale, dtype=float),
                               float(np.sum(0.5 * math.log(2 / math.pi) - np.log(scale))),
                               label))
            sd_name = posterior_name("sd", label)
            names.append(sd_name)
            shapes.append((t.p,))
            dims[sd_name] = (posterior_name("term", label),)
            value_names.append(sd_name + "_log__")
            value_shapes.append((t.p,))
            if t.p > 1:
                names.append(posterior_name("chol_corr", label))
                shapes.append((t.p, t.p))
                value_names.append(posterior_name("chol_corr", label) + "_cholesky_corr__")
                value_shapes.append((k,))
            pos += t.p + k
            tpos += len(r)
        self.terms = terms
        self.ndim = pos
        self.n_theta = tpos
        self.names, self.shapes = tuple(names), tuple(shapes)
        self.value_names, self.value_shapes = tuple(value_names), tuple(value_shapes)
        self.dims = dims
        self.kernel = DensityKernel(self)  # the evaluation (nuts_numpy_kernel)

    # --- the maps between x and the constrained values ---------------------------------

    def _corr(self, t: _Term, z: np.ndarray) -> np.ndarray:
        L = np.eye(t.p)
        L[t.fill_row, t.fill_col] = z
        return L / np.sqrt((L * L).sum(axis=1))[:, None]

    def constrained(self, x: np.ndarray) -> list[np.ndarray]:
        """The constrained values of ``x``, in :attr:`names` order."""
        x = np.asarray(x, dtype=float)
        out = [x[:self.p].copy()] * bool(self.p) + [np.asarray(math.exp(x[self.p]))]
        for t in self.terms:
            out.append(np.exp(x[t.sd]))
            if t.p > 1:
                out.append(self._corr(t, x[t.z]))
        return out

    def expand(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The constrained values of ``x`` by name (what nutpie stores as draws)."""
        return dict(zip(self.names, self.constrained(x), strict=True))

    def forward(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Constrained values by name ``-> x`` (the inverse of :meth:`expand`)."""
        x = np.empty(self.ndim)
        if self.p:
            x[:self.p] = values["beta"]
        x[self.p] = math.log(float(values["sigma"]))
        for t in self.terms:
            x[t.sd] = np.log(np.asarray(values[posterior_name("sd", t.label)], dtype=float))
            if t.p > 1:
                L = np.asarray(values[posterior_name("chol_corr", t.label)], dtype=float)
                x[t.z] = L[t.fill_row, t.fill_col] / L[t.fill_row, t.fill_row]
        return x

    # --- the log density -------------------------------------------------------------

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``(log p(x), d log p / dx)``; ``(-inf, 0)`` where it is not finite (the
        sampler's early steps can overflow: quietly, as the compiled density does)."""
        return self.kernel(np.asarray(x, dtype=float))
