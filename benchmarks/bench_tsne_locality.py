"""t-SNE memory locality: the attractive pass (``attractive_forces``, the call SparseObjective makes) with P
and Y in a random order against the Hilbert order of Y (``fastrl.manifold.tsne.locality``), and the cost
of one ``Reordering.apply`` (curve order + Y, optimiser state and P permuted).

    python benchmarks/bench_tsne_locality.py 1000000 5   # N, rounds (interleaved; min and median)

Synthetic graph: Y a jittered sqrt(N) x sqrt(N) grid, each point's 99 neighbours the 10 x 10 block
around it (spatially close, as in a converged embedding), P = (P + P^T) / 2N of Gaussian weights (no
perplexity calibration: the values do not change the time), then random labels (the caller's order).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from fastrl.manifold.tsne.affinities import symmetrize
from fastrl.manifold.tsne.gradients import CSRParts, attractive_forces
from fastrl.manifold.tsne.locality import Reordering


class _State:
    pass


def graph(n_side: int, rng):
    n = n_side * n_side
    ii, jj = np.divmod(np.arange(n), n_side)
    Y = np.c_[ii, jj] + rng.uniform(-0.3, 0.3, size=(n, 2))
    d = np.array([(a, b) for a in range(-5, 5) for b in range(-5, 5) if (a, b) != (0, 0)])
    idx = (((ii[:, None] + d[:, 0]) % n_side) * n_side + (jj[:, None] + d[:, 1]) % n_side).astype(np.int64)
    dist = np.sqrt(((Y[idx] - Y[:, None, :]) ** 2).sum(-1))
    shuffle = rng.permutation(n)
    inv = np.empty(n, np.int64)
    inv[shuffle] = np.arange(n)
    idx, dist = inv[idx[shuffle]], dist[shuffle]
    Pc = np.exp(-dist ** 2)
    Pc /= Pc.sum(1, keepdims=True)
    return CSRParts(symmetrize(idx, Pc)), np.ascontiguousarray(Y[shuffle])


def reordered(P, Y):
    obj, opt = _State(), _State()
    obj.P, Yo = P, Y.copy()
    opt.update, opt.gains = np.zeros_like(Yo), np.ones_like(Yo)
    R = Reordering()
    tic = time.perf_counter()
    R.apply(Yo, obj, opt)
    return time.perf_counter() - tic, obj.P, Yo, R


def main():
    n_side = int(round(np.sqrt(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    tic = time.time()
    P, Y = graph(n_side, np.random.default_rng(0))
    n = Y.shape[0]
    print(f"load {os.getloadavg()[0]:.2f}; N={n} nnz={P.indices.size} ({P.indices.size / n:.1f}/row), "
          f"built in {time.time() - tic:.1f}s", flush=True)
    reordered(P, Y)  # Numba compile / cache load
    applies = []
    for _ in range(3):
        dt, Po, Yo, R = reordered(P, Y)
        applies.append(dt)
    print(f"Reordering.apply: min {min(applies):.3f}s median {np.median(applies):.3f}s", flush=True)
    times = {"random": [], "hilbert": []}
    for _ in range(reps):
        for name, (PP, YY) in (("random", (P, Y)), ("hilbert", (Po, Yo))):
            tic = time.perf_counter()
            attractive_forces(PP, YY, exaggeration=12.0)
            times[name].append(time.perf_counter() - tic)
    same = np.array_equal(R.to_caller(attractive_forces(Po, Yo)), attractive_forces(P, Y))
    print(f"forces equal in the caller's order: {same}")
    for k, v in times.items():
        print(f"  attractive {k:8s} min {min(v):.4f}s median {np.median(v):.4f}s  "
              f"({', '.join(f'{x:.3f}' for x in v)})")
    save = np.median(times["random"]) - np.median(times["hilbert"])
    print(f"saving per iteration {save:.4f}s (medians); one apply repaid after "
          f"{np.median(applies) / max(save, 1e-9):.1f} iterations")


if __name__ == "__main__":
    main()
