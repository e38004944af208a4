"""``fastrl embed``: embed a dataset in 2-D, plot it and print its quality metrics."""
from __future__ import annotations

import time

import numpy as np

METHODS = ("pca", "mds", "laplacian", "sne", "tsne")
MDS_MAX_N = 10_000  # classical MDS holds an N x N float64 matrix


def _tsne_class():
    try:
        from fastrl.manifold import TSNE
    except ImportError as exc:
        raise ValueError("methods sne and tsne need fastrl.manifold.TSNE, which this build lacks") from exc
    return TSNE


def embed(method: str, X, *, n_components: int = 2, n_neighbors: int = 10, perplexity: float = 30.0,
          pca_dim: int = 50, random_state: int | None = 0, n_jobs=None):
    """Embed ``X`` (N, D) with one of :data:`METHODS`.

    ``laplacian``, ``sne`` and ``tsne`` first reduce X to ``pca_dim`` principal
    components when D is larger (0 disables); ``sne`` is symmetric SNE
    (t-SNE's objective with a Gaussian output kernel, exact gradient).

    Returns
    -------
    ndarray, shape (N, n_components)
    """
    from fastrl.manifold import LaplacianEigenmaps, classical_mds, pca
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    X = np.asarray(X, dtype=np.float32)
    if method == "pca":
        return pca(X, n_components)
    if method == "mds":
        if X.shape[0] > MDS_MAX_N:
            raise ValueError(f"classical MDS needs an N x N matrix; N={X.shape[0]} > {MDS_MAX_N}: "
                             "use --subsample")
        return classical_mds(X=X, n_components=n_components)
    if pca_dim and X.shape[1] > pca_dim:
        X = pca(X, min(pca_dim, X.shape[0]))
    if method == "laplacian":
        return LaplacianEigenmaps(n_components, n_neighbors, random_state=random_state,
                                  n_jobs=n_jobs).fit_transform(X)
    TSNE = _tsne_class()
    kw = dict(n_components=n_components, perplexity=perplexity, random_state=random_state, n_jobs=n_jobs)
    if method == "sne":
        kw.update(kernel="gaussian", method="exact")
    return np.asarray(TSNE(**kw).fit_transform(X))


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="2-D embedding of a dataset, with a plot and quality metrics")
    p.add_argument("input", nargs="?", help=".npy, .npz or .csv file (rows are points)")
    p.add_argument("--dataset", choices=["digits", "mnist"], help="named dataset when no INPUT is given")
    p.add_argument("--method", default="pca", choices=list(METHODS))
    p.add_argument("--n-components", type=int, default=2)
    p.add_argument("--n-neighbors", type=int, default=10, help="graph of laplacian, k of the metrics")
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--pca-dim", type=int, default=50, help="PCA before laplacian/sne/tsne (0: off)")
    p.add_argument("--subsample", type=int, default=None, help="embed a random subset of this many points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--plot", help="save a scatter plot here (PNG, PDF, ...)")
    p.add_argument("--metrics", action="store_true", help="print trustworthiness, kNN recall/accuracy, probe")
    p.add_argument("--out", help="save the embedding to this .npy")
    p.set_defaults(func=run)


def check_args(args, n: int) -> None:
    """The numeric options against the data's N, before any work."""
    from fastrl.cli._io import check_range
    check_range(args.n_components, "--n-components", low=1)
    check_range(args.pca_dim, "--pca-dim", low=0)
    if n < 2:
        raise ValueError(f"an embedding needs at least 2 points, got {n}")
    check_range(args.n_neighbors, "--n-neighbors", low=1, high=n - 1)
    if args.metrics:
        check_range(args.n_neighbors, "--n-neighbors (with --metrics)", low=1, high=n / 2, high_open=True)
    if args.method in ("sne", "tsne"):
        check_range(args.perplexity, "--perplexity", low=0, high=n, low_open=True, high_open=True)
    if args.method == "mds" and n > MDS_MAX_N:
        raise ValueError(f"classical MDS needs an N x N matrix; N={n} > {MDS_MAX_N}: use --subsample")


def run(args) -> int:
    from fastrl.cli._io import check_output, check_plot, check_range, load_input

    # every check first: a bad path or option must not cost the computation
    out = check_output(args.out, "--out", suffix=".npy") if args.out else None
    if args.plot and args.n_components != 2:
        raise ValueError(f"--plot needs a 2-D embedding, got --n-components {args.n_components}")
    plot = check_plot(args.plot) if args.plot else None
    if args.subsample is not None:
        check_range(args.subsample, "--subsample", low=1)
    X, y, name = load_input(args.input, args.dataset)
    check_args(args, min(X.shape[0], args.subsample or X.shape[0]))
    if args.subsample is not None and args.subsample < X.shape[0]:
        keep = np.sort(np.random.default_rng(args.seed).choice(X.shape[0], args.subsample, replace=False))
        X, y = X[keep], (None if y is None else np.asarray(y)[keep])
    t0 = time.perf_counter()
    E = embed(args.method, X, n_components=args.n_components, n_neighbors=args.n_neighbors,
              perplexity=args.perplexity, pca_dim=args.pca_dim, random_state=args.seed, n_jobs=args.n_jobs)
    dt = time.perf_counter() - t0
    print(f"{name}: N={X.shape[0]} D={X.shape[1]} method={args.method} -> {E.shape[1]}-D in {dt:.3f} s")
    if out:
        np.save(out, E)
        print(f"wrote {out}")
    if plot:
        from fastrl.plot import embedding
        embedding(E, y, plot, title=f"{name}: {args.method}")
        print(f"wrote {plot}")
    if args.metrics:
        from fastrl.metrics import embedding_report
        report = embedding_report(X, E, y, n_neighbors=args.n_neighbors, random_state=args.seed)
        width = max(len(k) for k in report)
        print(f"{'metric'.ljust(width)}  value")
        for k, v in report.items():
            print(f"{k.ljust(width)}  {v:.4f}")
    return 0
