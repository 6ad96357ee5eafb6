"""hierlm: linear mixed models from one PyTensor likelihood graph.

>>> import hierlm
>>> res = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", hierlm.load_sleepstudy())
>>> round(res.objective, 4)
1743.6283
"""

import time as _time

_IMPORT_STARTED = _time.perf_counter()  # hierlm.demo reports the import's own time

from typing import Any as _Any  # noqa: E402

from hierlm.datasets import load_sleepstudy
from hierlm.design.matrices import build_design
from hierlm.errors import (
    ConvergenceWarning,
    DataError,
    FormulaError,
    HierlmError,
    MethodError,
    PriorError,
    ResultFileError,
    SingularFitWarning,
)
from hierlm.model import Model, fit
from hierlm.results.load import load
from hierlm.results.result import FitResult
from hierlm.version import __version__


def anova(*fits: _Any) -> _Any:
    """Likelihood-ratio tests between nested models (lme4's ``anova(small, big)``).

    REML fits are refitted by ML first (the table's ``attrs["note"]`` says so).  One
    row per model, by increasing parameter count: ``npar, aic, bic, loglik, deviance,
    chisq, df, p`` and, where the smaller model drops one random coefficient,
    ``p_boundary`` (the chi-bar-square mixture p-value).  See
    :func:`hierlm.inference.lrt.compare`.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> t = hierlm.anova(hierlm.fit("Reaction ~ Days + (1 | Subject)", d),
    ...                  hierlm.fit("Reaction ~ Days + (Days | Subject)", d))
    >>> int(t["df"].iloc[1]), t.attrs["note"][:10]
    (2, 'REML fits ')
    """
    from hierlm.inference.lrt import compare

    return compare(*fits)

__all__ = [
    "ConvergenceWarning", "DataError", "FitResult", "FormulaError", "HierlmError",
    "MethodError", "Model", "PriorError", "ResultFileError", "SingularFitWarning",
    "anova", "build_design", "fit", "load", "load_sleepstudy", "__version__",
]
