"""Memory locality for large t-SNE fits: points re-ordered along a space-filling curve.

The attractive pass reads ``Y[j]`` for every stored ``p_ij``; with the
points in the caller's order those reads are random and, past the caches,
dominate an iteration. Sorting the points along a Hilbert curve of the
current embedding (a Morton curve in 1-D and 3-D) puts the neighbours of a
point close to it in memory. :class:`Reordering` applies such an order to the
embedding, the optimiser's state and P (``P[perm][:, perm]``) inside
:func:`~fastrl.manifold.tsne.optimizer.run_phase`, re-applies it every so many
iterations as the embedding moves, and maps results back to the caller's order.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from fastrl.manifold.tsne.gradients import CSRParts

CURVE_BITS = 16        # Hilbert cells per axis: 2^16 (2-D keys of 32 bits)
MORTON_BITS = 21       # Morton cells per axis in 1-D / 3-D: 3 x 21 bits fit a uint64
# reorder="auto" re-orders from this size on. benchmarks/bench_tsne_locality.py (2-core Zen 3, shared and
# loaded, min of 7): the attractive pass in a random vs the Hilbert order took 16 vs 15 ms at 50k points
# (Y in cache: no gain), 48 vs 24 ms at 100k, 203 vs 73 ms at 200k, 1.66 vs 0.11 s at 1M; one
# Reordering.apply cost 0.23 s, 0.38 s, 1.0 s, 5.8 s: repaid within 4-15 iterations from 100k on.
# Whole MNIST 70k fits (PCA-50, 750 iterations, same idle Zen 3, 2 rounds each): attractive pass
# 9.4-9.9 s without against 6.4-7.2 s with (re-ordering 0.35-0.81 s), 32.4-33.5 s against 27.4-30.4 s
# in all: the threshold sits between 50k (break-even) and 70k.
REORDER_MIN_N = 60_000
REORDER_EVERY = 250    # iterations between re-orderings (first at the initialisation)


@numba.njit(parallel=True, cache=True)
def _hilbert_keys(Y, lo, scale, bits):
    """Hilbert index of each row of the 2-D ``Y`` on a 2^bits x 2^bits grid."""
    n = Y.shape[0]
    side = (1 << bits) - 1
    keys = np.empty(n, dtype=np.uint64)
    for i in numba.prange(n):
        x = min(max(np.int64((Y[i, 0] - lo) * scale), 0), side)
        y = min(max(np.int64((Y[i, 1] - lo) * scale), 0), side)
        d = np.int64(0)
        s = np.int64(1) << (bits - 1)
        while s > 0:
            rx = 1 if (x & s) > 0 else 0
            ry = 1 if (y & s) > 0 else 0
            d += s * s * ((3 * rx) ^ ry)
            if ry == 0:  # rotate the quadrant
                if rx == 1:
                    x = side - x
                    y = side - y
                x, y = y, x
            s >>= 1
        keys[i] = np.uint64(d)
    return keys


@numba.njit(parallel=True, cache=True)
def _morton_keys(Y, lo, scale, bits):
    """Morton (Z-order) index of each row of ``Y`` (d <= 3): bits of the coordinates interleaved."""
    n, d = Y.shape
    side = (1 << bits) - 1
    keys = np.empty(n, dtype=np.uint64)
    for i in numba.prange(n):
        key = np.uint64(0)
        for c in range(d):
            q = np.uint64(min(max(np.int64((Y[i, c] - lo) * scale), 0), side))
            for b in range(bits):
                key |= ((q >> np.uint64(b)) & np.uint64(1)) << np.uint64(b * d + c)
        keys[i] = key
    return keys


def spatial_order(Y: np.ndarray) -> np.ndarray:
    """Order of the rows of ``Y`` along a space-filling curve over their
    square bounding box: Hilbert in 2-D, Morton (Z-order) in 1-D and 3-D.

    Parameters
    ----------
    Y : ndarray, shape (N, d), d <= 3

    Returns
    -------
    perm : ndarray of int64, shape (N,)
        A permutation: ``Y[perm]`` lists the points along the curve (ties keep their order).
    """
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    if Y.ndim != 2 or not 1 <= Y.shape[1] <= 3:
        raise ValueError(f"Y must have shape (N, d) with d <= 3, got {Y.shape}")
    if not np.isfinite(Y).all():
        raise ValueError("Y contains NaN or inf")
    lo, hi = float(Y.min()), float(Y.max())
    bits = CURVE_BITS if Y.shape[1] == 2 else MORTON_BITS
    scale = (2.0 ** bits) / max(hi - lo, 1e-300)
    keys = (_hilbert_keys if Y.shape[1] == 2 else _morton_keys)(Y, lo, scale, bits)
    return np.argsort(keys, kind="stable")


def inverse_permutation(perm: np.ndarray) -> np.ndarray:
    """``inv`` with ``inv[perm[i]] = i``.

    Parameters
    ----------
    perm : ndarray of int, shape (N,)
        A permutation of ``0..N-1`` (checked).

    Returns
    -------
    ndarray of int64, shape (N,)
    """
    perm = np.asarray(perm)
    n = perm.shape[0]
    if perm.ndim != 1 or (n and (perm.min() < 0 or perm.max() >= n)):
        raise ValueError(f"perm must be a permutation of 0..N-1, got shape {perm.shape}")
    inv = np.full(n, -1, dtype=np.int64)
    inv[perm] = np.arange(n, dtype=np.int64)
    if n and inv.min() < 0:
        raise ValueError("perm must be a permutation of 0..N-1: some values repeat")
    return inv


@numba.njit(parallel=True, cache=True)
def _permute_rows(indptr, indices, data, perm, inv, new_indptr, out_indices, out_data):
    """Rows moved as ``perm`` says, columns relabelled by ``inv`` and sorted."""
    for i in numba.prange(perm.shape[0]):
        s, e, o = indptr[perm[i]], indptr[perm[i] + 1], new_indptr[i]
        cols = np.empty(e - s, dtype=np.int32)
        for t in range(e - s):
            cols[t] = inv[indices[s + t]]
        order = np.argsort(cols)
        for t in range(e - s):
            out_indices[o + t] = cols[order[t]]
            out_data[o + t] = data[s + order[t]]


@numba.njit(parallel=True, cache=True)
def _move_rows(indptr, src, perm, new_indptr, out):
    """One CSR array's rows moved as ``perm`` says (entries keep their order within a row)."""
    for i in numba.prange(perm.shape[0]):
        s, e, o = indptr[perm[i]], indptr[perm[i] + 1], new_indptr[i]
        for t in range(e - s):
            out[o + t] = src[s + t]


