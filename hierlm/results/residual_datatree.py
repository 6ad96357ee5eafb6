"""The residual-structure parameters of a fit as DataTree variables.

For a fit with ``residual=`` / ``sigma=`` the ``estimate`` and ``bootstrap`` groups of
:func:`hierlm.results.datatree.to_datatree` carry, besides ``sigma`` (the residual SD of
the reference level, nlme's ``sigma(fit)``):

``ar1_phi`` / ``car1_phi`` / ``cs_rho``
    The correlation parameter, named by its structure: the correlation of two
    observations one visit (``ar1``) or one time unit (``car1``) apart, or of any two
    observations of a group (``cs``); ``res.residual_parameters["rho"]``.
``log_sd_ratio[sigma_term]``
    The coefficients ``delta`` of the log-linear SD model: a row's residual SD is
    ``sigma * exp(v' delta)``, ``sigma_term`` the columns ``v`` of the ``sigma=`` model
    (``"log_sd_ratio:<column>"`` in ``res.residual_parameters``).

Each variable's ``long_name`` attribute says this with the fit's own formula.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

CORR_NAMES = {"ar1": ("ar1_phi", "correlation of observations one visit apart"),
              "car1": ("car1_phi", "correlation of observations one time unit apart"),
              "cs": ("cs_rho", "correlation of any two observations of a group")}


def residual_variables(res: Any, table: pd.DataFrame, lead: tuple[str, ...]
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data_vars, coords)`` of the residual parameters in the rows of ``table`` (one
    per draw; columns named as ``res.residual_parameters``), with leading dims ``lead``
    (the rows reshaped to the lengths of ``lead``).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, residual="ar1(Days | Subject)")
    >>> data, _ = residual_variables(res, res.residual_parameters.to_frame().T, ("draw",))
    >>> list(data), data["ar1_phi"][2]["long_name"][:27]
    (['ar1_phi'], 'correlation of observations')
    """
    par = getattr(res, "residual_parameters", None)
    if par is None or len(par) == 0:
        return {}, {}
    shape = (1,) * (len(lead) - 1) + (len(table),)
    data: dict[str, Any] = {}
    coords: dict[str, Any] = {}
    names = list(par.index)
    structure = getattr(res, "residual", None)
    if names and names[0] == "rho" and structure:
        kind = str(structure).split("(", 1)[0].strip()
        name, what = CORR_NAMES.get(kind, ("rho", "residual correlation"))
        data[name] = (lead, table["rho"].to_numpy(dtype=np.float64).reshape(shape),
                      {"long_name": f"{what} ({structure})"})
        names = names[1:]
    if names:
        terms = [n.split(":", 1)[1] if ":" in n else n for n in names]
        coords["sigma_term"] = terms
        vals = np.column_stack([table[n].to_numpy(dtype=np.float64) for n in names])
        data["log_sd_ratio"] = (
            (*lead, "sigma_term"), vals.reshape(*shape, len(names)),
            {"long_name": f"log of the residual SD over sigma per column of the SD model "
                          f"(sigma = {getattr(res, 'sigma_formula', None)})"})
    return data, coords
