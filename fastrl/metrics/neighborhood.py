"""Neighbourhood-preservation metrics from kNN graphs: no N x N matrix.

``trustworthiness`` needs, for each point i and each of its k nearest
neighbours j in the embedding, the rank of j among i's neighbours in input
space. The rank is a count, ``#{l : d(i, l) < d(i, j)}`` (ties by index), so
rows are streamed in blocks: a block of squared distances comes from one GEMM
(``|x_l|^2 - 2 x_i.x_l``; the row constant ``|x_i|^2`` does not change ranks),
then a Numba kernel (CPU) or torch comparisons (CUDA) count. Memory is
O(block x N); time O(N^2 D) for the GEMM, O(N^2) for the counts.
"""
from __future__ import annotations

import numba
import numpy as np
import torch

from fastrl._validation import as_float_array, check_int, check_real


@numba.njit(parallel=True, cache=True, fastmath=False)
def _rank_excess(S, nbr, start, k):
    """Sum over each block row b (point i = start + b) of ``max(rank - k, 0)``
    for the neighbours ``nbr[b]``, ranks by (score, index) with i excluded.

    ``rank(j) - 1 = #{l < j : s_l <= s_j} + #{l > j : s_l < s_j}`` (minus
    one when l = i is counted): two branch-free passes per neighbour that
    the compiler vectorises.
    """
    B, n = S.shape
    m = nbr.shape[1]
    out = np.zeros(B, dtype=np.float64)
    for b in numba.prange(B):
        i = start + b
        row = S[b]
        total = 0.0
        for q in range(m):
            j = nbr[b, q]
            t = row[j]
            c = 0
            for l in range(j):
                c += row[l] <= t
            for l in range(j + 1, n):
                c += row[l] < t
            if (i < j and row[i] <= t) or (i > j and row[i] < t):
                c -= 1
            excess = c + 1 - k
            if excess > 0:
                total += excess
        out[b] = total
    return out


def _rank_excess_torch(S: torch.Tensor, nbr: torch.Tensor, start: int, k: int) -> torch.Tensor:
    """Torch version of :func:`_rank_excess` (used for CUDA tensors)."""
    B, n = S.shape
    rows = torch.arange(B, device=S.device)
    S = S.clone()
    S[rows, rows + start] = float("inf")
    thr = torch.gather(S, 1, nbr)                                   # (B, m)
    cols = torch.arange(n, device=S.device)
    less = (S[:, :, None] < thr[:, None, :]) | ((S[:, :, None] == thr[:, None, :])
                                                  & (cols[None, :, None] < nbr[:, None, :]))
    rank = less.sum(1) + 1
    return (rank - k).clamp_min(0).sum(1).double()


def _as_rows(X, name: str):
    """float tensor (float64 kept) on X's device; scipy.sparse input is densified."""
    if isinstance(X, torch.Tensor):
        check_real(X, name)
        if X.dim() != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"{name} must be 2-D and non-empty, got shape {tuple(X.shape)}")
        T = X.detach()
        T = T if T.dtype in (torch.float32, torch.float64) else T.float()
        if not bool(torch.isfinite(T).all()):
            raise ValueError(f"{name} contains NaN or inf")
        return T
    if hasattr(X, "toarray"):
        X = X.toarray()
    arr = check_real(np.asarray(X), name)
    return torch.from_numpy(as_float_array(arr, name, dtype=np.float64 if arr.dtype == np.float64 else np.float32))


def _knn_indices(T: torch.Tensor, k: int) -> torch.Tensor:
    from fastrl.neighbors import knn_graph
    idx, _ = knn_graph(T if T.is_cuda else T.cpu().numpy(), k)
    return torch.as_tensor(idx, device=T.device)


def _score_blocks(TX: torch.Tensor, metric, metric_params, B: int):
    """Yield ``(start, S)`` with S a (b, N) block whose order along each row
    is the order of input-space distances (Euclidean: ``|x_l|^2 - 2 x_i.x_l``
    from one GEMM; "precomputed": the rows of X; other metrics: scikit-learn's
    ``pairwise_distances``)."""
    n = TX.shape[0]
    if metric == "euclidean" and not metric_params:
        Xc = TX - TX.mean(0, keepdim=True)
        ones = torch.ones(n, 1, dtype=Xc.dtype, device=Xc.device)
        # rows [-2 x_i, 1] times columns [x_l, |x_l|^2]
        Q = torch.cat([-2.0 * Xc, ones], 1)
        K = torch.cat([Xc, (Xc * Xc).sum(1, keepdim=True)], 1).T.contiguous()
        for s in range(0, n, B):
            yield s, Q[s: s + B] @ K
        return
    A = TX.cpu().numpy()
    if metric == "precomputed":
        if A.shape[0] != A.shape[1]:
            raise ValueError(f"X must be a square distance matrix with metric='precomputed', got shape {A.shape}")
        for s in range(0, n, B):
            yield s, torch.from_numpy(np.ascontiguousarray(A[s: s + B], dtype=np.float64))
        return
    from sklearn.metrics import pairwise_distances
    for s in range(0, n, B):
        D = pairwise_distances(A[s: s + B], A, metric=metric, **dict(metric_params or {}))
        yield s, torch.from_numpy(np.ascontiguousarray(D, dtype=np.float64))


