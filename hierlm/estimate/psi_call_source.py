"""The source of :mod:`hierlm.estimate.psi_call`'s compiled function.

``hierlm_psi(psi, layout, log_scale, *graph inputs)``: each term's map from psi to
theta by its kernel (identity for an unstructured term, then ``diag``, ``ar1``, ``cs``,
``toep``), the graph's Numba function ``fn``, and the chain rule ``J' g``, with the
status of :data:`hierlm.estimate.psi_call.OK` and the others.  Numba compiles it
around the graph (``{args}``: the graph's inputs after theta); ``{kernels}`` is the
kernels' digest, so a changed kernel never runs stale machine code.
"""

from __future__ import annotations

__all__ = ["PSI_SOURCE"]

PSI_SOURCE = """
# kernels: {kernels}
def hierlm_psi(psi, layout, log_scale, {args}):
    n_terms = layout.shape[0]
    n_psi = psi.shape[0]
    last = n_terms - 1
    n_theta = layout[last, 5] + (layout[last, 2] * (layout[last, 2] + 1)) // 2
    theta = np.empty(n_theta)
    J = np.empty((n_theta, n_psi))
    at = 0
    for t in range(n_terms):
        p = layout[t, 2]
        s0 = layout[t, 3]
        t0 = layout[t, 5]
        kind = layout[t, 0]
        nt = (p * (p + 1)) // 2
        if kind == 0:
            theta[t0:t0 + nt] = psi[s0:s0 + nt]
        else:
            hom = layout[t, 1] != 0
            m = layout[t, 4]
            # C-contiguous arguments: the kernels' one cached specialization is linked
            # in (views would compile new ones, doubling this function's first compile)
            ps = psi[s0:s0 + m].copy()
            ls = log_scale[at:at + p].copy()
            th = np.empty(nt)
            Jt = np.empty((nt, m))
            if kind == 1:
                diag_kernel(ps, ls, hom, th, Jt)
            elif kind == 2:
                ar1_kernel(ps, ls, hom, th, Jt)
            elif kind == 3:
                cs_kernel(ps, ls, hom, th, Jt)
            else:
                toep_kernel(ps, ls, hom, th, Jt)
            for k in range(nt):
                theta[t0 + k] = th[k]
                for j in range(m):
                    J[t0 + k, s0 + j] = Jt[k, j]
        at += p
    gpsi = np.zeros(n_psi)
    for k in range(n_theta):
        if not np.isfinite(theta[k]):
            return 2, np.inf, gpsi, theta, np.zeros((0, 0, 0)), np.zeros((0, 0))
    out = fn(theta, {args})
    f = out[0].item()
    g = out[1]
    status = 0 if np.isfinite(f) else 1
    for k in range(n_theta):
        if not np.isfinite(g[k]):
            status = 1
    for t in range(n_terms):
        p = layout[t, 2]
        s0 = layout[t, 3]
        t0 = layout[t, 5]
        nt = (p * (p + 1)) // 2
        if layout[t, 0] == 0:
            for k in range(nt):
                gpsi[s0 + k] = g[t0 + k]
        else:
            for j in range(s0, s0 + layout[t, 4]):
                acc = 0.0
                for k in range(t0, t0 + nt):
                    acc += J[k, j] * g[k]
                gpsi[j] = acc
    return status, f, gpsi, theta, out[2], out[3]
"""
