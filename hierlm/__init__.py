"""hierlm: linear mixed models from one PyTensor likelihood graph.

>>> import hierlm
>>> res = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", hierlm.load_sleepstudy())
>>> round(res.objective, 4)
1743.6283
"""

import time as _time

_IMPORT_STARTED = _time.perf_counter()  # hierlm.demo reports the import's own time

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
from hierlm.results.io import load
from hierlm.results.result import FitResult

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning", "DataError", "FitResult", "FormulaError", "HierlmError",
    "MethodError", "Model", "PriorError", "ResultFileError", "SingularFitWarning",
    "build_design", "fit", "load", "load_sleepstudy", "__version__",
]