@numba.njit(parallel=True, cache=True)
def _move_cols(indptr, src, perm, new_indptr, out, inv):
    """As :func:`_move_rows` for the column ids, each mapped by ``inv``."""
    for i in numba.prange(perm.shape[0]):
        s, e, o = indptr[perm[i]], indptr[perm[i] + 1], new_indptr[i]
        for t in range(e - s):
            out[o + t] = inv[src[s + t]]


def _permuted_indptr(indptr, perm):
    if indptr.shape[0] != perm.shape[0] + 1:
        raise ValueError(f"perm has {perm.shape[0]} entries; P has {indptr.shape[0] - 1} rows")
    new_indptr = np.zeros_like(indptr)
    np.cumsum(np.diff(indptr)[perm], out=new_indptr[1:])
    return new_indptr


def permute_csr_arrays(indptr, indices, data, perm, inv=None, *, sort: bool = True):
    """``P[perm][:, perm]`` on raw CSR arrays of a square matrix, in parallel over rows.

    Parameters
    ----------
    indptr : ndarray of int64, shape (N + 1,)
    indices : ndarray of int32, shape (nnz,)
    data : ndarray of float64, shape (nnz,)
    perm : ndarray of int64, shape (N,)
        Row / column ``i`` of the result is row / column ``perm[i]`` of P.
    inv : ndarray of int64, shape (N,), optional
        :func:`inverse_permutation` of ``perm`` (computed when not given).
    sort : bool
        Sort the column indices of each row of the result (4-5x the time of
        the permutation alone; the gradient does not need it).

    Returns
    -------
    (indptr, indices, data) : the result's CSR arrays, same dtypes
    """
    perm = np.ascontiguousarray(perm, dtype=np.int64)
    # int32 (P's column ids are int32): half the cache footprint of the random gathers inv[indices]
    inv = (inverse_permutation(perm) if inv is None else np.asarray(inv)).astype(np.int32)
    new_indptr = _permuted_indptr(indptr, perm)
    out_indices = np.empty_like(indices)
    out_data = np.empty_like(data)
    if sort:
        _permute_rows(indptr, indices, data, perm, inv, new_indptr, out_indices, out_data)
    else:
        _move_cols(indptr, indices, perm, new_indptr, out_indices, inv)
        _move_rows(indptr, data, perm, new_indptr, out_data)
    return new_indptr, out_indices, out_data


