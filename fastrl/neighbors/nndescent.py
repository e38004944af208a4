"""NN-descent front end: parameter defaults scaled with N and k (after
pynndescent's heuristics) and the call into ``fastrl._C.knn_nndescent``."""
from __future__ import annotations

import numpy as np


def nndescent_params(n: int, k: int, n_trees=None, n_iters=None) -> dict:
    """Defaults: 5 + n^0.25 trees (<= 32), leaves of max(2k, 30) points,
    min(60, k) candidates, max(5, log2 n) iterations, delta 0.001."""
    if n_trees is None:
        n_trees = min(32, 5 + int(round(n ** 0.25)))
    if n_iters is None:
        n_iters = max(5, int(round(np.log2(max(n, 2)))))
    return {
        "n_trees": int(n_trees),
        "leaf_size": int(max(2 * k, 30)),
        "max_candidates": int(min(60, k)),
        "n_iters": int(n_iters),
        "delta": 0.001,
    }


def nndescent(A: np.ndarray, k: int, metric: str, out_idx: np.ndarray, out_dist: np.ndarray,
              n_jobs: int, random_state=None, *, n_trees=None, n_iters=None) -> None:
    """Fill ``out_idx``/``out_dist`` with the approximate kNN graph of ``A``
    (float32 C-contiguous, already centred or unit-normalised)."""
    from fastrl.neighbors.knn import _core
    if random_state is None:
        seed = int(np.random.default_rng().integers(0, 2**63 - 1))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(0, 2**63 - 1))
    else:
        seed = int(np.random.default_rng(random_state).integers(0, 2**63 - 1))
    p = nndescent_params(A.shape[0], k, n_trees, n_iters)
    _core().knn_nndescent(A, k, metric, p["n_trees"], p["leaf_size"], p["max_candidates"],
                          p["n_iters"], p["delta"], seed, out_idx, out_dist, n_jobs)
