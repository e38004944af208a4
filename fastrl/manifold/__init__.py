"""Embeddings: t-SNE and classical methods."""
# classical embeddings (PCA, classical MDS, Laplacian eigenmaps, CCA)
from fastrl.manifold.classical import (CCA, LaplacianEigenmaps, cca, classical_mds, knn_affinity, pca,  # noqa: F401
                                       randomized_svd, spectral_embedding)
