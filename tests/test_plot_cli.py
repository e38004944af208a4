"""fastrl.plot.compare and the `fastrl embed` command."""
from __future__ import annotations

import numpy as np
import pytest

from fastrl.cli import main


@pytest.fixture
def small_npz(tmp_path, rng):
    centers = rng.standard_normal((3, 6)) * 5
    y = rng.integers(0, 3, 150)
    X = (centers[y] + rng.standard_normal((150, 6))).astype(np.float32)
    path = tmp_path / "blobs.npz"
    np.savez(path, X=X, y=y)
    return path, X, y


def test_compare_grid(tmp_path, rng):
    import matplotlib
    matplotlib.use("Agg")
    from fastrl.plot import compare
    E = {name: rng.standard_normal((90, 2)) for name in ["a", "b", "c", "d", "e"]}
    labels = rng.integers(0, 4, 90)
    out = tmp_path / "grid.png"
    fig = compare(E, labels, out, ncols=3, suptitle="methods")
    assert out.stat().st_size > 1000
    assert len(fig.axes) == 6 and [a.get_title() for a in fig.axes[:5]] == list(E)
    assert len(fig.legends) == 1
    # per-panel labels for embeddings of different subsets
    fig2 = compare({"x": E["a"], "y": E["b"][:40]}, {"x": labels, "y": labels[:40]})
    assert len(fig2.axes) == 2
    with pytest.raises(ValueError, match="non-empty dict"):
        compare({}, labels)
    with pytest.raises(ValueError, match="shape"):
        compare({"bad": rng.standard_normal((10, 3))})


def _same_up_to_sign(E, R, rtol):
    """Columns of E equal those of R up to a sign flip each (max error / max |R| <= rtol)."""
    assert E.shape == R.shape
    for j in range(R.shape[1]):
        s = np.sign(E[:, j] @ R[:, j])
        assert np.abs(s * E[:, j] - R[:, j]).max() <= rtol * np.abs(R[:, j]).max(), j


@pytest.mark.filterwarnings("ignore:LaplacianEigenmaps:UserWarning")
@pytest.mark.parametrize("method", ["pca", "mds", "laplacian"])
def test_cli_embed(tmp_path, capsys, small_npz, method):
    from sklearn.manifold import trustworthiness
    path, X, y = small_npz
    png, npy = tmp_path / "e.png", tmp_path / "e.npy"
    rc = main(["embed", str(path), "--method", method, "--metrics", "--plot", str(png), "--out", str(npy)])
    assert rc == 0
    out = capsys.readouterr().out
    for key in ["trustworthiness@10", "knn_recall@10", "knn_accuracy@10", "linear_probe"]:
        assert key in out
    E = np.load(npy)
    assert E.shape == (150, 2) and png.stat().st_size > 1000
    if method in ("pca", "mds"):
        # PCA scores, and classical MDS of Euclidean distances, are U S of the centred data's SVD
        Xc = X.astype(np.float64) - X.mean(0, dtype=np.float64)
        U, S, _ = np.linalg.svd(Xc, full_matrices=False)
        _same_up_to_sign(E, U[:, :2] * S[:2], 1e-4)
    else:  # the library call with the CLI's parameters (D = 6 < --pca-dim: no PCA)
        from fastrl.manifold import LaplacianEigenmaps
        assert np.array_equal(E, LaplacianEigenmaps(2, 10, random_state=0).fit_transform(X))
    # well separated blobs stay apart (scikit-learn's trustworthiness); the printed
    # value is the same metric (Laplacian eigenmaps squeeze each blob to near-ties,
    # which a GEMM-based and an exact distance order differently: 0.905 against 0.911)
    tw = trustworthiness(X, E, n_neighbors=10)
    assert tw > 0.9
    assert abs(float(out.split("trustworthiness@10")[1].split()[0]) - tw) <= (1e-2 if method == "laplacian" else 1e-4)
    acc = float(out.split("knn_accuracy@10")[1].split()[0])
    assert acc > 0.9


def test_cli_embed_errors(tmp_path, capsys, small_npz):
    path, _, _ = small_npz
    assert main(["embed", str(tmp_path / "missing.npy")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["embed", str(path), "--n-components", "3", "--plot", str(tmp_path / "x.png")]) == 2
    assert "2-D" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["embed", str(path), "--method", "isomap"])


@pytest.mark.parametrize("method", ["sne", "tsne"])
def test_cli_embed_sne_tsne(tmp_path, capsys, small_npz, method):
    from sklearn.manifold import trustworthiness

    from fastrl.manifold import TSNE
    path, X, y = small_npz
    npy = tmp_path / "e.npy"
    assert main(["embed", str(path), "--method", method, "--metrics", "--out", str(npy)]) == 0
    out = capsys.readouterr().out
    E = np.load(npy)
    assert E.shape == (150, 2)
    # the library with the CLI's defaults and seed gives the same embedding ...
    kw = dict(kernel="gaussian", method="exact") if method == "sne" else {}
    assert np.array_equal(E, TSNE(2, perplexity=30.0, random_state=0, **kw).fit_transform(X))
    # ... and it is a good one: scikit-learn's trustworthiness, which the CLI prints too
    tw = trustworthiness(X, E, n_neighbors=10)
    assert tw > 0.9
    assert abs(float(out.split("trustworthiness@10")[1].split()[0]) - tw) <= 1e-4


