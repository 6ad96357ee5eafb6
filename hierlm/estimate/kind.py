"""What kind of estimates a fit holds, asked of the record instead of its method string.

A fit record's ``method`` is a public label (``"REML"``, ``"ML"``, ``"NUTS"``, or the
label of an estimator registered later, :mod:`hierlm.estimate.registry`).  The modules
after the fit (inference, prediction, summaries, plots) need to know what the
estimates *are*, not what they are called:

* ``criterion``: the criterion whose optimum they are, :attr:`Criterion.REML` (lme4's
  REML criterion) or :attr:`Criterion.ML` (the deviance, ``-2 log L``), or None when
  they optimize none (a posterior summary).  Profiles, bootstrap refits,
  Satterthwaite's and Kenward-Roger's df and likelihood-ratio tests need one;
  Kenward-Roger needs REML.
* ``posterior``: the estimates summarize posterior draws (``idata``), so intervals,
  predictions and tables come from the draws.

An :class:`EstimatorKind` answers both; :func:`kind_of` maps a record's label to its
kind, so a result read from disk (which stores the label only) answers the same.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hierlm.errors import MethodError

__all__ = ["ML", "NUTS", "REML", "Criterion", "EstimatorKind", "kind_of", "register_kind"]


class Criterion(enum.Enum):
    """The criterion a point estimate optimizes; its value is the built-in method's name."""

    REML = "reml"
    ML = "ml"


@dataclass(frozen=True)
class EstimatorKind:
    """What a fit's estimates are (module docstring).

    Parameters
    ----------
    label : str
        The record's ``method``, e.g. ``"REML"``.
    criterion : Criterion or None
        The criterion whose optimum the estimates are; None for none.
    posterior : bool
        Whether the estimates summarize posterior draws.

    Examples
    --------
    >>> REML.is_reml, REML.is_likelihood_fit, NUTS.posterior, NUTS.criterion is None
    (True, True, True, True)
    """

    label: str
    criterion: Criterion | None
    posterior: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.label, str) or not self.label:
            raise MethodError(f"an estimator kind needs a non-empty label, not {self.label!r}")
        if self.criterion is not None and not isinstance(self.criterion, Criterion):
            raise MethodError(f"criterion must be a Criterion or None, not {self.criterion!r}")

    @property
    def is_reml(self) -> bool:
        """The estimates optimize the REML criterion."""
        return self.criterion is Criterion.REML

    @property
    def is_ml(self) -> bool:
        """The estimates optimize the likelihood (minimize the deviance)."""
        return self.criterion is Criterion.ML

    @property
    def is_likelihood_fit(self) -> bool:
        """The estimates optimize the REML criterion or the likelihood."""
        return self.criterion is not None


REML = EstimatorKind("REML", Criterion.REML)
ML = EstimatorKind("ML", Criterion.ML)
NUTS = EstimatorKind("NUTS", None, posterior=True)

_KINDS: dict[str, EstimatorKind] = {k.label: k for k in (REML, ML, NUTS)}


def register_kind(kind: EstimatorKind) -> EstimatorKind:
    """Make ``kind`` known by its label (done by :func:`hierlm.estimate.registry.register`).

    Registering the same kind twice is harmless; another kind under a known label is an
    error, since saved results are read back by their label.

    Examples
    --------
    >>> register_kind(EstimatorKind("REML", Criterion.REML)) == REML
    True
    """
    if not isinstance(kind, EstimatorKind):
        raise MethodError(f"an estimator's kind must be an EstimatorKind, not "
                          f"{type(kind).__name__}")
    known = _KINDS.setdefault(kind.label, kind)
    if known != kind:
        raise MethodError(f"the label {kind.label!r} is already registered as {known}")
    return known


def kind_of(label: str) -> EstimatorKind:
    """The kind of the estimates a record labelled ``label`` holds.

    Examples
    --------
    >>> kind_of("ML").is_ml, kind_of("NUTS").posterior
    (True, True)
    """
    try:
        return _KINDS[label]
    except (KeyError, TypeError):
        raise MethodError(f"unknown estimation method {label!r}: no estimator registered "
                          f"it (import the module that registers it); known: "
                          f"{', '.join(_KINDS)}") from None
