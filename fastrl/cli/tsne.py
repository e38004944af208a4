"""``fastrl tsne``: embed a dataset with t-SNE, save the embedding and a plot."""
from __future__ import annotations

import time

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("tsne", help="t-SNE embedding of a dataset (default: scikit-learn digits)")
    p.add_argument("input", nargs="?", help=".npy, .npz or .csv file (rows are points)")
    p.add_argument("--dataset", choices=["digits", "mnist"], help="named dataset when no INPUT is given")
    p.add_argument("--out", default=None, help="where to save the embedding (.npy; default <name>_tsne.npy)")
    p.add_argument("--plot", default=None, help="scatter plot path (.png; default <name>_tsne.png)")
    p.add_argument("--no-plot", action="store_true", help="skip the plot")
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--max-iter", type=int, default=750)
    p.add_argument("--method", default="auto", choices=["auto", "exact", "barnes_hut", "fft"])
    p.add_argument("--n-jobs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def pca_reduce(X: np.ndarray, n_components: int = 50) -> np.ndarray:
    """Project ``X`` onto its top principal components (float32)."""
    from fastrl.manifold.classical import pca
    return pca(np.asarray(X, dtype=np.float64), n_components, method="covariance").astype(np.float32)


def run(args) -> int:
    from fastrl.cli._io import check_output, check_plot, check_range, load_input
    from fastrl.manifold import TSNE

    # every check first: a bad path or option must not cost the PCA or the t-SNE
    X, y, name = load_input(args.input, args.dataset)
    out = check_output(args.out or f"{name}_tsne.npy", "--out", suffix=".npy")
    plot = None if args.no_plot else check_plot(args.plot or f"{name}_tsne.png")
    n, d = X.shape
    check_range(args.perplexity, "--perplexity", low=0, high=n, low_open=True, high_open=True)
    check_range(args.max_iter, "--max-iter", low=1)
    if d > 50:
        X = pca_reduce(X, 50)
        print(f"{name}: N={n} D={d} -> PCA to 50 dimensions")
    else:
        print(f"{name}: N={n} D={d}")
    t0 = time.perf_counter()
    tsne = TSNE(perplexity=args.perplexity, max_iter=args.max_iter, method=args.method, n_jobs=args.n_jobs,
                random_state=args.seed, progress_bar=not args.quiet)
    E = tsne.fit_transform(X)
    dt = time.perf_counter() - t0
    print(f"t-SNE ({tsne.method_}) in {dt:.1f} s, KL divergence {tsne.kl_divergence_:.4f}")
    np.save(out, E.astype(np.float32))
    print(f"wrote {out}")
    if plot:
        from fastrl.plot import embedding
        embedding(E, y, plot, title=f"t-SNE of {name} (N={n}, perplexity {args.perplexity:g})")
        print(f"wrote {plot}")
    return 0
