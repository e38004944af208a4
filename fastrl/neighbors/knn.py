"""kNN graph front end: validation, method choice and the calls into ``fastrl._C``.

The C++ contract (csrc/knn.h) takes C-contiguous float32 arrays and writes
into output arrays passed in; everything user-facing is checked here.
"""
from __future__ import annotations

import numpy as np
import torch

from fastrl._validation import as_float_array, check_choice, check_int, check_int32_points, check_real
from fastrl.neighbors.cpu_kernel import cpu_kernel

METHODS = ("auto", "exact", "approx")
METRICS = ("euclidean", "cosine")


def _core():
    try:
        from fastrl import _C
    except ImportError as exc:  # pragma: no cover - build problem
        raise ImportError("fastrl's compiled core (fastrl._C) is missing; reinstall with `pip install .`") from exc
    return _C


MAX_JOBS = 1 << 15


def _n_jobs(n_jobs) -> int:
    """None -> 0 (all cores); otherwise an int in [-MAX_JOBS, MAX_JOBS]."""
    if n_jobs is None:
        return 0
    return check_int(n_jobs, "n_jobs", low=-MAX_JOBS, high=MAX_JOBS)


def _as_array(X, name: str) -> np.ndarray:
    """float32 C-contiguous array from any real float/int array or tensor
    (bf16/fp16 tensors are upcast; complex input is refused)."""
    check_real(X, name)
    if isinstance(X, torch.Tensor) and X.dtype in (torch.bfloat16, torch.float16):
        X = X.detach().float()
    return as_float_array(X, name)


def _prepare(A, name: str, metric: str, center=None):
    """float32 C-contiguous copy of ``A`` (already a float32 array); cosine rows
    are unit-normalised, Euclidean rows are centred (distances are unchanged,
    the score expansion is more accurate)."""
    if metric == "cosine":
        norms = np.linalg.norm(A, axis=1, keepdims=True)
        A = A / np.where(norms > 0, norms, 1.0)
    elif center is not None:
        A = A - center
    return np.ascontiguousarray(A, dtype=np.float32)


