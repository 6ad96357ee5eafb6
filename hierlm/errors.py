"""Exceptions raised by hierlm.

Every problem with user input is reported as one of these, with a one-line
message that names the column, term or value at fault.
"""

from __future__ import annotations

import os
import warnings

# Warnings point at the caller's line: the first frame outside the package.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the first caller outside hierlm."""
    warnings.warn(message, category, skip_file_prefixes=(_PACKAGE_DIR,))


class HierlmError(Exception):
    """Base class for all hierlm errors."""


class FormulaError(HierlmError, ValueError):
    """The model formula cannot be parsed or is not a linear mixed model."""


class DataError(HierlmError, ValueError):
    """The data cannot support the model (missing columns, wrong types, too few rows...)."""


class MethodError(HierlmError, ValueError):
    """An unknown fitting method, or bad options for one."""


class PriorError(HierlmError, ValueError):
    """An invalid prior specification for ``method="nuts"``."""


class ConvergenceWarning(UserWarning):
    """The optimizer stopped without meeting the convergence criteria."""


class SingularFitWarning(UserWarning):
    """A variance component is estimated on the boundary (lme4's isSingular)."""


class ResultFileError(HierlmError, ValueError):
    """A saved :class:`~hierlm.FitResult` cannot be written or read back.

    Raised for a path that is not a saved result, a file written by an incompatible
    hierlm (its ``format_version``), damaged files, or a value of a type the format
    does not store.
    """


class IdentifiabilityWarning(UserWarning):
    """Some parameters of the model are not identified by the data (a flat likelihood)."""
