"""Classical embeddings: PCA, classical MDS, Laplacian eigenmaps / spectral embedding and CCA."""
from fastrl.manifold.classical.cca import CCA, cca
from fastrl.manifold.classical.laplacian import LaplacianEigenmaps, SpectralEmbedding, knn_affinity, spectral_embedding
from fastrl.manifold.classical.mds import ClassicalMDS, classical_mds
from fastrl.manifold.classical.pca import pca, randomized_svd

__all__ = ["CCA", "ClassicalMDS", "LaplacianEigenmaps", "SpectralEmbedding", "cca", "classical_mds", "knn_affinity",
           "pca", "randomized_svd", "spectral_embedding"]
