"""NN-descent front end: parameter defaults scaled with N and k (after
pynndescent's heuristics) and the call into ``fastrl._C.knn_nndescent``."""
from __future__ import annotations

import os

import numpy as np

from fastrl.neighbors.cpu_kernel import cpu_kernel

# Phase timings of the C++ NN-descent on stderr when set (read once, at import).
VERBOSE = "FASTRL_NND_VERBOSE" in os.environ


def nndescent_params(n: int, k: int, n_trees=None, n_iters=None) -> dict:
    """Defaults tuned on MNIST (raw 784-d and PCA-50, k = 10, 15 and 90) to
    reach pynndescent's recall: round(n^0.2) trees (4..8) with leaves of
    max(2k, 32) points, clip(k, 30, 60) sampled candidates per side
    (pynndescent's 60 at k = 90: recall 0.9998 against 0.9992 with 30), at
    most max(5, log2 n) iterations, stopping once fewer than 0.1% of the
    graph's edges change in an iteration (pynndescent's delta; the late
    iterations touch few points and cost little)."""
    if n_trees is None:
        n_trees = int(np.clip(round(max(n, 2) ** 0.2), 4, 8))
    if n_iters is None:
        n_iters = max(5, int(round(np.log2(max(n, 2)))))
    return {
        "n_trees": int(n_trees),
        "leaf_size": int(max(2 * k, 32)),
        "max_candidates": int(np.clip(k, 30, 60)),
        "n_iters": int(n_iters),
        "delta": 0.001,
    }


def nndescent(A: np.ndarray, k: int, metric: str, out_idx: np.ndarray, out_dist: np.ndarray,
              n_jobs: int, random_state=None, *, n_trees=None, n_iters=None, scratch: bool = False) -> None:
    """Fill ``out_idx``/``out_dist`` with the approximate kNN graph of ``A``
    (float32 C-contiguous, already centred or unit-normalised). ``scratch``:
    ``A`` is the caller's temporary copy, whose rows the search may permute in
    place (it works on the points renumbered in tree-leaf order: no second
    copy of the rows)."""
    from fastrl.neighbors.knn import _core
    if random_state is None:
        seed = int(np.random.default_rng().integers(0, 2**63 - 1))
    elif isinstance(random_state, np.random.Generator):
        seed = int(random_state.integers(0, 2**63 - 1))
    else:
        seed = int(np.random.default_rng(random_state).integers(0, 2**63 - 1))
    p = nndescent_params(A.shape[0], k, n_trees, n_iters)
    _core().knn_nndescent(A, k, metric, p["n_trees"], p["leaf_size"], p["max_candidates"],
                          p["n_iters"], p["delta"], seed, out_idx, out_dist, n_jobs,
                          cpu_kernel=cpu_kernel(), verbose=VERBOSE, scratch=scratch)
