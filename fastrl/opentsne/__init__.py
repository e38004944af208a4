"""openTSNE's public API on fastrl: ``import fastrl.opentsne as openTSNE``.

``TSNE``, ``TSNEEmbedding`` / ``PartialTSNEEmbedding`` (``optimize``,
``transform``, ``prepare_partial``), the ``affinity``, ``initialization``,
``nearest_neighbors``, ``callbacks`` and ``utils`` modules and
``fastrl.opentsne.sklearn.TSNE``, with openTSNE 1.0's parameters and
defaults. The gradients, the optimiser step and the kNN graphs are fastrl's
own (:mod:`fastrl.manifold.tsne`, :mod:`fastrl.neighbors`).
"""
from fastrl.opentsne import affinity, callbacks, initialization, nearest_neighbors, utils
from fastrl.opentsne.tsne import TSNE, OptimizationInterrupt, PartialTSNEEmbedding, TSNEEmbedding

__all__ = ["TSNE", "TSNEEmbedding", "PartialTSNEEmbedding", "OptimizationInterrupt", "affinity", "callbacks",
           "initialization", "nearest_neighbors", "utils", "sklearn"]


def __getattr__(name):
    if name == "sklearn":  # needs scikit-learn: imported on first use
        import importlib
        return importlib.import_module("fastrl.opentsne.sklearn")
    raise AttributeError(f"module 'fastrl.opentsne' has no attribute {name!r}")
