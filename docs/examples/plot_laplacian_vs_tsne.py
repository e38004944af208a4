"""
Laplacian eigenmaps against t-SNE
=================================

Both methods start from a kNN graph of the data. Laplacian eigenmaps
(:class:`fastrl.manifold.LaplacianEigenmaps`) solve one sparse generalised
eigenproblem ``L y = λ D y`` on the symmetrised graph: fast and deterministic,
but they keep only the smoothest directions of the graph, so clusters crowd
together. t-SNE (:class:`fastrl.manifold.TSNE`) optimises the layout
iteratively and separates the clusters. The trustworthiness and the 10-NN
accuracy (:mod:`fastrl.metrics`) put numbers on the difference.
"""
import os
import time

import matplotlib.pyplot as plt
from sklearn.datasets import load_digits

from fastrl.manifold import TSNE, LaplacianEigenmaps
from fastrl.metrics import knn_accuracy, trustworthiness
from fastrl.plot import compare

SMALL = os.environ.get("FASTRL_DOCS_SMALL", "0") not in ("", "0")

X, y = load_digits(return_X_y=True)
if SMALL:
    X, y = X[:600], y[:600]

embeddings, seconds = {}, {}
tic = time.perf_counter()
embeddings["Laplacian eigenmaps"] = LaplacianEigenmaps(2, n_neighbors=10).fit_transform(X)
seconds["Laplacian eigenmaps"] = time.perf_counter() - tic
tic = time.perf_counter()
embeddings["t-SNE"] = TSNE(perplexity=30, max_iter=300 if SMALL else 750, random_state=0,
                           n_jobs=2).fit_transform(X)
seconds["t-SNE"] = time.perf_counter() - tic

for name, E in embeddings.items():
    print(f"{name:20s} {seconds[name]:5.2f} s  trustworthiness@10 = {trustworthiness(X, E, 10):.3f}  "
          f"10-NN accuracy = {knn_accuracy(E, y, k=10):.3f}")

# %%
# :func:`fastrl.plot.compare` draws the embeddings side by side.
compare(embeddings, labels=y)
plt.show()