def _prepare_compact(A0: np.ndarray, metric: str, jobs: int, pad: bool = False):
    """The rows to search, prepared like :func:`_prepare` (centred or unit) in
    one parallel pass, without the columns that are constant (they add exactly
    zero to every difference). Returns ``(P, keep)``: P has shape
    ``(N, len(keep))``; ``keep`` is None when every column is kept. ``pad``:
    rows of a multiple of 8 floats (zeros appended) from a 64-byte boundary, so
    that 32-byte vector loads never straddle a cache line."""
    n, d = A0.shape
    col_sum = np.empty(d, dtype=np.float64)
    varies = np.empty(d, dtype=np.uint8)
    _core().knn_column_stats(A0, metric, col_sum, varies, jobs)
    keep = np.flatnonzero(varies)
    if keep.size == d:
        keep_arg, keep = np.arange(d, dtype=np.int64), None
    else:
        keep_arg = keep if keep.size else np.zeros(1, dtype=np.int64)  # all rows equal: one column of zeros
        keep = keep_arg
    center = (col_sum / n).astype(np.float32) if metric == "euclidean" else None
    dout = -(-keep_arg.size // 8) * 8 if pad else keep_arg.size
    buf = np.empty(n * dout + 16, dtype=np.float32)
    off = (-buf.ctypes.data % 64) // 4
    P = buf[off: off + n * dout].reshape(n, dout)
    _core().knn_compact_rows(A0, metric, center, keep_arg, P, jobs)
    return P, keep


EXACT_MAX_COST = 4e11  # "auto": the exact scan while N^2 * D is at most this (twice for k >= 50)


def _choose_method(method: str, n: int, d: int, k: int) -> str:
    if method != "auto":
        return method
    # Exact whenever the O(N^2 D) scan is cheap, N^2 D <= 4e11 (about 10 s on
    # 2 cores: PCA-50 MNIST 70k at k = 90 in 6.7 s, where NN-descent takes
    # 11 s; raw MNIST 20k x 784 at k = 15 in 3 s), twice that for k >= 50,
    # where NN-descent's joins grow with k (at 100k x 50, k = 90 both take
    # ~14 s); NN-descent beyond (200k x 50, k = 90: 26 s against 42 s exact).
    if float(n) * n * d <= EXACT_MAX_COST * (2 if k >= 50 else 1):
        return "exact"
    return "approx"


def knn_graph(X, k: int, *, method: str = "auto", metric: str = "euclidean", n_jobs=None,
              random_state=None, n_trees=None, n_iters=None, metric_params=None):
    """k-nearest-neighbour graph of the rows of ``X``, the point itself left out.

    Parameters
    ----------
    X : ndarray or torch.Tensor, shape (N, D)
        float32 or float64 (C- or F-ordered). A CUDA tensor is searched on its
        device (see Notes) and the result is returned as CUDA tensors.
    k : int
        Neighbours per point, ``1 <= k < N``.
    method : {"auto", "exact", "approx"}
        ``"exact"``: blocked brute force (C++, SIMD, OpenMP). ``"approx"``:
        NN-descent started from a random-projection forest. ``"auto"`` picks
        exact when N²·D <= 4e11, 8e11 for k >= 50 (PCA-50 at k = 90 up to
        ~126k points, 784-d at k = 15 up to ~22k); NN-descent otherwise
        (CUDA tensors: always exact, on the GPU).
    metric : str or callable
        ``"euclidean"`` (not squared) or ``"cosine"`` (``1 - cos``) run the
        compiled path; ``"precomputed"`` (X is an (N, N) dense or CSR distance
        matrix) and any other metric of scikit-learn's ``pairwise_distances``
        go through :mod:`fastrl.neighbors.metrics` (exact search).
    n_jobs : int, optional
        Threads; None or -1 uses all cores.
    random_state : int, optional
        Seed for ``"approx"``.
    metric_params : dict, optional
        Extra keyword arguments of the metric (e.g. ``{"p": 3}`` for minkowski).
    n_trees, n_iters : int, optional
        NN-descent's forest size (>= 1) and maximum iterations (>= 0); the
        defaults scale with N.

    Returns
    -------
    indices : ndarray of int64, shape (N, k)
    distances : ndarray of float32, shape (N, k)
        Sorted ascending by distance (ties by index). torch tensors on X's
        device for a CUDA tensor.

    Notes
    -----
    A CUDA tensor with ``method="exact"`` or ``"auto"`` is searched exactly on
    its device with the compiled path's contract (ties by index, the k
    boundary included; distances in float64 on the data as given), in blocks
    of queries sized from the device's free memory
    (:mod:`fastrl.neighbors.torch_knn`); ``n_jobs`` is then unused.
    ``method="approx"`` has no GPU implementation: it warns once
    (``FallbackWarning``) and runs NN-descent on a host copy with the given
    ``random_state``, ``n_trees``, ``n_iters`` and ``n_jobs``, returning the
    result on X's device.
    """
    check_choice(method, "method", METHODS)
    if n_trees is not None:
        check_int(n_trees, "n_trees", low=1)
    if n_iters is not None:
        check_int(n_iters, "n_iters", low=0)
    if metric_params or not (isinstance(metric, str) and metric in METRICS):  # other metrics, precomputed
        from fastrl.neighbors.metrics import canonical_metric, metric_knn_graph
        kind, name, _ = canonical_metric(metric, metric_params)
        if kind != "fast":
            idx, dist = metric_knn_graph(X, check_int(k, "k", low=1), metric, metric_params, n_jobs=n_jobs)
            return idx, dist.astype(np.float32)
        metric = name
    if method == "approx" or (method == "auto" and not (isinstance(X, torch.Tensor) and X.is_cuda)):
        # NN-descent may run ("auto" on a CUDA tensor searches exactly there): int32 ids, checked before any copy
        check_int32_points(X, "X", "knn_graph(method='approx') (RP forest, NN-descent)")
    if not isinstance(X, torch.Tensor) and hasattr(X, "toarray"):  # scipy.sparse input
        X = X.toarray()
    if isinstance(X, torch.Tensor) and X.is_cuda:
        return _knn_graph_device(X, k, method, metric, n_jobs, random_state, n_trees, n_iters)
    A0 = _as_array(X, "X")
    n, d = A0.shape
    k = check_int(k, "k", low=1)
    if k >= n:
        raise ValueError(f"k must be < N (the number of points, {n}), got k={k}")
    jobs = _n_jobs(n_jobs)
    chosen = _choose_method(method, n, d, k)
    A, keep = _prepare_compact(A0, metric, jobs, pad=chosen == "approx")
    idx = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float32)
    if chosen == "exact":
        # scan the centred copy; exact distances and ties on the data as given
        # (its varying columns: the others add exact zeros)
        ref = None
        if metric == "euclidean":
            ref = A0
            if keep is not None:
                ref = np.empty((n, keep.size), dtype=np.float32)
                _core().knn_compact_rows(A0, metric, None, keep, ref, jobs)
        _core().knn_exact(A, A, k, metric, True, idx, dist, jobs, ref, ref, cpu_kernel=cpu_kernel())
    else:
        from fastrl.neighbors.nndescent import nndescent
        # A is this call's own prepared copy: NN-descent may reorder its rows in place
        nndescent(A, k, metric, idx, dist, jobs, random_state, n_trees=n_trees, n_iters=n_iters, scratch=True)
    return idx, dist


