"""t-SNE memory locality: the attractive pass (``attractive_forces``, the call SparseObjective makes) with P
and Y in a random order against the Hilbert order of Y (``fastrl.manifold.tsne.locality``), and the cost
of one ``Reordering.apply`` (curve order + Y, optimiser state and P permuted).

    python benchmarks/bench_tsne_locality.py --sizes 200000,1000000 --repeat 7

(rounds interleaved, min and median; results in benchmarks/results/tsne_locality.json with the machine).

Synthetic graph: Y a jittered sqrt(N) x sqrt(N) grid, each point's 99 neighbours the 10 x 10 block
around it (spatially close, as in a converged embedding), P = (P + P^T) / 2N of Gaussian weights (no
perplexity calibration: the values do not change the time), then random labels (the caller's order).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fastrl.manifold.tsne.affinities import symmetrize
from fastrl.manifold.tsne.gradients import CSRParts, attractive_forces
from fastrl.manifold.tsne.locality import Reordering

from _common import write_results


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


def measure(n_target: int, reps: int) -> dict:
    n_side = int(round(np.sqrt(n_target)))
    tic = time.time()
    P, Y = graph(n_side, np.random.default_rng(0))
    n = Y.shape[0]
    load = os.getloadavg()[0]
    print(f"load {load:.2f}; N={n} nnz={P.indices.size} ({P.indices.size / n:.1f}/row), "
          f"built in {time.time() - tic:.1f}s", flush=True)
    reordered(P, Y)  # Numba compile / cache load
    applies = []
    for _ in range(3):
        dt, Po, Yo, R = reordered(P, Y)
        applies.append(dt)
    times = {"random": [], "hilbert": []}
    for _ in range(reps):
        for name, (PP, YY) in (("random", (P, Y)), ("hilbert", (Po, Yo))):
            tic = time.perf_counter()
            attractive_forces(PP, YY, exaggeration=12.0)
            times[name].append(time.perf_counter() - tic)
    same = bool(np.array_equal(R.to_caller(attractive_forces(Po, Yo)), attractive_forces(P, Y)))
    row = {"n": n, "nnz_per_row": P.indices.size / n, "rounds": reps, "load_before": load,
           "apply_min_s": min(applies), "apply_median_s": float(np.median(applies)),
           "forces_equal_in_caller_order": same}
    for k, v in times.items():
        row[f"{k}_min_s"], row[f"{k}_median_s"], row[f"{k}_times_s"] = min(v), float(np.median(v)), v
    row["ratio_min"] = row["hilbert_min_s"] / row["random_min_s"]
    row["ratio_median"] = row["hilbert_median_s"] / row["random_median_s"]
    save = row["random_median_s"] - row["hilbert_median_s"]
    row["apply_repaid_after_iterations"] = row["apply_median_s"] / max(save, 1e-9)
    print(f"  N={n}: attractive random {row['random_min_s']:.4f} / {row['random_median_s']:.4f} s, hilbert "
          f"{row['hilbert_min_s']:.4f} / {row['hilbert_median_s']:.4f} s (min / median), apply "
          f"{row['apply_min_s']:.3f} s, repaid after {row['apply_repaid_after_iterations']:.1f} iterations, "
          f"forces equal: {same}", flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200000,1000000", help="comma-separated N (rounded to a square grid)")
    ap.add_argument("--repeat", type=int, default=7, help="interleaved rounds (min and median)")
    args = ap.parse_args()
    rows = [measure(int(n), args.repeat) for n in args.sizes.split(",")]
    write_results("tsne_locality", {"benchmark": "attractive pass, random vs Hilbert order; Reordering.apply",
                                    "graph": "jittered grid, 10 x 10 block neighbours, P = (P + P^T) / 2N",
                                    "rows": rows})


if __name__ == "__main__":
    main()