def permute_csr(P, perm) -> sp.csr_matrix:
    """``P[perm][:, perm]`` of a square sparse matrix, as CSR with sorted indices.

    Parameters
    ----------
    P : scipy.sparse matrix, shape (N, N)
    perm : ndarray of int, shape (N,)

    Returns
    -------
    scipy.sparse.csr_matrix, shape (N, N)
        int64 indptr, int32 indices, float64 data.
    """
    P = sp.csr_matrix(P)
    if P.shape[0] != P.shape[1]:
        raise ValueError(f"P must be square, got shape {P.shape}")
    arrays = permute_csr_arrays(np.ascontiguousarray(P.indptr, dtype=np.int64),
                                np.ascontiguousarray(P.indices, dtype=np.int32),
                                np.ascontiguousarray(P.data, dtype=np.float64), perm)
    out = sp.csr_matrix((arrays[2], arrays[1], arrays[0]), shape=P.shape)
    out.has_sorted_indices = True
    return out


class PermutedCSRParts(CSRParts):
    """``P[perm][:, perm]`` of an already checked
    :class:`~fastrl.manifold.tsne.gradients.CSRParts` (same layout; rows
    keep their entries' order, so the column indices are unsorted): no
    conversion and no re-check of the values.

    With ``consume=True`` the arrays of ``parts`` are released one at a time
    as their permuted copies are made (``parts`` is unusable after): the
    permutation then costs one array of P more (the largest, nnz values),
    instead of a second copy of P.

    Parameters
    ----------
    parts : CSRParts, shape (N, N)
    perm : ndarray of int64, shape (N,)
    consume : bool
    """

    def __init__(self, parts: CSRParts, perm: np.ndarray, *, consume: bool = False):  # noqa: no re-check
        if parts.shape[0] != parts.shape[1]:
            raise ValueError(f"P must be square, got shape {parts.shape}")
        self.shape = parts.shape
        perm = np.ascontiguousarray(perm, dtype=np.int64)
        inv = inverse_permutation(perm).astype(np.int32)
        self.indptr = _permuted_indptr(parts.indptr, perm)
        self.indices = np.empty_like(parts.indices)
        _move_cols(parts.indptr, parts.indices, perm, self.indptr, self.indices, inv)
        if consume:
            parts.indices = None
        self.data = np.empty_like(parts.data)
        _move_rows(parts.indptr, parts.data, perm, self.indptr, self.data)
        if consume:
            parts.data = parts.indptr = None


def reorder_wanted(reorder, n: int, method: str) -> bool:
    """Whether a fit of ``n`` points by ``method`` re-orders: ``reorder`` True or
    False as given, ``"auto"`` on the sparse CPU methods from :data:`REORDER_MIN_N` points on."""
    if method not in ("fft", "barnes_hut"):
        return False
    return n >= REORDER_MIN_N if isinstance(reorder, str) else bool(reorder)


class Reordering:
    """Keeps an optimisation's points in :func:`spatial_order`.

    ``order[i]`` is the caller's index of internal point ``i``. Each
    :meth:`apply` re-sorts the current embedding in place, with the
    optimiser's per-point state (``update``, ``gains``) and the objective's
    P (a :class:`~fastrl.manifold.tsne.gradients.CSRParts`, replaced by
    ``P[perm][:, perm]``).

    Parameters
    ----------
    every : int, optional
        :meth:`maybe` re-orders at iterations that are multiples of this
        (default :data:`REORDER_EVERY`, read at construction).
    """

    def __init__(self, every: int | None = None):
        self.every = int(REORDER_EVERY if every is None else every)
        self.order: np.ndarray | None = None
        self.count = 0
        self.seconds = 0.0

    def apply(self, Y: np.ndarray, objective, optimizer) -> None:
        """Re-sort ``Y`` (N, d), ``optimizer``'s state and ``objective.P`` along the curve of ``Y``."""
        import time

        tic = time.perf_counter()
        perm = spatial_order(Y)
        for arr in (Y, optimizer.update, optimizer.gains):
            arr[:] = arr[perm]
        parts = objective.P
        objective.P = None  # the old P goes array by array while the new one is made
        objective.P = PermutedCSRParts(parts, perm, consume=True)
        self.order = perm if self.order is None else self.order[perm]
        self.count += 1
        self.seconds += time.perf_counter() - tic

    def maybe(self, it: int, Y: np.ndarray, objective, optimizer) -> None:
        """:meth:`apply` when ``it`` is a multiple of ``every``."""
        if it % self.every == 0:
            self.apply(Y, objective, optimizer)

    def to_caller(self, Y: np.ndarray) -> np.ndarray:
        """A copy of per-point rows ``Y`` (N, ...) in the caller's order."""
        if self.order is None:
            return np.array(Y)
        out = np.empty_like(Y)
        out[self.order] = Y
        return out


__all__ = ["spatial_order", "inverse_permutation", "permute_csr", "permute_csr_arrays", "Reordering",
           "reorder_wanted", "PermutedCSRParts", "REORDER_MIN_N", "REORDER_EVERY"]
