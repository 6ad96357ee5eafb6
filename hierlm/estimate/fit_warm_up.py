"""Compile a model structure's fit evaluation and descent loop in a background process.

(Or, for the payload :data:`hierlm.estimate.kernel_loop.WARM_UP_PAYLOAD`, the descent
loop around the hand-written kernel, which serves every unstructured structure.)

``python -m hierlm.estimate.fit_warm_up FILE`` reads ``(design, gram)`` pickled in
``FILE`` (and deletes it), links the objective with Numba and compiles the structure's
compiled evaluation (:mod:`hierlm.estimate.psi_call`) and the fit's descent loop
(:mod:`hierlm.estimate.descent_loop`) into Numba's disk cache, at the lowest CPU
priority.  :func:`hierlm.estimate.descent_loop.warm_up` starts it when a warm process
finds a structure's code not cached (a background thread only loads); the process
that started it loads the code once it has finished, and later processes from the
start.  How the file and the lock are handled:
:mod:`hierlm.estimate.warm_up_process`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hierlm.estimate import warm_up_process

#: Name of the temporary file :func:`hierlm.estimate.descent_loop.warm_up` hands over.
PREFIX = "hierlm-fit-warm-up-"


def compile_structure(design: object, gram: object) -> bool:
    """Compile (or load) the structure's evaluation and loop; whether both are there."""
    from hierlm.covariance.design import DesignCovariance
    from hierlm.estimate import descent_loop, psi_call
    from hierlm.objective import compile_objective

    objective = compile_objective(design, gram, backend="numba")  # type: ignore[arg-type]
    call = psi_call.PsiCall(objective, DesignCovariance.of(objective.design))
    fn = psi_call._function(objective, call.layout, call.log_scale)
    return fn is not None and descent_loop.build(objective, fn) is not None


def main(argv: list[str]) -> int:
    """Entry point: ``argv = [FILE]``; 2 (nothing read, nothing deleted) for a FILE that
    :func:`hierlm.estimate.warm_up_process.handed_over` does not recognise."""
    path = Path(argv[0]) if len(argv) == 1 else Path()
    if not warm_up_process.handed_over(path, PREFIX):
        return 2
    payload = warm_up_process.read_handed_over(path)
    from hierlm.estimate import kernel_loop
    from hierlm.objective.graph_cache import cache_dir
    from hierlm.objective.profiled import structure_of

    folder = cache_dir()
    if folder is None:
        return 0
    if payload == kernel_loop.WARM_UP_PAYLOAD:  # the loop that serves every structure
        lock = warm_up_process.lock_path(folder, payload, "fit-warm-up")
        warm_up_process.compile_locked(lock, kernel_loop.build)
        return 0
    design, gram = payload
    lock = warm_up_process.lock_path(folder, structure_of(design, gram),  # type: ignore[arg-type]
                                     "fit-warm-up")
    warm_up_process.compile_locked(lock, lambda: compile_structure(design, gram))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
