"""
t-SNE of the digits, and new points placed with ``transform``
==============================================================

:class:`fastrl.manifold.TSNE` embeds scikit-learn's 8×8 digits; the held-out
digits are then placed into the fixed embedding with
:meth:`~fastrl.manifold.TSNE.transform` (openTSNE's recipe: affinities to the
nearest training points, a start at their median position, then only the new
points move). If the placement is right, a held-out digit lands among training
digits of its own class, which the 10-NN vote below measures.
"""
import os
import time

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from fastrl.manifold import TSNE

SMALL = os.environ.get("FASTRL_DOCS_SMALL", "0") not in ("", "0")

X, y = load_digits(return_X_y=True)
if SMALL:
    X, y = X[:600], y[:600]
X_train, X_new, y_train, y_new = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)

# %%
# Fit on the training digits (Barnes-Hut below 10k points: ``method="auto"``).
tic = time.perf_counter()
tsne = TSNE(perplexity=30, max_iter=300 if SMALL else 750, random_state=0, n_jobs=2)
E_train = tsne.fit_transform(X_train)
print(f"fit: {len(X_train)} points in {time.perf_counter() - tic:.1f} s, KL = {tsne.kl_divergence_:.3f}")

# %%
# Place the held-out digits without refitting.
tic = time.perf_counter()
E_new = tsne.transform(X_new)
print(f"transform: {len(X_new)} points in {time.perf_counter() - tic:.2f} s")

knn = KNeighborsClassifier(10).fit(E_train, y_train)
acc_placed = knn.score(E_new, y_new)
acc_pixels = KNeighborsClassifier(10).fit(X_train, y_train).score(X_new, y_new)
print(f"10-NN accuracy of the placed points in the map: {acc_placed:.3f} (in pixel space: {acc_pixels:.3f})")

# %%
# Training digits as small dots, placed digits as larger outlined markers of
# the same colour.
fig, ax = plt.subplots(figsize=(7, 7))
cmap = plt.get_cmap("tab10")
ax.scatter(E_train[:, 0], E_train[:, 1], c=cmap(y_train), s=6, alpha=0.5)
ax.scatter(E_new[:, 0], E_new[:, 1], c=cmap(y_new), s=40, edgecolors="black", linewidths=0.6)
for digit in range(10):
    cx, cy = np.median(E_train[y_train == digit], axis=0)
    ax.text(cx, cy, str(digit), fontsize=18, weight="bold", ha="center", va="center")
ax.set_title(f"t-SNE of {len(X_train)} digits; {len(X_new)} held-out digits placed by transform "
             f"(10-NN acc. {acc_placed:.2f})", fontsize=9)
ax.set_xticks([])
ax.set_yticks([])
plt.show()
