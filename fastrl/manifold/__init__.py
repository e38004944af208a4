"""Embeddings: t-SNE and classical methods."""

# t-SNE (fastrl/manifold/tsne)
from fastrl.manifold.tsne import (TSNE, attractive_forces, bh_repulsion, fft_repulsion,  # noqa: E402,F401
                                  joint_probabilities, kl_gradient, perplexity_affinities)

# classical embeddings (PCA, classical MDS, Laplacian eigenmaps, CCA)
from fastrl.manifold.classical import (CCA, LaplacianEigenmaps, cca, classical_mds, knn_affinity, pca,  # noqa: F401
                                       randomized_svd, spectral_embedding)
