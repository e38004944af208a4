"""Representation metrics: trustworthiness, kNN recall/accuracy, linear probe."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fastrl.metrics as M
from fastrl.metrics import embedding_report, knn_accuracy, knn_recall, linear_probe, trustworthiness
from fastrl.metrics.neighborhood import _rank_excess, _rank_excess_torch
from fastrl.metrics.reference import knn_recall_reference, trustworthiness_reference


def _noisy_projection(rng, n, d, dtype=np.float64):
    X = rng.standard_normal((n, d))
    E = X[:, :2] + 0.4 * rng.standard_normal((n, 2))
    return X.astype(dtype), E.astype(dtype)


@pytest.mark.parametrize("n,d,k", [(97, 5, 1), (150, 7, 5), (301, 20, 10), (260, 33, 23)])
def test_trustworthiness_equals_sklearn(rng, n, d, k):
    from sklearn.manifold import trustworthiness as sk_trust
    X, E = _noisy_projection(rng, n, d)
    got = trustworthiness(X, E, n_neighbors=k)
    assert abs(got - sk_trust(X, E, n_neighbors=k)) < 1e-6
    assert abs(got - trustworthiness_reference(X, E, k)) < 1e-12


def test_trustworthiness_blocks_float32_and_perfect(rng):
    from sklearn.manifold import trustworthiness as sk_trust
    X, E = _noisy_projection(rng, 211, 6, np.float32)
    full = trustworthiness(X, E, 10)
    assert trustworthiness(X, E, 10, block_size=17) == full
    assert abs(full - sk_trust(X, E, n_neighbors=10)) < 1e-6
    assert trustworthiness(X, X, 10) == 1.0
    assert trustworthiness(torch.from_numpy(X), torch.from_numpy(E), 10) == full


def test_rank_kernel_torch_matches_numba(rng):
    # the torch counter is the CUDA path; check it against the Numba one, ties included
    S = rng.integers(0, 6, size=(13, 40)).astype(np.float32)
    # neighbours of row b (point 5 + b) never include the point itself
    nbr = np.stack([rng.choice(np.setdiff1d(np.arange(40), [5 + b]), 7, replace=False)
                    for b in range(13)]).astype(np.int64)
    a = _rank_excess(S, nbr, 5, 4)
    b = _rank_excess_torch(torch.from_numpy(S), torch.from_numpy(nbr), 5, 4).numpy()
    np.testing.assert_array_equal(a, b)


def test_trustworthiness_bad_input(rng):
    X, E = _noisy_projection(rng, 20, 3)
    with pytest.raises(ValueError, match="n_neighbors"):
        trustworthiness(X, E, 10)
    with pytest.raises(ValueError, match="same number of rows"):
        trustworthiness(X, E[:-1], 3)
    with pytest.raises(ValueError, match="X_embedded contains NaN"):
        trustworthiness(X, np.full_like(E, np.nan), 3)


def test_knn_recall(rng):
    X, E = _noisy_projection(rng, 173, 4)
    assert knn_recall(X, E, 7) == pytest.approx(knn_recall_reference(X, E, 7), abs=1e-12)
    assert knn_recall(X, X, 7) == 1.0
    with pytest.raises(ValueError, match="k must be < N"):
        knn_recall(X, E, 173)


def test_knn_accuracy_matches_sklearn_on_same_folds(rng):
    from sklearn.neighbors import KNeighborsClassifier
    E = rng.standard_normal((240, 3))
    y = (E[:, 0] + 0.5 * rng.standard_normal(240) > 0).astype(int) + 2 * (E[:, 1] > 0.5)
    perm = np.random.default_rng(7).permutation(240)
    correct = 0
    for f in np.array_split(perm, 4):
        tr = np.setdiff1d(np.arange(240), f)
        correct += (KNeighborsClassifier(5).fit(E[tr], y[tr]).predict(E[f]) == y[f]).sum()
    assert knn_accuracy(E, y, 5, cv=4, random_state=7) == pytest.approx(correct / 240)
    # leave-one-out: each point's own k neighbours vote
    from sklearn.neighbors import NearestNeighbors
    idx = NearestNeighbors(n_neighbors=5).fit(E).kneighbors(return_distance=False)
    votes = np.array([np.bincount(y[r], minlength=4).argmax() for r in idx])
    assert knn_accuracy(E, y, 5, cv=None) == pytest.approx((votes == y).mean())


def test_knn_accuracy_bad_input(rng):
    E = rng.standard_normal((30, 2))
    with pytest.raises(ValueError, match="y must have shape"):
        knn_accuracy(E, np.zeros(29), 3)
    with pytest.raises(ValueError, match="cv"):
        knn_accuracy(E, np.zeros(30), 3, cv=1)


def test_linear_probe_matches_sklearn(rng):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    W = rng.standard_normal((12, 4))
    Z = rng.standard_normal((700, 12))
    y = (Z @ W + 0.8 * rng.standard_normal((700, 4))).argmax(1)
    acc, pred = linear_probe(Z[:500], y[:500], Z[500:], y[500:], C=0.5, max_iter=300, return_predictions=True)
    sc = StandardScaler().fit(Z[:500])
    ref = LogisticRegression(C=0.5, max_iter=1000, tol=1e-8).fit(sc.transform(Z[:500]), y[:500])
    ref_pred = ref.predict(sc.transform(Z[500:]))
    assert (pred == ref_pred).mean() >= 0.99
    assert acc == pytest.approx((pred == y[500:]).mean())
    assert acc > 0.7


def test_linear_probe_torch_input_and_labels(rng):
    Z = torch.randn(80, 5, generator=torch.Generator().manual_seed(0))
    y = np.where(Z[:, 0].numpy() > 0, "cat", "dog")
    acc = linear_probe(Z[:60], y[:60], Z[60:], y[60:])
    assert acc >= 0.9
    with pytest.raises(ValueError, match="features"):
        linear_probe(Z[:60], y[:60], Z[60:, :3], y[60:])
    with pytest.raises(ValueError, match="two classes"):
        linear_probe(Z[:60], np.zeros(60), Z[60:], y[60:])
    with pytest.raises(ValueError, match="C must be"):
        linear_probe(Z[:60], y[:60], Z[60:], y[60:], C=0.0)


@pytest.mark.slow
def test_linear_probe_raw_mnist(mnist):
    X, y = mnist
    X = X.astype(np.float32) / 255.0
    acc = linear_probe(X[:60000], y[:60000], X[60000:], y[60000:])
    assert acc >= 0.91


def test_embedding_report_keys(rng):
    X, E = _noisy_projection(rng, 120, 6)
    y = (X[:, 0] > 0).astype(int)
    r = embedding_report(X, E, y, n_neighbors=5)
    assert set(r) == {"trustworthiness@5", "knn_recall@5", "knn_accuracy@5", "linear_probe"}
    assert all(0.0 <= v <= 1.0 for v in r.values())
    assert set(embedding_report(X, E, n_neighbors=5)) == {"trustworthiness@5", "knn_recall@5"}


def test_alignment_uniformity_reexport():
    import fastrl.losses as losses
    assert M.alignment is losses.alignment and M.uniformity is losses.uniformity
    with pytest.raises(AttributeError):
        M.no_such_metric


def test_trustworthiness_bad_arguments_name_themselves(rng):
    X, E = _noisy_projection(rng, 30, 4)
    with pytest.raises(ValueError, match="block_size"):
        trustworthiness(X, E, 3, block_size=-1)
    with pytest.raises(ValueError, match="X_embedded has no features"):
        trustworthiness(X, E[:, :0], 3)
    with pytest.raises(TypeError, match="X must be real"):
        trustworthiness(X + 1j, E, 3)
    with pytest.raises(TypeError, match="X_embedded must be real"):
        trustworthiness(X, torch.from_numpy(E + 1j), 3)
    # small blocks give the same value as one block
    assert trustworthiness(X, E, 3, block_size=1) == trustworthiness(X, E, 3)


def test_trustworthiness_default_is_sklearns(rng):
    from sklearn.manifold import trustworthiness as sk_trust
    X, E = _noisy_projection(rng, 80, 6)
    assert trustworthiness(X, E) == pytest.approx(sk_trust(X, E), abs=1e-12)  # n_neighbors=5 on both
