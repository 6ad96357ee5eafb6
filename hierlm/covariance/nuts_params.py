"""A covariance structure's correlation parameters as NUTS samples them.

NUTS samples a structured term's SDs as it samples an unstructured term's
(``HalfNormal``, :mod:`hierlm.estimate.priors`; a homogeneous SD takes the geometric
mean of the columns' scales) and its correlation parameters on their natural scale
(``ar1``'s and ``cs``'s ``rho``, ``toep``'s lag correlations), each ``Uniform`` over
its whole valid range: flat, so that the data and not the prior decide a correlation,
and every value in the range gives a positive definite ``R``.  :class:`NutsCorrelation`
holds the defaults every :class:`hierlm.covariance.base.Covariance` has (no correlation
parameters: ``R = I``); a structure with correlation parameters overrides
:meth:`NutsCorrelation.nuts_correlation_prior` (and, where its natural values are not
``R``'s parameters one to one, the other two).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np


class NutsCorrelation:
    """NUTS's parameterization of a structure's correlation matrix (module docstring).

    Examples
    --------
    >>> from hierlm.covariance.ar1 import AR1
    >>> c = AR1(("t1", "t2"), "g", np.ones(2))
    >>> isinstance(c, NutsCorrelation), c.nuts_correlation_prior()[1]
    (True, 1)
    """

    p: int
    homogeneous: ClassVar[bool]
    _eye: np.ndarray

    if TYPE_CHECKING:
        def correlation_from_natural(self, values: np.ndarray) -> np.ndarray: ...

        def natural(self, psi: np.ndarray, sigma: float) -> np.ndarray: ...

    def nuts_correlation_prior(self) -> tuple[str, int, float, float] | None:
        """NUTS's correlation parameters: ``(name, count, lower, upper)``, or None.

        Each is ``Uniform(lower, upper)`` over its whole valid range (module
        docstring).  A structure without correlation parameters has None.
        """
        return None

    def correlation_from_nuts(self, values: np.ndarray) -> np.ndarray:
        """``R`` from the values of :meth:`nuts_correlation_prior`'s parameters.

        Examples
        --------
        >>> from hierlm.covariance.ar1 import AR1
        >>> AR1(("t1", "t2"), "g", np.ones(2)).correlation_from_nuts(np.array([0.5])).tolist()
        [[1.0, 0.5], [0.5, 1.0]]
        """
        if self.nuts_correlation_prior() is None:
            return self._eye.copy()
        return self.correlation_from_natural(np.atleast_1d(np.asarray(values, dtype=float)))

    def nuts_correlation_start(self, psi: np.ndarray) -> np.ndarray:
        """The values of :meth:`nuts_correlation_prior`'s parameters at ``psi``."""
        n_sd = 1 if self.homogeneous else self.p
        return np.asarray(self.natural(np.asarray(psi, dtype=float), 1.0)[n_sd:], dtype=float)
