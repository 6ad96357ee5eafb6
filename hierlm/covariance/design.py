"""The covariance of a whole model: one structure per term, ``psi`` -> ``theta``.

``psi`` concatenates the terms' parameter vectors in the design's term order, as theta
concatenates their templates; ``theta(psi)`` is the concatenation of the terms' maps,
and ``d theta / d psi`` is block diagonal.  A model whose terms are all unstructured
has ``psi = theta`` (:attr:`DesignCovariance.structured` is False) and is fitted by
the theta optimizer unchanged.

The gradient of any function ``f`` of theta in psi is the chain rule
``grad_psi f = J' grad_theta f`` with ``J = d theta / d psi``; its Hessian adds the
second-order term ``sum_i (grad_theta f)_i d^2 theta_i / d psi^2``
(:meth:`DesignCovariance.hessian_psi`), which does not vanish at a structured optimum
(only ``J' grad_theta f`` does).
"""

from __future__ import annotations

import itertools
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.ar1 import AR1, HetAR1
from hierlm.covariance.base import Covariance
from hierlm.covariance.compound import CompoundSymmetry, HomCompoundSymmetry
from hierlm.covariance.diagonal import Diagonal, HomDiagonal
from hierlm.covariance.toeplitz import HomToeplitz, Toeplitz
from hierlm.covariance.unstructured import Unstructured
from hierlm.design.terms import STRUCTURES, ModelDesign, RandomTerm
from hierlm.errors import MethodError

#: The class of each structure, by glmmTMB's name.
CLASSES: dict[str, type[Covariance]] = {
    "us": Unstructured, "diag": Diagonal, "homdiag": HomDiagonal, "cs": CompoundSymmetry,
    "homcs": HomCompoundSymmetry, "ar1": AR1, "hetar1": HetAR1, "toep": Toeplitz,
    "homtoep": HomToeplitz,
}
assert set(CLASSES) == set(STRUCTURES)

# Step of the central differences of the (exact) Jacobian in hessian_psi.
_HESS_STEP = 1e-5


def column_rms(term: RandomTerm) -> np.ndarray:
    """Root mean square of each column of the term's model matrix (1 where it is 0).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> column_rms(d.terms[0]).round(4).tolist()
    [1.0, 5.3385]
    """
    if term.col_rms is None:
        # np.mean's own steps (a sum along the rows, divided by n): the same numbers,
        # without its Python overhead
        X = np.asarray(term.X, dtype=float)
        rms = np.sqrt(np.add.reduce(np.square(X), axis=0) / X.shape[0])
    else:
        rms = np.array(term.col_rms, dtype=float)  # rows read in chunks (a copy)
    if (rms > 0).all() and np.isfinite(rms).all():  # (the usual case: no np.where)
        return rms
    return np.where(np.isfinite(rms) & (rms > 0), rms, 1.0)


def group_labels(terms: Any) -> list[str]:
    """lme4's group labels: a repeated grouping factor gets ``.1``, ``.2``, ...

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days || Subject)", hierlm.load_sleepstudy())
    >>> group_labels(d.terms)
    ['Subject', 'Subject.1']
    """
    seen: dict[str, int] = {}
    out = []
    for term in terms:
        k = seen.get(term.group, 0)
        out.append(term.group if k == 0 else f"{term.group}.{k}")
        seen[term.group] = k + 1
    return out


#: One DesignCovariance per live design (designs are frozen and compared by identity).
_OF_CACHE: weakref.WeakKeyDictionary[ModelDesign, DesignCovariance] = weakref.WeakKeyDictionary()
_OF_LOCK = threading.Lock()
#: The last design looked up and its DesignCovariance (a weak reference to the design and
#: one tuple, replaced whole: a thread reads either the old pair or the new one), which
#: spares the repeated look-ups of one fit the weak dictionary's (1-2 us each).
_OF_LAST: list[tuple[weakref.ReferenceType[ModelDesign], DesignCovariance] | None] = [None]


