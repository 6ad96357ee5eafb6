"""The PyMC model's log density as the three graphs NUTS compiles.

:func:`pymc_pieces` takes the PyMC model of :mod:`hierlm.estimate.nuts_model`, built
with generic term names, and returns the inputs, outputs and metadata of

``logp``     ``x -> (log p(x), d log p / dx)``, ``log p = log priors (with their
             log-Jacobians) - deviance(x) / 2``
``expand``   ``x -> (beta, sigma, sd_i, L_i)`` flattened (the constrained draws)
``forward``  constrained values -> ``x``

where ``x`` is the vector of the model's value variables (unconstrained coordinates)
joined in order, with a symbolic length on the fixed-effect axis
(:func:`_join`).  :mod:`hierlm.estimate.nuts_compiled` compiles and caches them.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from hierlm.estimate.nuts_model import build_model
from hierlm.estimate.priors import Priors
from hierlm.objective.profiled import ProfiledObjective

__all__ = ["pymc_pieces"]


def _python_thunks() -> Any:
    """PyTensor evaluates graphs with Python thunks in the block, compiling no C.

    The two one-off helper evaluations below (PyMC's initial point, the value shapes)
    would otherwise compile every node to C (about 15 s for sleepstudy on an empty
    cache) and, for the matrix product in the LKJ transform's Scan, look for BLAS link
    flags, warning "could not link to a BLAS installation" where there are none.
    hierlm's own graphs are compiled by Numba, which calls BLAS and LAPACK through
    SciPy (:mod:`hierlm.objective.lapack`): the warning never applied to them.
    """
    return pytensor.config.change_flags(cxx="")


def _templates(model: Any, point: dict[str, np.ndarray]) -> dict[str, tuple[int | None, ...]]:
    """Shape of each value variable, ``None`` on the fixed-effect (``coef``) axis."""
    out = {}
    for rv in model.free_RVs:
        v = model.rvs_to_values[rv]
        dims = tuple(model.named_vars_to_dims.get(rv.name, ()))
        shape: tuple[int | None, ...] = tuple(int(d) for d in np.shape(point[v.name]))
        if "coef" in dims:
            if model.rvs_to_transforms.get(rv) is not None:
                raise RuntimeError(f"{rv.name} is transformed and sized by the fixed effects")
            shape = tuple(None if d == "coef" else s for d, s in zip(dims, shape, strict=True))
        out[v.name] = shape
    return out


def _join(x: Any, value_vars: list[Any], templates: dict[str, tuple[int | None, ...]],
          n_coef: Any, outputs: list[Any]) -> list[Any]:
    """``outputs`` with the value variables read from the vector ``x`` in turn (as
    PyMC's ``join_nonshared_inputs``, but with symbolic lengths on the ``coef`` axis,
    so the graph serves any number of fixed effects)."""
    from pytensor.graph.replace import clone_replace

    replace, pos = {}, 0
    for v in value_vars:
        shape = [n_coef if d is None else d for d in templates[v.name]]
        size = functools.reduce(lambda a, b: a * b, shape, 1)
        piece = pt.reshape(x[pos:pos + size], shape, ndim=len(shape)).astype(v.dtype)
        replace[v] = v.type.filter_variable(piece)
        pos = pos + size
    return [clone_replace(o, replace, rebuild_strict=False) for o in outputs]


def pymc_pieces(objective: ProfiledObjective, pr: Priors) -> dict[str, Any]:
    """Inputs, outputs and metadata of the three graphs, from a PyMC model built with
    generic names (:func:`hierlm.estimate.nuts_model.generic_labels`)."""

    model, _ = build_model(objective, pr, generic=True)
    value_vars = model.value_vars
    with _python_thunks():
        point = model.initial_point()
    templates = _templates(model, point)
    logp = model.logp()
    grads: Any = pt.grad(logp, value_vars)
    values = model.replace_rvs_by_values(model.free_RVs)
    flat = pt.concatenate([pt.as_tensor(v).ravel() for v in values])
    x = pt.vector("x")
    outs = _join(x, value_vars, templates, model.dim_lengths["coef"], _without_parameter_checks(
        [logp, pt.concatenate([g.ravel() for g in grads]), flat,
         *[pt.as_tensor(v).shape for v in values]]))
    x0 = np.concatenate([np.ravel(point[v.name]) for v in value_vars])
    with _python_thunks():
        shapes = pytensor.function([x], outs[3:], mode="FAST_COMPILE")(x0)
    constrained, unconstrained = [], []
    for rv in model.free_RVs:
        c = rv.type(name=rv.name)
        tr = model.rvs_to_transforms.get(rv)
        constrained.append(c)
        unconstrained.append(c if tr is None else tr.forward(c, *rv.owner.inputs))
    names = tuple(rv.name for rv in model.free_RVs)
    dims = {n: tuple(model.named_vars_to_dims[n]) for n in names if n in model.named_vars_to_dims}
    meta = {
        "names": names,
        "shapes": tuple(tuple(None if dims.get(n, ())[j:j + 1] == ("coef",) else int(d)
                              for j, d in enumerate(np.ravel(sh)))
                        for n, sh in zip(names, shapes, strict=True)),
        "dims": dims,
        "value_names": tuple(v.name for v in value_vars),
        "value_shapes": tuple(templates[v.name] for v in value_vars),
    }
    by_value = dict(zip([model.rvs_to_values[rv].name for rv in model.free_RVs],
                        unconstrained, strict=True))
    forward = pt.concatenate([pt.as_tensor(by_value[v.name]).ravel() for v in value_vars])
    return {"logp": ([x], outs[:2], meta), "expand": ([x], outs[2:3], meta),
            "forward": (constrained, [forward], meta)}


def _without_parameter_checks(outputs: list[Any]) -> list[Any]:
    """``outputs`` with PyMC's parameter checks removed (what ``pm.Model(check_bounds=
    False)`` does when PyMC compiles).  The checks test the priors' parameters, which
    :mod:`hierlm.estimate.priors` has validated, and the transformed values, which are
    valid by construction; without them the graphs hold no PyMC Op, so loading them
    from disk does not import PyMC."""
    from pymc.logprob.utils import CheckParameterValue
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import ancestors

    while True:
        checks = {v: v.owner.inputs[0] for v in ancestors(outputs)
                  if v.owner is not None and isinstance(v.owner.op, CheckParameterValue)}
        if not checks:
            return outputs
        outputs = clone_replace(outputs, replace=checks)