def test_cli_embed_subsample_digits(capsys):
    pytest.importorskip("sklearn")
    assert main(["embed", "--dataset", "digits", "--method", "pca", "--subsample", "300"]) == 0
    assert "N=300" in capsys.readouterr().out


# ---------------------------------------------------------------- bad input: exit 2 before any work
@pytest.fixture
def no_work(monkeypatch):
    """Make every computation of the three commands fail loudly if it starts."""
    import fastrl.cli.embed
    import fastrl.cli.tsne
    import fastrl.manifold
    import fastrl.neighbors

    def fail(*args, **kwargs):
        raise AssertionError("the computation started before the input was checked")

    monkeypatch.setattr(fastrl.cli.embed, "embed", fail)
    monkeypatch.setattr(fastrl.cli.tsne, "pca_reduce", fail)
    monkeypatch.setattr(fastrl.manifold, "TSNE", fail)
    monkeypatch.setattr(fastrl.neighbors, "knn_graph", fail)


def _bad_inputs(d):
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    np.save(d / "ok.npy", X)
    np.save(d / "empty.npy", np.zeros((0, 3), np.float32))
    np.save(d / "empty1d.npy", np.zeros(0, np.float32))
    np.save(d / "cols0.npy", np.zeros((5, 0), np.float32))
    np.save(d / "flat.npy", X[0])
    np.save(d / "cube.npy", X.reshape(40, 2, 2))
    np.save(d / "cplx.npy", X.astype(np.complex64))
    np.save(d / "nan.npy", np.where(X > 2, np.nan, X))
    np.save(d / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.savez(d / "none.npz")
    np.savez(d / "onlyy.npz", y=np.arange(40))
    np.savez(d / "short_y.npz", X=X, y=np.arange(39))
    np.savez(d / "y2d.npz", X=X, y=np.zeros((40, 1)))
    (d / "text.csv").write_text("a,b\nc,d\n")
    (d / "blank.csv").write_text("")
    (d / "data.txt").write_text("1,2\n")
    (d / "dir.npy").mkdir()
    (d / "afile").write_text("x")
    ok = str(d / "ok.npy")
    return [
        ([str(d / "missing.npy")], "INPUT .*missing.npy does not exist"),
        ([str(d / "dir.npy")], "INPUT .*dir.npy is a directory"),
        ([str(d / "data.txt")], "INPUT must be .npy, .npz, .csv"),
        ([str(d / "empty.npy")], r"holds an empty array, shape \(0, 3\)"),
        ([str(d / "empty1d.npy")], r"must hold a 2-D array .*shape \(0,\)"),
        ([str(d / "cols0.npy")], r"holds an empty array, shape \(5, 0\)"),
        ([str(d / "flat.npy")], "must hold a 2-D array"),
        ([str(d / "cube.npy")], "must hold a 2-D array"),
        ([str(d / "cplx.npy")], "must hold real numbers, got dtype complex64"),
        ([str(d / "nan.npy")], "contains NaN or inf"),
        ([str(d / "obj.npy")], "cannot be read as .npy"),
        ([str(d / "none.npz")], "holds no data array"),
        ([str(d / "onlyy.npz")], "holds no data array"),
        ([str(d / "short_y.npz")], r"labels y in .* one entry per row of X \(shape \(40,\)\), got shape \(39,\)"),
        ([str(d / "y2d.npz")], r"labels y .*got shape \(40, 1\)"),
        ([str(d / "text.csv")], "is not a numeric CSV"),
        ([str(d / "blank.csv")], "holds an empty array"),
        ([ok, "--out", str(d / "nowhere" / "e.npy")], "--out .*directory .*nowhere does not exist"),
        ([ok, "--out", str(d / "afile" / "e.npy")], "--out .*afile is not a directory"),
    ]


@pytest.mark.parametrize("command", ["embed", "tsne", "knn"])
def test_cli_bad_input_exits_2_before_any_work(tmp_path, capsys, no_work, command):
    d = tmp_path
    cases = _bad_inputs(d)
    ok = str(d / "ok.npy")
    if command != "knn":  # the commands that plot
        cases += [([ok, "--plot", str(d / "dir.png")], "--plot .*dir.png is a directory"),
                  ([ok, "--plot", str(d / "e.xyz")], r"--plot .*unsupported format \.xyz"),
                  ([ok, "--plot", str(d / "nowhere" / "e.png")], "--plot .*nowhere does not exist"),
                  ([ok, "--perplexity", "40"] + (["--method", "tsne"] if command == "embed" else []),
                   r"--perplexity must be in \(0, 40\), got 40")]
        (d / "dir.png").mkdir()
    if command == "embed":
        cases += [([ok, "--n-neighbors", "40"], r"--n-neighbors must be in \[1, 39\], got 40"),
                  ([ok, "--metrics", "--n-neighbors", "20"], r"--n-neighbors \(with --metrics\) must be"),
                  ([ok, "--subsample", "0"], "--subsample must be >= 1"),
                  ([ok, "--n-components", "0"], "--n-components must be >= 1"),
                  ([ok, "--n-components", "3", "--plot", str(d / "e.png")], "--plot needs a 2-D embedding")]
    if command == "knn":
        cases += [([ok, "-k", "40"], r"-k must be in \[1, 39\], got 40"), ([ok, "-k", "0"], "-k must be in")]
    if command == "tsne":
        cases += [([ok, "--max-iter", "0"], "--max-iter must be >= 1")]
    (d / "dir.npz").mkdir()
    ext = ".npz" if command == "knn" else ".npy"  # what np.savez / np.save write
    cases += [([ok, "--out", str(d / f"dir{ext}")], f"--out .*dir{ext} is a directory"),
              ([ok, "--out", str(d / "dir")], f"--out .*dir{ext} is a directory")]  # the suffix is added first
    import re
    for args, msg in cases:
        extra = ["--no-plot"] if command == "tsne" and "--plot" not in args else []
        rc = main([command, *args, *extra])
        err = capsys.readouterr().err
        assert rc == 2, (args, err)
        assert err.startswith(f"fastrl {command}: error: ") and "Traceback" not in err, (args, err)
        assert re.search(msg, err), (args, msg, err)
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["ok.npy", "empty.npy", "empty1d.npy", "cols0.npy", "flat.npy", "cube.npy", "cplx.npy", "nan.npy",
         "obj.npy", "none.npz", "onlyy.npz", "short_y.npz", "y2d.npz", "text.csv", "blank.csv", "data.txt",
         "dir.npy", "afile", "dir.npz"] + (["dir.png"] if command != "knn" else []))  # nothing written


