"""Stage 3 (frequentist): minimize lme4's profiled criterion over theta.

The criterion depends on each template ``T_i`` only through ``T_i T_i'``, which is
unchanged when a column of ``T_i`` changes sign.  So the minimization runs
*unconstrained* (L-BFGS-B without bounds, exact autodiff gradient) and the answer is
mapped back to lme4's half-space (template diagonals >= 0) by flipping the columns
with a negative diagonal (:mod:`hierlm.estimate.boundary`).  With lme4's bounds
instead, a line search that lands on ``theta_jj = 0`` stops there for good: the
criterion is even in ``theta_jj`` when the rest of column ``j`` is zero (scalar terms,
last diagonals), so its derivative vanishes on the bound even where the bound is a
maximum along it.

The search is the package's one optimizer,
:func:`hierlm.estimate.theta_optimizer.minimize_theta`, with its second-order check
(:mod:`hierlm.estimate.checked_descent`); this module gives it the criterion, lme4's
parameter space (:meth:`~hierlm.estimate.theta_optimizer.ParameterSpace.of_theta`),
the start and the options.  Three further checks make the end point a local minimum of
the bounded problem:

* first order: the gradient in the rescaled parameter ``phi`` (below), each component
  times ``max(1, |phi_j|)``, is at most ``check_tol``; a point that fails passes if
  lme4's own check does (gradient scaled by the Cholesky factor of a finite-difference
  Hessian of the exact gradient, below 2e-3; :mod:`hierlm.estimate.convergence`).  If
  L-BFGS-B stops short it restarts once; then Powell, then L-BFGS-B again.
* second order at zero diagonals (``escape_boundary``): for every template diagonal
  with ``|phi_j| < ZERO_DIAG``, alone and all together, the criterion is
  evaluated at ``phi_j = h`` for ``h`` in ``boundary.ESCAPE_STEPS``; a lower point restarts the
  descent there (at most ``MAX_ESCAPES`` times).  A point that still fails is not
  converged, and the warning names the parameter.
* a second, singular optimum: on samples of at most ``FACE_CHECK_MAX_NOBS`` rows, where
  the criterion can have both an interior and a boundary local minimum, one more
  descent starts from each term's covariance with its smallest eigenvalue set to 0;
  the lowest end point wins.  These descents stop at a looser ``ftol`` until one
  passes below the best point (:data:`hierlm.estimate.checked_descent.FACE_FTOL`).

Measured on 200 random small designs, by REML and ML (400 fits;
``tests/estimate/test_optimum.py``: ``(0 + x | g)``, ``(1 | g) + (0 + x | g)``,
``(1 + x | g)``, ``(1 + x | g) + (1 | h)``, ``(1 + x + z | g)``, 4-40 groups, true SDs
0-1): with bounded L-BFGS-B (the previous optimizer) 103 fits ended above the best of
12 random starts, by up to 7 units of the criterion, all reported converged; bounded
L-BFGS-B with the two checks above still failed 35; unconstrained L-BFGS-B alone 1;
unconstrained with both checks 0, in 9,749 evaluations for the 400 default fits.
Benchmark cases (``python -m benchmarks.optimizer_bench``), evaluations before ->
after: sleepstudy 11 -> 11 + 11 (face check), penicillin 13 -> 13 + 20, pastes
12 -> 12 + 13, maximal 4x4 + 4x4 crossed 38 -> 50 (second-order probes of its singular
templates), InstEval 25 -> 32 (REML; 26 -> 35 ML: unconstrained line searches).

The optimizer runs on ``phi``: row ``j`` of each term's template is multiplied by the
root mean square ``s_j`` of the term's column ``j``, so that ``theta = phi / s``.
Rescaling a predictor then leaves the optimizer's path unchanged (``x ~ 1e5`` or
``1e-5`` fit like ``x ~ 1``); the start is the identity template in ``phi`` (lme4's
identity start for unit-scale columns).

Large samples (more than ``moment_start.MOMENT_START_MIN_NOBS`` rows) whose terms are all scalar
start instead from the moment estimate of :mod:`hierlm.estimate.moment_start`, and
L-BFGS-B runs in units ``phi_j / (phi0_j / sqrt(q_j))`` (``phi0``: that start, ``q_j``:
the term's levels), where the criterion's Hessian is about ``2 I``
(:func:`default_start`).  From the identity start, L-BFGS-B spent most evaluations
finding each term's scale: the criterion is steep in terms with many levels and flat
in those with few (InstEval's ``dept``, 14 levels, overshot to ``theta = -1.5``).
Evaluations, identity start -> moment start in these units (in the moment start's
own ``phi`` units alone: 13 REML, 13 ML): InstEval REML 32 -> 12 (9 descent + 3 for
lme4's Hessian check, needed where the gradient ends at about 2e-3, the criterion
then flat to its last digit), ML 35 -> 9; the simulated 1M-row MovieLens design
(``benchmarks.simulate``) 16 -> 6.  The criterion at the end agreed to 1e-10
relative in all four InstEval fits.  Smaller samples keep lme4's start, so the
randomized-design results above are unchanged.

On the objective's Numba link each evaluation is one compiled call
(:mod:`hierlm.estimate.psi_call`, the structured fits' evaluation with the identity
map): the same values bit for bit, without the Python of the objective's own call
(its tiers' dispatch, the conversions of its results) and with the trace built by
``tolist``.  The function the fit hands L-BFGS-B then costs 101.6-103.1 instead of
109.3-110.5 us for a ``(0 + f | g)`` term with p = 5, 100 groups (``python -m
benchmarks.structured_eval --subjects 100 --times 5``; the criterion itself 95.3-95.7 us).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hierlm.covariance.design import DesignCovariance
from hierlm.design.terms import ModelDesign
from hierlm.errors import MethodError
from hierlm.estimate.descent_loop import CompiledDescent
from hierlm.estimate.moment_start import default_start
from hierlm.estimate.psi_call import OK, THETA_NOT_FINITE, PsiCall
from hierlm.estimate.theta_optimizer import ParameterSpace, SearchOptions, minimize_theta
from hierlm.objective.profiled import ProfiledObjective

# ftol, gtol: L-BFGS-B's stopping rules; check_tol: the largest scaled projected-gradient
# component still called converged (lme4 flags scaled gradients above 2e-3).
DEFAULT_OPTIONS: dict[str, float | int] = {
    "maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6, "check_tol": 1e-3,
}
# Samples up to this size also get one descent from each term's rank-reduced covariance.
FACE_CHECK_MAX_NOBS = 10_000


@dataclass(frozen=True)
class OptimizerResult:
    """Where the optimizer stopped and how it got there.

    Attributes
    ----------
    theta : ndarray
        The minimizer.
    objective : float
        lme4's criterion at ``theta``.
    gradient : ndarray
        Projected gradient with respect to theta at ``theta``.
    n_evals : int
        Objective (with gradient) evaluations.
    converged : bool
        The scaled projected gradient (see the module docstring) is at most ``check_tol``.
    message : str
        The optimizer's own account.
    method : str
        ``"L-BFGS-B"``, ``"L-BFGS-B+restart"`` or ``"L-BFGS-B+Powell"``.
    trace : tuple of (theta, objective)
        Every evaluation, in order.
    phases : tuple of (str, int)
        Evaluations spent by each phase: ``"descent"`` from the start, then one
        ``"face"`` per term for samples of at most ``FACE_CHECK_MAX_NOBS``.
    factor : tuple of ndarray, optional
        ``(L1, L_R)`` at ``theta`` when the optimizer evaluated it there (saves
        :func:`hierlm.estimate.frequentist.fit_profiled` one evaluation).
    psi : ndarray, optional
        The structures' parameters at the minimizer, for a model with a structured
        covariance (:mod:`hierlm.estimate.optimize_structured`); None otherwise.
    """

    theta: np.ndarray
    objective: float
    gradient: np.ndarray
    n_evals: int
    converged: bool
    message: str
    method: str
    trace: tuple[tuple[tuple[float, ...], float], ...] = field(default=())
    factor: tuple[np.ndarray, np.ndarray] | None = None
    phases: tuple[tuple[str, int], ...] = field(default=())
    psi: np.ndarray | None = None


def projected_gradient(theta: np.ndarray, grad: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Zero the gradient components that push an active bound outward.

    Examples
    --------
    >>> projected_gradient(np.array([0.0, 1.0]), np.array([2.0, 3.0]), np.array([0.0, 0.0]))
    array([0., 3.])
    """
    g = np.array(grad, dtype=float)
    g[(theta <= lower) & (g > 0)] = 0.0
    return g


