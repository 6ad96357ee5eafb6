"""What a NUTS fit records about its sampling: settings, priors and diagnostics.

A :class:`NutsInfo` rides on the fit record (``res.nuts``; None for REML/ML fits).  Its
fields are typed and fixed, so the summary, the saved file and any reader find the
same names; :func:`hierlm.results.io.save` writes it field by field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


def _empty_diagnostics() -> pd.DataFrame:
    return pd.DataFrame(columns=["mean", "sd", "r_hat", "ess_bulk", "ess_tail"], dtype=float)


@dataclass(frozen=True, eq=False)
class NutsInfo:
    """Settings, priors and convergence diagnostics of one NUTS fit.

    Attributes
    ----------
    sampler : str
        ``"nutpie"`` or ``"pymc"``.
    draws, tune, chains : int
        Kept draws and tuning steps per chain, and the number of chains.
    target_accept : float
        NUTS target acceptance rate.
    init : str
        ``"reml"`` (jittered REML estimate) or ``"prior"`` (PyMC's default start).
    random_seed : int or None
        The seed the fit was given.
    sampling_time : float
        Seconds spent sampling (tuning included).
    priors : dict
        The priors used, resolved (:meth:`hierlm.estimate.priors.Priors.as_dict`).
    prior_lines : tuple of str
        The priors as text, one line per parameter.
    diagnostics : pandas.DataFrame
        ArviZ's ``mean, sd, r_hat, ess_bulk, ess_tail`` per parameter.
    divergences : int
        Divergent transitions after tuning.
    max_rhat, min_ess_bulk : float
        Largest r_hat and smallest bulk effective sample size in ``diagnostics``.
    ranef_draws : int
        Posterior draws that got a draw of the random effects.
    log_likelihood_note : str
        What the ``log_likelihood`` group holds, or why it is absent.
    loo : dict or None
        PSIS-LOO over the levels of the splitting factor (``unit``, ``n_units``,
        ``elpd_loo``, ``se``, ``p_loo``, ``n_bad_k``), or None.

    Examples
    --------
    >>> info = NutsInfo(sampler="pymc", draws=1000, tune=1000, chains=4)
    >>> info.divergences, info.as_dict()["sampler"]
    (0, 'pymc')
    """

    sampler: str
    draws: int
    tune: int
    chains: int
    target_accept: float = 0.9
    init: str = "reml"
    random_seed: int | None = None
    sampling_time: float = float("nan")
    priors: dict[str, Any] = field(default_factory=dict)
    prior_lines: tuple[str, ...] = ()
    diagnostics: pd.DataFrame = field(default_factory=_empty_diagnostics)
    divergences: int = 0
    max_rhat: float = float("nan")
    min_ess_bulk: float = float("nan")
    ranef_draws: int = 0
    log_likelihood_note: str = ""
    loo: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (shallow: the values themselves, not copies)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NutsInfo:
        """A :class:`NutsInfo` from :meth:`as_dict`'s keys (those of the untyped dict of
        results saved by earlier versions).

        Raises
        ------
        ValueError
            For a key that is not a field, or a missing ``sampler``, ``draws``, ``tune``
            or ``chains``.

        Examples
        --------
        >>> NutsInfo.from_dict({"sampler": "pymc", "draws": 5, "tune": 5, "chains": 1,
        ...                     "prior_lines": ["sigma ~ HalfStudentT(nu=3, scale=1)"]}).prior_lines
        ('sigma ~ HalfStudentT(nu=3, scale=1)',)
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in set(values) - known)
        if unknown:
            raise ValueError(f"unknown NUTS field(s): {', '.join(unknown)}")
        missing = [k for k in ("sampler", "draws", "tune", "chains") if k not in values]
        if missing:
            raise ValueError(f"missing NUTS field(s): {', '.join(missing)}")
        out = dict(values)
        if "prior_lines" in out:
            out["prior_lines"] = tuple(out["prior_lines"])
        return cls(**out)