@dataclass(frozen=True, eq=False)
class DesignCovariance:
    """The covariance objects of a design's terms and the map ``psi -> theta``.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> cov = DesignCovariance.of(d)
    >>> cov.structured, cov.n_psi, cov.labels()
    (False, 3, ['Subject: sd_(Intercept)', 'Subject: cor_Days.(Intercept)', 'Subject: sd_Days'])
    """

    terms: tuple[Covariance, ...]
    _slices: tuple[tuple[slice, slice], ...] = field(init=False, repr=False, compare=False)
    _n: tuple[int, int] = field(init=False, repr=False, compare=False)
    #: values that depend on the terms only (diagonal_index, theta_scale), made once
    _memo: dict[str, np.ndarray] = field(init=False, repr=False, compare=False,
                                         default_factory=dict)

    def __post_init__(self) -> None:
        # (Python's sums of ints: the same cuts as NumPy's cumsum, without its arrays)
        psi_cuts = list(itertools.accumulate([c.n_psi for c in self.terms], initial=0))
        theta_cuts = list(itertools.accumulate([c.n_theta for c in self.terms], initial=0))
        object.__setattr__(self, "_slices", tuple(
            (slice(int(a), int(b)), slice(int(c), int(d))) for a, b, c, d in
            zip(psi_cuts[:-1], psi_cuts[1:], theta_cuts[:-1], theta_cuts[1:], strict=True)))
        object.__setattr__(self, "_n", (int(psi_cuts[-1]), int(theta_cuts[-1])))

    @classmethod
    def of(cls, design: ModelDesign) -> DesignCovariance:
        """The covariance objects of ``design``'s terms (built once per design: the
        column scales read every row)."""
        last = _OF_LAST[0]  # the design asked last (a fit asks 8 times for its own)
        if last is not None and last[0]() is design:
            return last[1]
        hit = _OF_CACHE.get(design)  # (a read needs no lock: a dict lookup, atomic)
        if hit is not None:
            _OF_LAST[0] = (weakref.ref(design), hit)
            return hit
        labels = group_labels(design.terms)
        made = cls(tuple(CLASSES[getattr(t, "structure", "us")](t.coef_names, label,
                                                                column_rms(t))
                         for t, label in zip(design.terms, labels, strict=True)))
        with _OF_LOCK:
            made = _OF_CACHE.setdefault(design, made)
        _OF_LAST[0] = (weakref.ref(design), made)
        return made

    @property
    def structured(self) -> bool:
        """Whether any term has a structure other than ``us``."""
        return any(c.structure != "us" for c in self.terms)

    @property
    def n_psi(self) -> int:
        return int(self._n[0])

    @property
    def n_theta(self) -> int:
        return int(self._n[1])

    def _split(self, psi: np.ndarray) -> list[np.ndarray]:
        psi = np.asarray(psi)
        if psi.shape != (self.n_psi,):
            raise ValueError(f"psi must have length {self.n_psi}, got shape {psi.shape}")
        cuts = np.cumsum([c.n_psi for c in self.terms])[:-1]
        return np.split(psi, cuts)

    def split(self, psi: np.ndarray) -> list[np.ndarray]:
        """``psi`` cut into the terms' parts, in term order."""
        return self._split(psi)

    # --- theta's layout over the terms -----------------------------------------------
    def theta_slices(self) -> list[slice]:
        """Each term's slice of theta, in term order.

        Examples
        --------
        >>> import hierlm
        >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject) + (1 | Subject)",
        ...                         hierlm.load_sleepstudy())
        >>> DesignCovariance.of(d).theta_slices()
        [slice(0, 3, None), slice(3, 4, None)]
        """
        return [theta for _, theta in self._slices]  # (cut once, in __post_init__)

    def split_theta(self, theta: np.ndarray) -> list[np.ndarray]:
        """theta cut into the terms' slices along its last axis (leading dimensions, such
        as draws, kept)."""
        theta = np.asarray(theta)
        if theta.ndim == 0 or theta.shape[-1] != self.n_theta:
            raise ValueError(f"theta must have length {self.n_theta}, got shape {theta.shape}")
        return [theta[..., s] for s in self.theta_slices()]

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each term's template ``T_i`` from theta (leading dimensions kept)."""
        return [c.unpack(x) for c, x in zip(self.terms, self.split_theta(theta), strict=True)]

    def pack(self, templates: list[np.ndarray]) -> np.ndarray:
        """theta from the terms' templates (inverse of :meth:`templates`)."""
        parts = [c.pack(np.asarray(T)) for c, T in zip(self.terms, templates, strict=True)]
        return np.concatenate(parts, axis=-1) if parts else np.zeros(0)

    def diagonal_index(self) -> np.ndarray:
        """Positions in theta of the templates' diagonal entries (bounded below by 0).

        Examples
        --------
        >>> import hierlm
        >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> DesignCovariance.of(d).diagonal_index().tolist()
        [0, 2]
        """
        got = self._memo.get("diagonal_index")
        if got is None:
            parts = [s.start + c.diagonal_index()
                     for c, s in zip(self.terms, self.theta_slices(), strict=True)]
            got = (np.concatenate(parts).astype(np.int64) if parts
                   else np.zeros(0, np.int64))
            self._memo["diagonal_index"] = got
        return got.copy()

    def canonical_signs(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each term's template columns with a negative diagonal flipped (every ``T T'``
        unchanged): the flipped theta and a mask of the entries whose sign changed."""
        if len(self.terms) == 1:  # (one term: its own flip, no split and concatenation)
            theta = np.asarray(theta)
            if theta.shape != (self.n_theta,):
                raise ValueError(f"theta must have length {self.n_theta}, got shape "
                                 f"{theta.shape}")
            return self.terms[0].canonical_signs(theta)
        parts = [c.canonical_signs(x)
                 for c, x in zip(self.terms, self.split_theta(theta), strict=True)]
        if not parts:
            return np.zeros(0), np.zeros(0, dtype=bool)
        return (np.concatenate([a for a, _ in parts]),
                np.concatenate([m for _, m in parts]))

    def theta_scale(self) -> np.ndarray:
        """``1 / r_j`` for each theta entry, ``r_j`` the root mean square of the model-matrix
        column of the entry's template row (the optimizer's scaling of theta)."""
        got = self._memo.get("theta_scale")
        if got is None:
            parts = [1.0 / c.rms[c.template_index()[0]] for c in self.terms]
            got = np.concatenate(parts) if parts else np.zeros(0)
            self._memo["theta_scale"] = got
        return got.copy()

    def theta(self, psi: np.ndarray) -> np.ndarray:
        """theta of ``psi``, all terms."""
        return self.theta_jacobian(psi)[0].copy()

    def jacobian(self, psi: np.ndarray) -> np.ndarray:
        """``d theta / d psi``, block diagonal, shape ``(n_theta, n_psi)``."""
        return self.theta_jacobian(psi)[1].copy()

    def theta_jacobian(self, psi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``theta(psi)`` and ``d theta / d psi`` in one pass (each term's closed form,
        :meth:`Covariance.theta_jacobian`); read-only where there is one term.

        Examples
        --------
        >>> import hierlm
        >>> data = hierlm.load_sleepstudy().query("Days < 3").astype({"Days": str})
        >>> d = hierlm.build_design("Reaction ~ Days + ar1(0 + Days | Subject)", data)
        >>> theta, J = DesignCovariance.of(d).theta_jacobian(np.zeros(2))
        >>> theta.round(6).tolist(), J.shape   # relative SD 1 / rms: the columns are 0/1
        ([1.732051, 0.0, 0.0, 1.732051, 0.0, 1.732051], (6, 2))
        """
        psi = np.asarray(psi, dtype=float)
        n_psi, n_theta = self._n
        if psi.shape != (n_psi,):
            raise ValueError(f"psi must have length {n_psi}, got shape {psi.shape}")
        if len(self.terms) == 1:
            return self.terms[0].theta_jacobian(psi)
        theta = np.empty(n_theta)
        J = np.zeros((n_theta, n_psi))
        for c, (ps, ts) in zip(self.terms, self._slices, strict=True):
            theta[ts], J[ts, ps] = c.theta_jacobian(psi[ps])
        return theta, J

    def hessian_psi(self, psi: np.ndarray, grad_theta: np.ndarray,
                    hess_theta: np.ndarray) -> np.ndarray:
        """Hessian in psi of a function with theta-gradient ``g`` and theta-Hessian ``H``.

        ``J' H J + sum_i g_i d^2 theta_i / d psi^2``; the second derivatives are central
        differences of the exact (complex-step) Jacobian, symmetrized.
        """
        psi = np.asarray(psi, dtype=float)
        J = self.jacobian(psi)
        out = J.T @ hess_theta @ J
        second = np.zeros((self.n_psi, self.n_psi))
        for k in range(self.n_psi):
            e = np.zeros(self.n_psi)
            e[k] = _HESS_STEP
            dJ = (self.jacobian(psi + e) - self.jacobian(psi - e)) / (2 * _HESS_STEP)
            second[:, k] = dJ.T @ grad_theta
        return out + (second + second.T) / 2

    def psi_from_theta(self, theta: np.ndarray) -> np.ndarray:
        """The structures' psi of a theta on their family (e.g. a fitted result's theta)."""
        theta = np.asarray(theta, dtype=float)
        cuts = np.cumsum([c.n_theta for c in self.terms])[:-1]
        parts = [c.psi_from_theta(t) for c, t in zip(self.terms, np.split(theta, cuts),
                                                       strict=True)]
        return np.concatenate(parts) if parts else np.zeros(0)

    def natural_bounds(self) -> list[tuple[float, float]]:
        """Bounds of the natural parameters (SDs >= 0, correlations in their range)."""
        return [b for c in self.terms for b in c.natural_bounds()]

    def theta_from_natural(self, values: np.ndarray) -> tuple[np.ndarray, float]:
        """``(theta, sigma)`` from the natural parameters followed by sigma; ValueError
        where they give no positive semi-definite covariance or ``sigma <= 0``."""
        values = np.asarray(values, dtype=float)
        sigma = float(values[-1])
        if not sigma > 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        parts, k = [], 0
        for c in self.terms:
            n = len(c.natural_names())
            parts.append(c.theta_from_natural(values[k:k + n], sigma))
            k += n
        return (np.concatenate(parts) if parts else np.zeros(0)), sigma

    def psi_start(self) -> np.ndarray:
        parts = [c.psi_start() for c in self.terms]
        return np.concatenate(parts) if parts else np.zeros(0)

    def psi_bounds(self) -> list[tuple[float, float]]:
        return [b for c in self.terms for b in c.psi_bounds()]

    def psi_kinds(self) -> list[str]:
        """``"log_sd"``, ``"corr"`` or ``"theta"`` (an unstructured term's) per component."""
        return [k for c in self.terms for k in c.psi_kinds()]

    def names(self) -> list[str]:
        """lme4-style names of the natural parameters: ``sd_t1|Subject``, ``rho|Subject``."""
        return [n for c in self.terms for n in c.names()]

    def labels(self) -> list[str]:
        """Names of the natural parameters: ``Subject: sd_t1``, ``Subject: rho``."""
        return [n for c in self.terms for n in c.labels()]

    def natural(self, psi: np.ndarray, sigma: float) -> pd.Series:
        """The structures' own parameters (SDs on the response scale, correlations)."""
        vals = [c.natural(x, sigma) for c, x in zip(self.terms, self._split(psi), strict=True)]
        return pd.Series(np.concatenate(vals) if vals else np.zeros(0), index=self.labels(),
                         name="covariance_parameters", dtype=float)


def require_unstructured(design: ModelDesign, what: str) -> None:
    """MethodError naming ``what`` if a term of ``design`` has a structured covariance.

    Examples
    --------
    >>> import hierlm
    >>> data = hierlm.load_sleepstudy().query("Days < 4").astype({"Days": str})
    >>> d = hierlm.build_design("Reaction ~ Days + ar1(0 + Days | Subject)", data)
    >>> require_unstructured(d, "ranova")
    Traceback (most recent call last):
    ...
    hierlm.errors.MethodError: ranova is not supported yet for structured covariances (ar1 \
on Subject); fit by REML or ML, or use an unstructured term (1 + x | g)
    """
    cov = DesignCovariance.of(design)
    if cov.structured:
        which = ", ".join(f"{c.structure} on {c.group}" for c in cov.terms
                          if c.structure != "us")
        raise MethodError(f"{what} is not supported yet for structured covariances ({which}); "
                          f"fit by REML or ML, or use an unstructured term (1 + x | g)")
