"""The blocked ``q x q`` matrix of :mod:`hierlm.inference.schur_blocks` against its dense form.

Each piece that avoids a ``q_1 x q_r`` or ``q_1 x q_1`` array (the diagonal blocks
``H_k`` summed over pairs of nonzeros, the traces ``<(I (x) E) N, N D>`` from a few of
``N``'s columns at a time, ``N`` kept as ``C - Xa'Z - S'R``) must equal the same
quantity computed from the dense matrices with NumPy, to 1e-12 relative, for one and
two effects a level, diagonal and non-diagonal ``D``, and both ways of forming ``H_k``.
A model large enough to split ``N`` into many chunks must give the dense ``q x q``
path's Satterthwaite and Kenward-Roger quantities.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from hierlm.inference import schur_blocks
from hierlm.inference.schur_blocks import CrossBlock, SchurBlocks


def parts(p1, l1=40, qr=15, ps=3, seed=0):
    """Random blocks: ``G`` (SPD level blocks), sparse ``Xa``, ``S``, SPD ``Pm``, and
    ``N = C - Xa'Z - S'R`` with ``C`` sparse."""
    rng = np.random.default_rng(seed)
    q1 = l1 * p1
    B = rng.normal(size=(l1, p1, p1))
    G = B @ np.swapaxes(B, 1, 2) + 3 * np.eye(p1)
    Xa = sp.random(qr, q1, density=0.15, random_state=seed, format="csr")
    S = rng.normal(size=(ps, q1))
    A = rng.normal(size=(qr, qr))
    Pm = A @ A.T / qr + np.eye(qr)
    C = sp.random(q1, qr, density=0.1, random_state=seed + 1, format="csr")
    Z, R = rng.normal(size=(qr, qr)), rng.normal(size=(ps, qr))
    return G, Xa, S, Pm, C, Z, R


def dense_first(G, Xa, S, Pm):
    """``diag_k(G_k) - Xa' Pm Xa - S'S`` formed."""
    l1, p1 = G.shape[0], G.shape[1]
    D = np.zeros((l1 * p1, l1 * p1))
    for k in range(l1):
        D[k * p1:(k + 1) * p1, k * p1:(k + 1) * p1] = G[k]
    X = Xa.toarray()
    return D - X.T @ Pm @ X - S.T @ S


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(b).max())


@pytest.mark.parametrize("p1", [1, 2])
@pytest.mark.parametrize("way", ["pairs", "whole"])
def test_diagonal_blocks_and_traces_match_dense(p1, way, monkeypatch):
    if way == "pairs":          # summed over pairs of nonzeros, whatever the cost
        monkeypatch.setattr(schur_blocks, "PAIR_COST", 0)
    else:                       # Xa'Pm formed
        monkeypatch.setattr(schur_blocks, "MAX_PAIRS", 0)
    G, Xa, S, Pm, C, Z, R = parts(p1)
    M = SchurBlocks(G, Xa, S, Pm, np.zeros((G.shape[0] * p1, Pm.shape[0])), np.eye(15))
    low = dense_first(G, Xa, S, Pm)
    l1 = G.shape[0]
    blocks = np.stack([G[k] - low[k * p1:(k + 1) * p1, k * p1:(k + 1) * p1]
                       for k in range(l1)])   # diagonal blocks of U Pt U'
    assert rel(M.H, blocks) < 1e-12
    rng = np.random.default_rng(3)
    B = rng.normal(size=(l1, p1, p1))
    ref = sum(np.trace(B[k] @ blocks[k]) for k in range(l1))
    assert M.trace(B) == pytest.approx(ref, rel=1e-12)
    # Pt U' D U for D = I (x) E
    E = rng.normal(size=(p1, p1))
    E = E + E.T
    U = np.hstack([Xa.toarray().T, S.T])
    Pt = np.eye(U.shape[1])
    Pt[:15, :15] = Pm
    K = Pt @ U.T @ np.kron(np.eye(l1), E) @ U
    assert rel(M.kmat(E), K) < 1e-12


@pytest.mark.parametrize("p1", [1, 2])
@pytest.mark.parametrize("chunk", [1 << 17, 7])
def test_cross_traces_match_dense(p1, chunk, monkeypatch):
    monkeypatch.setattr(schur_blocks, "CHUNK_ENTRIES", chunk)   # many chunks
    G, Xa, S, Pm, C, Z, R = parts(p1, seed=5)
    l1, qr = G.shape[0], Pm.shape[0]
    N = CrossBlock(C, Xa, Z, S, R)
    Nd = C.toarray() - Xa.toarray().T @ Z - S.T @ R
    assert rel(N.columns(slice(None)), Nd) < 1e-12
    x = np.random.default_rng(1).normal(size=(qr, 2))
    assert rel(N.matmul(x), Nd @ x) < 1e-12
    y = np.random.default_rng(2).normal(size=l1 * p1)
    assert rel(N.rmatmul(y), Nd.T @ y) < 1e-12
    rng = np.random.default_rng(4)
    E = [e + e.T for e in rng.normal(size=(3, p1, p1))]
    diag = sp.diags(rng.normal(size=qr)).tocsr()
    pairs = sp.random(qr, qr, density=0.2, random_state=2)
    sym = (pairs + pairs.T).tocsr()                        # off-diagonal entries too
    D = [diag, sym, sp.csr_matrix((qr, qr))]
    M = SchurBlocks(G, Xa, S, Pm, N, np.eye(qr))
    got = M.cross_traces(E, D)
    ref = np.array([[np.sum((np.kron(np.eye(l1), e) @ Nd) * (Nd @ d.toarray())) for d in D]
                    for e in E])
    assert got.shape == (3, 3)
    assert rel(got, ref) < 1e-12
    # and the products with vectors through the blocks
    MD = np.block([[dense_first(G, Xa, S, Pm), Nd], [Nd.T, np.eye(qr)]])
    x1, xr = rng.normal(size=(l1, p1)), rng.normal(size=qr)
    y1, yr = M.matvec(x1, xr)
    assert rel(np.concatenate([y1.ravel(), yr]), MD @ np.concatenate([x1.ravel(), xr])) < 1e-12
    X1, Xr = rng.normal(size=(l1 * p1, 2)), rng.normal(size=(qr, 2))
    Y1, Yr = M.matmat(X1, Xr)
    assert rel(np.vstack([Y1, Yr]), MD @ np.vstack([X1, Xr])) < 1e-12


def test_many_chunks_give_the_dense_quantities(monkeypatch):
    # N split into single columns and the diagonal blocks from Xa'Pm: the Satterthwaite
    # and Kenward-Roger quantities stay the dense q x q path's
    from hierlm.inference import kenward_roger, varpar_dense
    from tests.inference.test_varpar_schur import compare, fitted, frame

    res = fitted("y ~ x + (x | g) + (1 + x | h)", frame())
    obj = res.model.objective
    dense = kenward_roger._kr_info(res, levels=False)
    monkeypatch.setattr(schur_blocks, "CHUNK_ENTRIES", 1)
    monkeypatch.setattr(schur_blocks, "MAX_PAIRS", 0)
    for reml in (True, False):
        compare(obj, res.theta, res.sigma, reml)
    monkeypatch.setattr(varpar_dense, "SCHUR_MIN_Q", 0)
    monkeypatch.setattr(kenward_roger, "v_products", None)  # must not be reached
    fast = kenward_roger._kr_info(res)
    np.testing.assert_allclose(fast.phi_adj, dense.phi_adj, rtol=1e-10, atol=0)
    np.testing.assert_allclose(fast.W, dense.W, rtol=1e-9, atol=1e-12 * np.abs(dense.W).max())
    L = np.eye(res.fixef.size)
    assert fast.ddf(L) == pytest.approx(dense.ddf(L), rel=1e-10)
