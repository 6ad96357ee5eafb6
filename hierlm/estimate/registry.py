"""The estimators by name: what ``method=`` of :meth:`hierlm.Model.fit` looks up.

The built-in estimators are listed here once (REML and ML in
:mod:`hierlm.estimate.profiled_estimator`, NUTS in
:mod:`hierlm.estimate.nuts_estimator`).  Another method is a module of its own whose
estimator (:class:`hierlm.estimate.estimator.Estimator`) calls :func:`register` when
imported; nothing else changes, since ``fit`` asks this registry and the modules after
the fit ask the record's kind (:mod:`hierlm.estimate.kind`).
"""

from __future__ import annotations

from hierlm.errors import MethodError
from hierlm.estimate.estimator import Estimator
from hierlm.estimate.kind import register_kind
from hierlm.estimate.nuts_estimator import NUTS_ESTIMATOR
from hierlm.estimate.profiled_estimator import ML_ESTIMATOR, REML_ESTIMATOR

__all__ = ["estimator", "estimator_names", "register", "unregister"]

_ESTIMATORS: dict[str, Estimator] = {}


def register(est: Estimator, *, replace: bool = False) -> Estimator:
    """Make ``est`` the estimator of ``method=est.name`` (case-insensitive).

    Parameters
    ----------
    est : Estimator
        An object with ``name``, ``kind`` and ``fit`` (see
        :class:`hierlm.estimate.estimator.Estimator`).
    replace : bool
        Replace an estimator already registered under that name (otherwise an error).

    Returns
    -------
    Estimator
        ``est``, so a module can write ``MINE = register(MyEstimator())``.

    Examples
    --------
    >>> register(estimator("reml"), replace=True).name
    'reml'
    """
    if not isinstance(est, Estimator):
        raise MethodError(f"an estimator needs name, kind and fit(); "
                          f"{type(est).__name__} lacks some")
    name = est.name
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise MethodError(f"an estimator's name must be a non-empty word, not {name!r}")
    key = name.lower()
    if key in _ESTIMATORS and not replace and _ESTIMATORS[key] is not est:
        raise MethodError(f"an estimator named {name!r} is already registered; "
                          f"pass replace=True to replace it")
    register_kind(est.kind)
    _ESTIMATORS[key] = est
    return est


def unregister(name: str) -> None:
    """Remove the estimator of ``method=name`` (its kind stays known, for saved results).

    Examples
    --------
    >>> unregister("no-such-method")
    Traceback (most recent call last):
    ...
    hierlm.errors.MethodError: unknown method 'no-such-method'; use one of reml, ml, nuts
    """
    estimator(name)
    del _ESTIMATORS[name.lower()]


def estimator(method: str) -> Estimator:
    """The estimator of ``method=method`` (case-insensitive).

    Examples
    --------
    >>> estimator("REML").kind.label, estimator("nuts").kind.posterior
    ('REML', True)
    """
    key = method.lower() if isinstance(method, str) else method
    try:
        return _ESTIMATORS[key]
    except (KeyError, TypeError):
        raise MethodError(f"unknown method {method!r}; use one of "
                          f"{', '.join(_ESTIMATORS)}") from None


def estimator_names() -> tuple[str, ...]:
    """The names ``method=`` takes, in the order registered.

    Examples
    --------
    >>> estimator_names()[:3]
    ('reml', 'ml', 'nuts')
    """
    return tuple(_ESTIMATORS)


for _builtin in (REML_ESTIMATOR, ML_ESTIMATOR, NUTS_ESTIMATOR):
    register(_builtin)
