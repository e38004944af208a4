"""``fastrl knn``: build a kNN graph and report its recall against exact."""
from __future__ import annotations

import time

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("knn", help="kNN graph of a dataset (default: scikit-learn digits)")
    p.add_argument("input", nargs="?", help=".npy, .npz or .csv file (rows are points)")
    p.add_argument("--dataset", choices=["digits", "mnist"], help="named dataset when no INPUT is given")
    p.add_argument("-k", type=int, default=15, help="neighbours per point (default 15)")
    p.add_argument("--method", default="auto", choices=["auto", "exact", "approx"])
    p.add_argument("--metric", default="euclidean", choices=["euclidean", "cosine"])
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--out", help="write indices and distances to this .npz")
    p.set_defaults(func=run)


def run(args) -> int:
    from fastrl.cli._io import check_output, check_range, load_input
    from fastrl.neighbors import knn_graph

    out = check_output(args.out, "--out", suffix=".npz") if args.out else None
    X, y, name = load_input(args.input, args.dataset)
    if X.shape[0] < 2:
        raise ValueError(f"a kNN graph needs at least 2 points, INPUT has {X.shape[0]}")
    check_range(args.k, "-k", low=1, high=X.shape[0] - 1)
    t0 = time.perf_counter()
    idx, dist = knn_graph(X, args.k, method=args.method, metric=args.metric, n_jobs=args.n_jobs)
    dt = time.perf_counter() - t0
    print(f"{name}: N={X.shape[0]} D={X.shape[1]} k={args.k} method={args.method} -> {dt:.3f} s")
    if y is not None:
        same = (np.asarray(y)[idx] == np.asarray(y)[:, None]).mean()
        print(f"fraction of neighbours with the same label: {same:.4f}")
    if out:
        np.savez(out, indices=idx, distances=dist)
        print(f"wrote {out}")
    return 0
