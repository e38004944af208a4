"""fastrl.plot.compare and the `fastrl embed` command."""
from __future__ import annotations

import numpy as np
import pytest

from fastrl.cli import main
from fastrl.cli.embed import embed


def _has_tsne() -> bool:
    try:
        from fastrl.manifold import TSNE  # noqa: F401
    except ImportError:
        return False
    return True


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


@pytest.mark.filterwarnings("ignore:LaplacianEigenmaps:UserWarning")
@pytest.mark.parametrize("method", ["pca", "mds", "laplacian"])
def test_cli_embed(tmp_path, capsys, small_npz, method):
    path, X, y = small_npz
    png, npy = tmp_path / "e.png", tmp_path / "e.npy"
    rc = main(["embed", str(path), "--method", method, "--metrics", "--plot", str(png), "--out", str(npy)])
    assert rc == 0
    out = capsys.readouterr().out
    for key in ["trustworthiness@10", "knn_recall@10", "knn_accuracy@10", "linear_probe"]:
        assert key in out
    E = np.load(npy)
    assert E.shape == (150, 2) and png.stat().st_size > 1000
    assert np.allclose(E, embed(method, X))
    # well separated blobs: every method keeps the classes apart
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
    path, _, _ = small_npz
    if not _has_tsne():
        # without fastrl.manifold.TSNE the command fails cleanly
        assert main(["embed", str(path), "--method", method]) == 2
        assert "TSNE" in capsys.readouterr().err
        pytest.skip("fastrl.manifold.TSNE is not in this build")
    npy = tmp_path / "e.npy"
    assert main(["embed", str(path), "--method", method, "--metrics", "--out", str(npy)]) == 0
    assert np.load(npy).shape == (150, 2)
    assert "trustworthiness@10" in capsys.readouterr().out


def test_cli_embed_subsample_digits(capsys):
    pytest.importorskip("sklearn")
    assert main(["embed", "--dataset", "digits", "--method", "pca", "--subsample", "300"]) == 0
    assert "N=300" in capsys.readouterr().out
