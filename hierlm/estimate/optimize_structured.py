"""Stage 3 for structured covariances: minimize lme4's criterion over psi.

A model with a structured term (``cs(0 + f | g)``, ...) has the parameters ``psi`` of
:class:`hierlm.covariance.design.DesignCovariance`; theta is ``theta(psi)``.  The
profiled criterion ``d(theta)`` and its exact gradient come from the compiled objective
as for any model, and the chain rule gives ``grad_psi d = J' grad_theta d`` with the
exact Jacobian ``J = d theta / d psi``.

The minimization (:func:`hierlm.estimate.theta_optimizer.minimize_theta`, the model's
one optimizer) is bounded L-BFGS-B over psi (the bounds only keep ``exp`` finite:
a log relative SD at its lower bound is an SD of zero for every purpose), from lme4's
identity start and, on samples of at most ``EXTRA_START_MAX_NOBS`` rows, from two more
starts (each term's first correlation parameter moved up by one unit: for ``toep``
an AR(1) start with lag-1 correlation 0.76; SDs divided by ``e^1.5``); the lowest end
point wins.  Then Newton steps on the free parameters, with the Hessian from
central differences of the exact gradient, polish the point: near the optimum an SD or
a correlation can move by 2e-3 while the criterion changes by less than 1e-6
relatively, so a stop on the criterion alone leaves the parameters loose.  Terms left
unstructured (``psi = theta``) take part unbounded and get their template columns'
signs canonicalized at the end, as in :mod:`hierlm.estimate.optimize`.

Where the objective runs on its Numba link and the structures' kernels are loaded,
each evaluation is one compiled call (:mod:`hierlm.estimate.psi_call`: the map, the
criterion and ``J' grad``), as the unstructured fit's is; elsewhere the map, the
criterion and ``J' grad`` are separate calls (the same values; ``J' grad`` there by
BLAS, so its last bits can differ).  ``python -m benchmarks.structured_eval
--subjects 100 --times 5`` (p = 5, one term, Numba link, CPU clock of the calling
thread, best of 30 interleaved runs of 100 calls, 2-core shared machine at load
3.1-3.6, two runs; ``benchmarks/structured_eval_results.md``), the function each optimizer hands
its L-BFGS-B driver, over ``us``'s: 1.03-1.06 x with separate calls (``us``
109.3-110.5 us) -> 0.99-1.01 x with the one call for both (``us`` 101.6-103.1 us;
``diag`` 0.99, ``cs`` and ``ar1`` 1.00, ``toep`` 1.01, whose map is ``O(p^4)``); the
compiled call alone over ``us``'s (the same call, its map the identity; 94.1-94.3 us)
1.00-1.02 x.  ``us``'s function still has one layer more than the structures' (the
fit's search units, :mod:`hierlm.estimate.checked_descent`).  Whole fits gain less:
150 bootstrap replicates (one full refit each) of ``Reaction ~ Days + ar1(0 + Days |
Subject)`` on sleepstudy's days 0-3, the calls after a first in one process, thread
CPU time, best of 3: 1.13-1.17 s before the one call, 1.01-1.07 s with it (two
alternating runs each, load 2-3).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hierlm.covariance.design import DesignCovariance
from hierlm.errors import MethodError
from hierlm.estimate.boundary import canonical_signs
from hierlm.estimate.optimize import OptimizerResult, _check_options
from hierlm.estimate.psi_call import THETA_NOT_FINITE, PsiCall
from hierlm.estimate.theta_optimizer import ParameterSpace, SearchOptions, minimize_theta
from hierlm.objective.profiled import ProfiledObjective

#: Samples of at most this many rows get two extra starts.
EXTRA_START_MAX_NOBS = 10_000


def optimize_psi(objective: ProfiledObjective, reml: bool, start: np.ndarray | None = None,
                 options: dict[str, Any] | None = None) -> OptimizerResult:
    """Minimize the profiled REML criterion or ML deviance over the structures' psi.

    Parameters
    ----------
    objective : ProfiledObjective
        The compiled objective of a design with at least one structured term.
    reml : bool
        REML criterion (True) or ML deviance (False).
    start : ndarray, optional
        Starting psi (:meth:`DesignCovariance.psi_start` by default).
    options : dict, optional
        As for :func:`hierlm.estimate.optimize.optimize_theta`.

    Returns
    -------
    OptimizerResult
        With ``theta = theta(psi)`` and ``psi`` set; ``gradient`` is the gradient in psi.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> data = hierlm.load_sleepstudy().query("Days < 4").astype({"Days": str})
    >>> d = hierlm.build_design("Reaction ~ Days + ar1(0 + Days | Subject)", data)
    >>> r = optimize_psi(compile_objective(d), reml=True)
    >>> r.converged, r.psi.shape
    (True, (2,))
    """
    opts = _check_options(options)
    design = objective.design
    cov = DesignCovariance.of(design)
    bounds = cov.psi_bounds()
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    if start is None:
        starts = [cov.psi_start()]
        if design.nobs <= EXTRA_START_MAX_NOBS:
            kinds = np.array(cov.psi_kinds())
            first = np.zeros(len(kinds), dtype=bool)  # each term's first correlation
            for k, kind in enumerate(kinds):
                first[k] = kind == "corr" and (k == 0 or kinds[k - 1] != "corr")
            starts.append(starts[0] + first * 1.0)
            starts.append(starts[0] - (kinds == "log_sd") * 1.5)
    else:
        x = np.asarray(start, dtype=float)
        if x.shape != (cov.n_psi,) or not np.all(np.isfinite(x)):
            raise MethodError(f"start must be {cov.n_psi} finite numbers (the structures' "
                              f"parameters psi), got {np.asarray(start).tolist()}")
        starts = [np.clip(x, lo, hi)]
    trace: list[tuple[tuple[float, ...], float]] = []
    best: dict[str, Any] = {"f": np.inf}

    psi_call = PsiCall(objective, cov)
    sum_log_w = float(objective.gram.sum_log_w)
    fast: list[Any] = [None]

    def criterion(psi: np.ndarray) -> tuple[float, np.ndarray]:
        call = fast[0]
        if call is None:
            call = fast[0] = psi_call.ready(reml)
        out = None if call is None else call(psi)
        if out is not None:  # map, criterion and J'g in one compiled call
            status, f, gpsi, theta, L1, L_R = out
            if status == THETA_NOT_FINITE:
                return np.inf, np.zeros_like(psi)
            f -= sum_log_w  # as ProfiledObjective.evaluate
            trace.append((tuple(theta.tolist()), f))
            if status:
                return np.inf, np.zeros_like(psi)
            if f < best["f"]:
                best.update(f=f, psi=psi.copy(), theta=theta,
                            factor=(L1.copy(), L_R.copy()))
            return f, gpsi
        theta, J = cov.theta_jacobian(psi)  # one pass, closed forms
        if not math.isfinite(theta.sum()):  # a NaN or an infinity (one C loop)
            return np.inf, np.zeros_like(psi)
        f, g, L1, L_R = objective.evaluate(theta, reml)
        trace.append((tuple(theta.tolist()), float(f)))  # Python floats, as float(v)
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return np.inf, np.zeros_like(psi)
        gpsi = J.T @ g
        if f < best["f"]:
            best.update(f=f, psi=psi.copy(), theta=np.array(theta),
                        factor=(L1.copy(), L_R.copy()))
        return float(f), gpsi

    search = SearchOptions(maxiter=int(opts["maxiter"]), ftol=min(float(opts["ftol"]), 1e-15),
                           gtol=min(float(opts["gtol"]), 1e-10), maxls=50,
                           check_tol=float(opts["check_tol"]), bounded=True, runs=1,
                           newton=True)
    # the maps' floating-point warnings are silenced once around the search (non-finite
    # values are answered above), not per evaluation: np.errstate costs ~7 us a call,
    # 7% of a p = 5 term's evaluation (benchmarks/structured_eval.py)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        res = minimize_theta(criterion, ParameterSpace.of_psi(design), starts, search)
    psi = res.theta
    theta = cov.theta(psi)
    theta, _ = canonical_signs(design, theta)  # unstructured terms' columns only
    reuse = ("psi" in best and np.array_equal(psi, best["psi"])
             and np.array_equal(theta, best["theta"]))
    n_descent = dict(res.phases).get("descent", 0)
    return OptimizerResult(
        theta=theta, objective=float(res.criterion), gradient=res.gradient,
        n_evals=len(trace), converged=res.converged,
        message="; ".join(res.messages), method=f"L-BFGS-B(psi) x{len(starts)}+Newton",
        trace=tuple(trace), factor=best.get("factor") if reuse else None,
        phases=(("descent", n_descent), ("newton", res.evaluations - n_descent)), psi=psi)
