"""
Classical MDS on Euclidean distances is PCA
===========================================

Classical (Torgerson) MDS double-centres the squared distance matrix,
``B = -1/2 J D² J``, and embeds with its top eigenvectors. For Euclidean
distances ``B`` is the Gram matrix of the centred data, so the embedding equals
the PCA scores up to the sign of each axis. This example checks that
:func:`fastrl.manifold.classical_mds` (from the distances, and from ``X``
directly) and :func:`fastrl.manifold.pca` agree to float precision.
"""
import os

import matplotlib.pyplot as plt
import numpy as np
from scipy.spatial.distance import pdist, squareform
from sklearn.datasets import load_digits

from fastrl.manifold import classical_mds, pca

SMALL = os.environ.get("FASTRL_DOCS_SMALL", "0") not in ("", "0")

X, y = load_digits(return_X_y=True)
if SMALL:
    X, y = X[:500], y[:500]
X = X.astype(np.float64)
k = 5

Z_pca = pca(X, k)                                          # scores of the top k principal axes
Z_mds_x = classical_mds(X=X, n_components=k)               # from the data (no N×N matrix)
Z_mds_d = classical_mds(squareform(pdist(X)), n_components=k)  # from the distance matrix


def align_signs(A, B):
    """Flip the columns of B to the sign of A's (eigenvectors are defined up to sign)."""
    return B * np.sign(np.sum(A * B, axis=0))


for name, Z in [("classical_mds(X=X)", Z_mds_x), ("classical_mds(D)", Z_mds_d)]:
    err = np.abs(align_signs(Z_pca, Z) - Z_pca).max() / np.abs(Z_pca).max()
    print(f"max |{name} - pca(X)| / max |pca(X)| = {err:.1e}")
    assert err < 1e-6

# %%
# The first two axes of both, side by side (the same picture up to sign).
fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
for ax, (title, Z) in zip(axes, [("pca(X, 5)", Z_pca), ("classical_mds(D, 5)", align_signs(Z_pca, Z_mds_d))]):
    ax.scatter(Z[:, 0], Z[:, 1], c=y, cmap="tab10", s=6)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()
