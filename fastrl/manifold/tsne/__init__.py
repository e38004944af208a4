"""t-SNE: perplexity affinities, exact / Barnes-Hut / FFT gradients, new-point transform."""
from fastrl.manifold.tsne.affinities import (dense_affinities, joint_probabilities, perplexity_affinities, symmetrize,
                                             transform_affinities)
from fastrl.manifold.tsne.gradients import attractive_forces, bh_repulsion, fft_repulsion, kl_gradient
from fastrl.manifold.tsne.reference import exact_affinities, exact_kl_gradient
from fastrl.manifold.tsne.tsne import TSNE, pca_init

__all__ = ["TSNE", "pca_init", "perplexity_affinities", "symmetrize", "joint_probabilities", "dense_affinities",
           "transform_affinities", "attractive_forces", "bh_repulsion", "fft_repulsion", "kl_gradient",
           "exact_kl_gradient", "exact_affinities"]