def _knn_graph_device(X: torch.Tensor, k, method: str, metric: str, n_jobs, random_state, n_trees, n_iters):
    """knn_graph of a tensor on its own device (the CUDA path; any device
    works, which is how the tests run it on CPU tensors)."""
    check_real(X, "X")
    if X.dim() != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must be 2-D and non-empty, got shape {tuple(X.shape)}")
    n = X.shape[0]
    k = check_int(k, "k", low=1)
    if k >= n:
        raise ValueError(f"k must be < N (the number of points, {n}), got k={k}")
    jobs = _n_jobs(n_jobs)
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X contains NaN or inf")
    if method == "approx":
        from fastrl._dispatch import warn_fallback
        warn_fallback("neighbors.knn_graph.approx_on_device",
                      f"fastrl: knn_graph(method='approx') on a {X.device.type} tensor: NN-descent has no GPU "
                      "implementation and runs on a host copy of X (the result is moved back to X's device); "
                      "method='exact' or 'auto' searches exactly on the device")
        idx, dist = knn_graph(_as_array(X, "X"), k, method="approx", metric=metric, n_jobs=jobs,
                              random_state=random_state, n_trees=n_trees, n_iters=n_iters)
        return torch.from_numpy(idx).to(X.device), torch.from_numpy(dist).to(X.device)
    from fastrl.neighbors.torch_knn import torch_knn
    return torch_knn(X, X, k, metric, exclude_self=True)


def knn_query(X_index, X_query, k: int, *, metric: str = "euclidean", n_jobs=None):
    """Exact k nearest neighbours in ``X_index`` of each row of ``X_query``.

    Used to place new points into an existing embedding.

    Parameters
    ----------
    X_index : ndarray or torch.Tensor, shape (N, D)
    X_query : ndarray or torch.Tensor, shape (M, D)
    k : int
        ``1 <= k <= N``.
    metric : {"euclidean", "cosine"}
    n_jobs : int, optional

    Returns
    -------
    indices : ndarray of int64, shape (M, k)
        Rows of ``X_index``.
    distances : ndarray of float32, shape (M, k)
    """
    check_choice(metric, "metric", METRICS)
    A0 = _as_array(X_index, "X_index")
    Q0 = _as_array(X_query, "X_query")
    if Q0.shape[1] != A0.shape[1]:
        raise ValueError(f"X_query has {Q0.shape[1]} features but X_index has {A0.shape[1]}")
    n = A0.shape[0]
    k = check_int(k, "k", low=1)
    if k > n:
        raise ValueError(f"k must be <= N (the number of index points, {n}), got k={k}")
    jobs = _n_jobs(n_jobs)
    center = A0.mean(0, dtype=np.float64).astype(np.float32) if metric == "euclidean" else None
    A = _prepare(A0, "X_index", metric, center)
    Q = _prepare(Q0, "X_query", metric, center)
    idx = np.empty((Q.shape[0], k), dtype=np.int64)
    dist = np.empty((Q.shape[0], k), dtype=np.float32)
    exact = (A0, Q0) if metric == "euclidean" else (None, None)
    _core().knn_exact(A, Q, k, metric, False, idx, dist, jobs, *exact, cpu_kernel=cpu_kernel())
    return idx, dist
