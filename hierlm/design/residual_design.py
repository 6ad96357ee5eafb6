"""The residual structure of a model evaluated on its rows (stage 1 of ``residual=``).

For ``ar1`` and ``car1`` the rows of each group, sorted by time, form a Markov chain:
the whitening of a group's errors needs only each row's predecessor in its group and
the time gap to it (:mod:`hierlm.objective.residual_gram`).  For ``cs`` it needs the
group sizes.  For ``sigma=`` it needs the model matrix ``V`` of the log-SD model,
without its intercept.

The correlation groups must lie within one level of every random-effects grouping
factor (nlme's rule: the correlation's groups are nested in the random effects'), so
that whitening within a group keeps each row in a single level of every term.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.columns import _variables, formulae_common
from hierlm.design.frames import as_pandas
from hierlm.design.matrices import RANK_TOL, build_design
from hierlm.design.model_matrix import ModelMatrix, build_model_matrix
from hierlm.design.residual_spec import ResidualSpec, check_times, parse_residual, parse_sigma
from hierlm.design.terms import ModelDesign
from hierlm.errors import DataError, FormulaError, MethodError


@dataclass(frozen=True, eq=False)
class ResidualDesign:
    """Residual structure on the rows of a design.

    Attributes
    ----------
    spec : ResidualSpec or None
        The correlation structure (None: independent errors).
    sigma_formula : str or None
        The ``sigma=`` formula as given (None: one residual SD).
    group : ndarray of int, shape (n,)
        Correlation group of each row (all 0 without a structure).
    prev : ndarray of int, shape (n,)
        Row of the previous observation of the same group in time, -1 for a first one.
    gap : ndarray, shape (n,)
        Time since that observation (0 where ``prev`` is -1).
    V : ndarray, shape (n, k)
        Model matrix of the log-SD model without intercept (``k = 0`` without ``sigma=``).
    v_names : tuple of str
        Its column names.
    time : ndarray, shape (n,)
        Each row's time (0 for ``cs`` and without a structure).
    v_matrix : ModelMatrix or None
        The coding of the log-SD model, to code new rows (:meth:`v_of`).
    """

    spec: ResidualSpec | None
    sigma_formula: str | None
    group: np.ndarray
    prev: np.ndarray
    gap: np.ndarray
    V: np.ndarray
    v_names: tuple[str, ...]
    time: np.ndarray
    v_matrix: Any = None

    def v_of(self, frame: pd.DataFrame) -> np.ndarray:
        """The log-SD model matrix (no intercept) of new rows, coded like the fitting rows."""
        if self.v_matrix is None:
            return np.zeros((len(frame), 0))
        M = np.asarray(self.v_matrix.code(frame), dtype=float)
        keep = [i for i, c in enumerate(self.v_matrix.names) if c != "(Intercept)"]
        return M[:, keep]

    @property
    def n_corr(self) -> int:
        """Correlation parameters: 1 with a structure, else 0."""
        return 0 if self.spec is None else 1

    @property
    def n_params(self) -> int:
        """Residual parameters besides sigma."""
        return self.n_corr + self.V.shape[1]

    @property
    def group_sizes(self) -> np.ndarray:
        return np.bincount(self.group)

    @property
    def param_names(self) -> tuple[str, ...]:
        """``"rho"`` (with a structure), then ``"log_sd_ratio:<column>"`` per column of V."""
        corr = ("rho",) if self.spec is not None else ()
        return corr + tuple(f"log_sd_ratio:{c}" for c in self.v_names)


def residual_columns(residual: object, sigma: object) -> set[str]:
    """The data columns a ``residual=`` / ``sigma=`` pair reads (checked specs).

    Examples
    --------
    >>> sorted(residual_columns("ar1(visit | id)", "~ sex"))
    ['id', 'sex', 'visit']
    """
    cols: set[str] = set()
    if residual is not None:
        cols |= set(parse_residual(residual).columns)
    if sigma is not None:
        cols |= _variables(parse_sigma(sigma), "sigma= formula")
    return cols


def _sigma_matrix(rhs: str, frame: pd.DataFrame
                  ) -> tuple[np.ndarray, tuple[str, ...], ModelMatrix]:
    mm = build_model_matrix(rhs, frame, None, "sigma= formula", formulae_common)
    names = list(mm.names)
    if "(Intercept)" not in names:
        raise FormulaError(f"sigma= formula '~ {rhs}' needs its intercept (sigma is the "
                           f"reference level's SD); remove '0' or '- 1'")
    keep = [i for i, c in enumerate(names) if c != "(Intercept)"]
    M = np.asarray(mm.values, dtype=float)
    if not np.all(np.isfinite(M)):
        raise DataError(f"sigma= formula '~ {rhs}' has non-finite values")
    s = np.linalg.svd(M, compute_uv=False)
    if s.size and s[-1] <= RANK_TOL * s[0]:
        raise DataError(f"sigma= formula '~ {rhs}': its model matrix is rank deficient "
                        f"(columns {', '.join(names)}); drop a term or an empty level")
    return np.ascontiguousarray(M[:, keep]), tuple(names[i] for i in keep), mm


def build_residual(residual: object, sigma: object, frame: pd.DataFrame,
                   design: ModelDesign) -> ResidualDesign:
    """The residual structure of ``design`` on ``frame`` (its rows, in design order).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> r = build_residual("ar1(Days | Subject)", None, d, des)
    >>> r.prev[:3].tolist(), r.gap[:3].tolist(), r.param_names
    ([-1, 0, 1], [0.0, 1.0, 1.0], ('rho',))
    """
    n = design.nobs
    spec = None if residual is None else parse_residual(residual)
    group = np.zeros(n, dtype=np.int64)
    prev = np.full(n, -1, dtype=np.int64)
    gap = np.zeros(n)
    t = np.zeros(n)
    if spec is not None:
        codes, _ = pd.factorize(frame[spec.group].astype(str), sort=True)
        group = np.asarray(codes, dtype=np.int64)
        for term in design.terms:
            lo = np.full(group.max() + 1, np.iinfo(np.int64).max)
            hi = np.full(group.max() + 1, -1)
            np.minimum.at(lo, group, term.codes)
            np.maximum.at(hi, group, term.codes)
            if np.any(lo != hi):
                raise MethodError(
                    f"residual {spec.text}: the groups of '{spec.group}' must each lie within "
                    f"one level of the random-effects grouping '{term.group}' (as in nlme); "
                    f"group the residuals by '{term.group}' or by a factor nested in it")
        if spec.time is not None:
            t = check_times(spec, frame[spec.time], group)
            order = np.lexsort((t, group))
            first = np.r_[True, group[order][1:] != group[order][:-1]]
            prev[order[~first]] = order[:-1][~first[1:]]
            gap[order[~first]] = np.diff(t[order])[~first[1:]]
    V, names, mm = ((np.zeros((n, 0)), (), None) if sigma is None
                    else _sigma_matrix(parse_sigma(sigma), frame))
    return ResidualDesign(spec=spec, sigma_formula=None if sigma is None else str(sigma),
                          group=group, prev=prev, gap=gap, V=V, v_names=names, time=t,
                          v_matrix=mm)


def design_with_residual(formula: str, data: object, residual: object, sigma: object,
                         **kwargs: object) -> tuple[ModelDesign, ResidualDesign]:
    """:func:`~hierlm.design.matrices.build_design` plus the residual structure.

    The residual columns must be complete: a row missing its time or group is an
    error, not dropped.  Row labels are the caller's.

    Examples
    --------
    >>> import hierlm
    >>> des, rd = design_with_residual("Reaction ~ Days + (1 | Subject)",
    ...                                hierlm.load_sleepstudy(), "cs(1 | Subject)", None)
    >>> rd.group_sizes[:3].tolist()
    [10, 10, 10]
    >>> design_with_residual("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy(),
    ...                      "ar1(visit | Subject)", None)
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: residual= / sigma= column(s) not found in data: visit
    """
    frame = as_pandas(data, "data")
    cols = residual_columns(residual, sigma)
    missing = sorted(c for c in cols if c not in frame.columns)
    if missing:
        raise DataError(f"residual= / sigma= column(s) not found in data: {', '.join(missing)}")
    incomplete = [c for c in sorted(cols) if frame[c].isna().any()]
    if incomplete:
        raise DataError(f"residual= / sigma= column(s) with missing values: "
                        f"{', '.join(incomplete)}; drop those rows first")
    plain = frame.reset_index(drop=True)
    design = build_design(formula, plain, **kwargs)  # type: ignore[arg-type]
    pos = np.asarray(design.row_labels, dtype=np.int64)
    gone = np.asarray(design.dropped_rows, dtype=np.int64)
    design = dataclasses.replace(design, row_labels=frame.index[pos],
                                 dropped_rows=frame.index[gone])
    rd = build_residual(residual, sigma, plain.iloc[pos].reset_index(drop=True), design)
    return design, rd