def theta_scale(design: ModelDesign) -> np.ndarray:
    """Factors ``1 / s_j`` with ``theta = phi * theta_scale(design)`` (see module docstring).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> theta_scale(d).round(4).tolist()
    [1.0, 0.1873, 0.1873]
    """
    return DesignCovariance.of(design).theta_scale()


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    if options is not None and not isinstance(options, dict):
        raise MethodError(f"optimizer options must be a dict, got {type(options).__name__}")
    opts: dict[str, Any] = dict(DEFAULT_OPTIONS)
    for key, val in (options or {}).items():
        if key not in DEFAULT_OPTIONS:
            raise MethodError(f"unknown optimizer option {key!r}; known: "
                              f"{', '.join(DEFAULT_OPTIONS)}")
        if (not isinstance(val, int | float) or isinstance(val, bool) or not math.isfinite(val)
                or not val > 0):
            raise MethodError(f"optimizer option '{key}' must be a positive number, got {val!r}")
        if key == "maxiter" and val != int(val):
            raise MethodError(f"optimizer option 'maxiter' must be a whole number, got {val!r}")
        opts[key] = val
    return opts


def _check_start(start: object, lower: np.ndarray) -> np.ndarray | None:
    if start is None:
        return None
    try:
        x = np.asarray(start, dtype=np.float64)
    except (TypeError, ValueError):
        raise MethodError(f"start must be {len(lower)} numbers (theta), got {start!r}") from None
    if x.shape != lower.shape:
        raise MethodError(f"start must have length {len(lower)} (theta), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise MethodError(f"start must be finite, got {x.tolist()}")
    return np.maximum(x, lower)


def optimize_theta(objective: ProfiledObjective, reml: bool, start: np.ndarray | None = None,
                   options: dict[str, Any] | None = None) -> OptimizerResult:
    """Minimize the profiled REML criterion or ML deviance over theta.

    Parameters
    ----------
    objective : ProfiledObjective
        From :func:`hierlm.objective.compile_objective`.
    reml : bool
        REML criterion (True) or ML deviance (False).
    start : ndarray, optional
        Starting theta (identity templates for unit-scale columns by default).
    options : dict, optional
        ``maxiter`` (a positive whole number), ``ftol`` and ``gtol`` (L-BFGS-B's
        stopping rules) and ``check_tol`` (the largest scaled projected gradient
        accepted as converged).

    Returns
    -------
    OptimizerResult

    Raises
    ------
    MethodError
        On an unknown or invalid option, or a ``start`` of the wrong length.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> r = optimize_theta(compile_objective(d), reml=False)
    >>> round(r.objective, 4), r.converged
    (1751.9393, True)
    """
    opts = _check_options(options)
    design = objective.design
    space = ParameterSpace.of_theta(design)
    x_start = _check_start(start, space.lower)
    units = None
    if x_start is None:
        x_start, units = default_start(objective, space.scale)
    trace: list[tuple[tuple[float, ...], float]] = []
    best: dict[str, Any] = {"f": np.inf}

    theta_call = PsiCall(objective, DesignCovariance.of(design))  # psi = theta here
    sum_log_w = float(objective.gram.sum_log_w)
    fast: list[Any] = [None]

    def criterion(theta: np.ndarray) -> tuple[float, np.ndarray]:
        call = fast[0]
        if call is None:
            call = fast[0] = theta_call.ready(reml)
        out = None if call is None else call(theta)
        if out is not None and out[0] != THETA_NOT_FINITE:  # one compiled call (psi_call)
            status, f, g, th, L1, L_R = out
            f -= sum_log_w  # as ProfiledObjective.evaluate
            trace.append((tuple(th.tolist()), f))
            if status == OK and f < best["f"]:
                best.update(f=f, theta=theta.copy(), factor=(L1.copy(), L_R.copy()))
            return f, g
        f, g, L1, L_R = objective.evaluate(theta, reml)
        trace.append((tuple(theta.tolist()), float(f)))  # the same Python floats
        if math.isfinite(f) and bool(np.isfinite(g).all()) and f < best["f"]:
            best.update(f=f, theta=theta.copy(), factor=(L1.copy(), L_R.copy()))
        return f, g

    search = SearchOptions(maxiter=int(opts["maxiter"]), ftol=float(opts["ftol"]),
                           gtol=float(opts["gtol"]), maxls=50,
                           check_tol=float(opts["check_tol"]), bounded=False,
                           second_order=True, face_check=design.nobs <= FACE_CHECK_MAX_NOBS,
                           units=units,
                           descent=CompiledDescent(objective, theta_call, reml, trace, best))
    res = minimize_theta(criterion, space, x_start, search)
    # the factor of the last lowest evaluation, where that is the answer itself
    # (np.array_equal's test, without its wrapper)
    reuse = ("theta" in best and res.theta.shape == best["theta"].shape
             and bool((res.theta == best["theta"]).all()) and res.criterion == best["f"])
    return OptimizerResult(theta=res.theta, objective=res.criterion, gradient=res.gradient,
                           n_evals=len(trace), converged=res.converged,
                           message="; ".join(res.messages), method=res.method,
                           trace=tuple(trace), factor=best["factor"] if reuse else None,
                           phases=res.phases)
