"""Embeddings: t-SNE and classical methods (scikit-learn's names and parameters)."""

# t-SNE (fastrl/manifold/tsne)
from fastrl.manifold.tsne import (TSNE, attractive_forces, bh_repulsion, fft_repulsion,  # noqa: E402,F401
                                  joint_probabilities, kl_gradient, perplexity_affinities)

# classical embeddings (PCA, classical MDS, Laplacian eigenmaps / spectral embedding, CCA)
from fastrl.manifold.classical import (CCA, ClassicalMDS, LaplacianEigenmaps, SpectralEmbedding, cca,  # noqa: F401
                                       classical_mds, knn_affinity, pca, randomized_svd, spectral_embedding)