def test_cli_unwritable_out_exits_2_before_any_work(tmp_path, capsys, no_work):
    import os
    from pathlib import Path
    np.save(tmp_path / "ok.npy", np.ones((10, 3), np.float32))
    targets = []
    if Path("/proc/self").is_dir():  # procfs: no new files, even for root
        targets.append(Path("/proc") / "fastrl_out")
    ro = tmp_path / "ro"
    ro.mkdir()
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root may write to a read-only directory
        ro.chmod(0o500)
        targets.append(ro / "out")
    if not targets:
        pytest.skip("no unwritable location on this machine")
    try:
        for t in targets:
            for command, flag, ext in (("knn", "--out", ".npz"), ("embed", "--out", ".npy"),
                                       ("embed", "--plot", ".png"), ("tsne", "--out", ".npy")):
                extra = ["--perplexity", "5"] if command == "tsne" else []
                assert main([command, str(tmp_path / "ok.npy"), flag, f"{t}{ext}", *extra]) == 2
                err = capsys.readouterr().err
                assert err.startswith(f"fastrl {command}: error: {flag} {t}{ext} cannot be written"), err
    finally:
        ro.chmod(0o700)


def test_cli_one_column_and_one_row_csv(tmp_path, capsys):
    # a single-column CSV is N points in 1-D (with or without a header row), a single row is 1 point
    from fastrl.cli._io import load_input
    x = np.random.default_rng(1).normal(size=12)
    (tmp_path / "col.csv").write_text("value\n" + "\n".join(repr(float(v)) for v in x) + "\n")
    (tmp_path / "row.csv").write_text(",".join(repr(float(v)) for v in x) + "\n")
    X, y, name = load_input(str(tmp_path / "col.csv"), None)
    assert X.shape == (12, 1) and y is None and name == "col"
    np.testing.assert_array_equal(X[:, 0], x.astype(np.float32))
    X, _, _ = load_input(str(tmp_path / "row.csv"), None)
    assert X.shape == (1, 12)
    np.testing.assert_array_equal(X[0], x.astype(np.float32))
    # the 1-D column through `fastrl knn`: neighbours are the nearest values (brute force oracle)
    out = tmp_path / "g"
    assert main(["knn", str(tmp_path / "col.csv"), "-k", "3", "--out", str(out)]) == 0
    g = np.load(tmp_path / "g.npz")
    xf = x.astype(np.float32).astype(np.float64)
    d = np.abs(xf[:, None] - xf[None, :])
    np.fill_diagonal(d, np.inf)
    assert np.array_equal(np.sort(g["indices"], 1), np.sort(np.argsort(d, 1, kind="stable")[:, :3], 1))
    assert main(["knn", str(tmp_path / "row.csv")]) == 2
    assert "at least 2 points" in capsys.readouterr().err
