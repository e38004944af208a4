"""Barnes-Hut repulsion for 3-D (and any d <= 3) embeddings: an octree in Numba.

The compiled core's quadtree covers 2-D; this module gives scikit-learn's
``n_components=3`` Barnes-Hut. Same convention as
:func:`fastrl.manifold.tsne.gradients.bh_repulsion`: with
``u = (1 + d^2 / dof)^-1`` and ``w = u^dof`` it returns
``R_i = sum_j w_ij u_ij (y_i - y_j)`` and ``Z = sum_{i != j} w_ij``, a cell
standing for all its points when ``width / distance < theta``.
"""
from __future__ import annotations

import numba
import numpy as np

MAX_DEPTH = 48  # points closer than width / 2^48 share a leaf


@numba.njit(cache=True)
def _build(Y):
    """Octree (2^d children per cell) over the rows of Y. Returns per node:
    centre, half width, point count, sum of positions, first child (-1: leaf)
    and, per point, its leaf."""
    n, d = Y.shape
    nch = 1 << d
    cap = 8 * n + 64
    center = np.zeros((cap, d))
    half = np.zeros(cap)
    count = np.zeros(cap, dtype=np.int64)
    psum = np.zeros((cap, d))
    child = np.full(cap, -1, dtype=np.int64)  # index of the first of nch consecutive children
    pid = np.full(cap, -1, dtype=np.int64)    # one point of a leaf
    depth = np.zeros(cap, dtype=np.int64)
    lo = np.empty(d)
    hi = np.empty(d)
    for c in range(d):
        lo[c] = Y[:, c].min()
        hi[c] = Y[:, c].max()
    w = 0.0
    for c in range(d):
        center[0, c] = 0.5 * (lo[c] + hi[c])
        w = max(w, hi[c] - lo[c])
    half[0] = 0.5 * w * (1 + 1e-9) + 1e-300
    n_nodes = 1
    for i in range(n):
        node = 0
        while True:
            count[node] += 1
            for c in range(d):
                psum[node, c] += Y[i, c]
            if child[node] >= 0:  # internal: descend
                q = 0
                for c in range(d):
                    if Y[i, c] > center[node, c]:
                        q |= 1 << c
                node = child[node] + q
                continue
            if count[node] == 1:  # empty leaf taken
                pid[node] = i
                break
            j = pid[node]
            same = True
            for c in range(d):
                if Y[i, c] != Y[j, c]:
                    same = False
            if same or depth[node] >= MAX_DEPTH:  # aggregate leaf
                break
            if n_nodes + nch > cap:  # grow the arrays
                cap2 = 2 * cap
                center = np.concatenate((center, np.zeros((cap2 - cap, d))))
                half = np.concatenate((half, np.zeros(cap2 - cap)))
                count = np.concatenate((count, np.zeros(cap2 - cap, dtype=np.int64)))
                psum = np.concatenate((psum, np.zeros((cap2 - cap, d))))
                child = np.concatenate((child, np.full(cap2 - cap, -1, dtype=np.int64)))
                pid = np.concatenate((pid, np.full(cap2 - cap, -1, dtype=np.int64)))
                depth = np.concatenate((depth, np.zeros(cap2 - cap, dtype=np.int64)))
                cap = cap2
            first = n_nodes
            n_nodes += nch
            child[node] = first
            for q in range(nch):
                h = 0.5 * half[node]
                half[first + q] = h
                depth[first + q] = depth[node] + 1
                for c in range(d):
                    center[first + q, c] = center[node, c] + (h if (q >> c) & 1 else -h)
            # move the old point(s) one level down: j and any coincident with it (an aggregate
            # leaf); i continues the loop from this node
            q = 0
            for c in range(d):
                if Y[j, c] > center[node, c]:
                    q |= 1 << c
            cj = first + q
            count[cj] = count[node] - 1
            pid[cj] = j
            for c in range(d):
                psum[cj, c] = psum[node, c] - Y[i, c]
            pid[node] = -1
            # undo this level's count for i: the loop adds it again on the internal node
            count[node] -= 1
            for c in range(d):
                psum[node, c] -= Y[i, c]
    leaf = np.empty(n, dtype=np.int64)
    for i in range(n):
        node = 0
        while child[node] >= 0:
            q = 0
            for c in range(d):
                if Y[i, c] > center[node, c]:
                    q |= 1 << c
            node = child[node] + q
        leaf[i] = node
    return half[:n_nodes], count[:n_nodes], psum[:n_nodes], child[:n_nodes], leaf


@numba.njit(parallel=True, cache=True)
def _repulse(Y, half, count, psum, child, leaf, theta, dof, out, zrow):
    n, d = Y.shape
    nch = 1 << d
    theta2 = theta * theta
    for i in numba.prange(n):
        stack = np.empty(64 * nch, dtype=np.int64)
        top = 0
        stack[top] = 0
        top += 1
        r = np.zeros(d)
        z = 0.0
        while top > 0:
            top -= 1
            node = stack[top]
            cnt = count[node]
            if node == leaf[i]:
                cnt -= 1  # leave the point itself out
            if cnt <= 0:
                continue
            com = np.empty(d)
            d2 = 0.0
            for c in range(d):
                s = psum[node, c] - (Y[i, c] if node == leaf[i] else 0.0)
                com[c] = s / cnt
                diff = Y[i, c] - com[c]
                d2 += diff * diff
            is_leaf = child[node] < 0
            width = 2.0 * half[node]
            if is_leaf or width * width < theta2 * d2:
                u = 1.0 / (1.0 + d2 / dof)
                wq = u if dof == 1.0 else u ** dof
                z += cnt * wq
                for c in range(d):
                    r[c] += cnt * wq * u * (Y[i, c] - com[c])
            else:
                base = child[node]
                for q in range(nch):
                    if count[base + q] > 0:
                        stack[top] = base + q
                        top += 1
        for c in range(d):
            out[i, c] = r[c]
        zrow[i] = z


def bh_repulsion_nd(Y, *, theta: float = 0.5, dof: float = 1.0):
    """Barnes-Hut repulsion of an (N, d) embedding, d <= 3 (octree for d = 3).

    Returns
    -------
    R : ndarray of float64, shape (N, d)
    Z : float
    """
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    if Y.ndim != 2 or not 1 <= Y.shape[1] <= 3:
        raise ValueError(f"Y must have shape (N, d) with d <= 3, got {Y.shape}")
    half, count, psum, child, leaf = _build(Y)
    out = np.empty_like(Y)
    z = np.empty(Y.shape[0])
    _repulse(Y, half, count, psum, child, leaf, float(theta), float(dof), out, z)
    return out, float(z.sum())