def trustworthiness(X, X_embedded, n_neighbors: int = 5, *, metric="euclidean", metric_params=None,
                    block_size: int | None = None) -> float:
    """Trustworthiness of an embedding (Venna & Kaski 2001), as scikit-learn's
    ``sklearn.manifold.trustworthiness`` but without its N x N matrices.

    ``T(k) = 1 - 2 / (N k (2N - 3k - 1)) sum_i sum_{j in U_k(i)} max(0, r(i, j) - k)``
    where ``U_k(i)`` are i's k nearest neighbours in the embedding and
    ``r(i, j)`` is j's rank among i's neighbours in X (ties broken by index, so
    the value equals scikit-learn's wherever distances are not tied).

    Parameters
    ----------
    X : ndarray, scipy.sparse matrix or torch.Tensor, shape (N, D), or (N, N) distances
        Input space. float64 input is ranked in float64.
    X_embedded : ndarray or torch.Tensor, shape (N, d)
        Embedding (Euclidean neighbours). CUDA tensors are processed on the GPU.
    n_neighbors : int
        ``1 <= n_neighbors < N / 2`` (scikit-learn's default 5).
    metric : str or callable
        Input-space metric: ``"euclidean"`` (streamed GEMM blocks),
        ``"precomputed"`` (X holds the distances) or any metric of
        scikit-learn's ``pairwise_distances`` (computed block by block).
    metric_params : dict, optional
    block_size : int, optional
        Rows per distance block, >= 1 (default: about 64 MiB of scores).

    Returns
    -------
    float in [0, 1]
    """
    TX, TE = _as_rows(X, "X"), _as_rows(X_embedded, "X_embedded")
    n = TX.shape[0]
    if TE.shape[0] != n:
        raise ValueError(f"X and X_embedded must have the same number of rows, got {n} and {TE.shape[0]}")
    k = check_int(n_neighbors, "n_neighbors", low=1)
    if k >= n / 2:
        raise ValueError(f"n_neighbors ({k}) should be less than n_samples / 2 ({n / 2})")
    if block_size is not None:
        check_int(block_size, "block_size", low=1)
    if metric_params is not None and not isinstance(metric_params, dict):
        raise TypeError(f"metric_params must be a dict or None, got {type(metric_params).__name__}")
    nbr = _knn_indices(TE, k).to(TX.device)
    TE = None
    B = block_size or max(1, min(n, (1 << 24) // n))
    total = 0.0
    for s, S in _score_blocks(TX, metric, metric_params, B):
        if S.is_cuda:
            total += float(_rank_excess_torch(S, nbr[s: s + S.shape[0]], s, k).sum())
        else:
            total += float(_rank_excess(S.numpy(), nbr[s: s + S.shape[0]].cpu().numpy(), s, k).sum())
    return 1.0 - total * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))


def knn_recall(X, E, k: int = 10) -> float:
    """Neighbourhood preservation: the mean fraction of each point's ``k``
    nearest neighbours in X that are also among its ``k`` nearest in E.

    Parameters
    ----------
    X : array-like, shape (N, D)
    E : array-like, shape (N, d)
    k : int
        ``1 <= k < N``.

    Returns
    -------
    float in [0, 1]
    """
    from fastrl.neighbors import knn_graph
    A, Em = as_float_array(X, "X"), as_float_array(E, "E")
    if A.shape[0] != Em.shape[0]:
        raise ValueError(f"X and E must have the same number of rows, got {A.shape[0]} and {Em.shape[0]}")
    k = check_int(k, "k", low=1)
    if k >= A.shape[0]:
        raise ValueError(f"k must be < N ({A.shape[0]}), got k={k}")
    ix, _ = knn_graph(A, k)
    ie, _ = knn_graph(Em, k)
    both = np.sort(np.concatenate([ix, ie], axis=1), axis=1)
    # each row of a kNN list is duplicate-free, so a repeated index is shared
    shared = (both[:, 1:] == both[:, :-1]).sum()
    return float(shared) / (A.shape[0] * k)


def _vote(neighbor_labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Majority label per row (ties: the smallest label, as scikit-learn)."""
    counts = np.zeros((neighbor_labels.shape[0], n_classes), dtype=np.int64)
    np.add.at(counts, (np.arange(neighbor_labels.shape[0])[:, None], neighbor_labels), 1)
    return counts.argmax(1)


def knn_accuracy(E, y, k: int = 10, cv: int | None = 5, *, random_state: int | None = 0) -> float:
    """Accuracy of a k-nearest-neighbour classifier (majority vote, Euclidean).

    Parameters
    ----------
    E : array-like, shape (N, d)
    y : array-like, shape (N,)
    k : int
        Neighbours that vote.
    cv : int or None
        Folds of the cross-validation (a random split, seeded by
        ``random_state``); ``None``: leave-one-out (each point's own
        neighbours, itself left out).
    random_state : int, optional

    Returns
    -------
    float in [0, 1]
        Mean accuracy over all points.
    """
    from fastrl.neighbors import knn_graph, knn_query
    A = as_float_array(E, "E")
    labels = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    n = A.shape[0]
    if labels.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match E, got {labels.shape}")
    classes, codes = np.unique(labels, return_inverse=True)
    k = check_int(k, "k", low=1)
    if cv is None:
        if k >= n:
            raise ValueError(f"k must be < N ({n}), got k={k}")
        idx, _ = knn_graph(A, k)
        return float((_vote(codes[idx], len(classes)) == codes).mean())
    cv = check_int(cv, "cv", low=2, high=n)
    folds = np.array_split(np.random.default_rng(random_state).permutation(n), cv)
    correct = 0
    for f in folds:
        train = np.ones(n, dtype=bool)
        train[f] = False
        tr = np.flatnonzero(train)
        if k > len(tr):
            raise ValueError(f"k must be <= the training fold size ({len(tr)}), got k={k}")
        idx, _ = knn_query(A[tr], A[f], k)
        correct += int((_vote(codes[tr][idx], len(classes)) == codes[f]).sum())
    return correct / n
