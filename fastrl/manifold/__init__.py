"""Embeddings: t-SNE and classical methods."""

# t-SNE (fastrl/manifold/tsne)
from fastrl.manifold.tsne import (TSNE, attractive_forces, bh_repulsion, fft_repulsion,  # noqa: E402,F401
                                  joint_probabilities, kl_gradient, perplexity_affinities)
