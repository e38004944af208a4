"""2-D plots of embeddings (matplotlib, imported lazily)."""
from __future__ import annotations

import numpy as np


def embedding(E, labels=None, path=None, *, title=None, ax=None, s=None, alpha=0.8, legend=True):
    """Scatter plot of a 2-D embedding coloured by label.

    Parameters
    ----------
    E : array-like, shape (N, 2)
    labels : array-like, shape (N,), optional
    path : str, optional
        Save the figure here (PNG, PDF, ...).
    title : str, optional
    ax : matplotlib Axes, optional
        Draw into this axes instead of a new figure.
    s : float, optional
        Marker size; default shrinks with N so 1M points stay readable.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib
    if ax is None and path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    E = np.asarray(E)
    if E.ndim != 2 or E.shape[1] != 2:
        raise ValueError(f"E must have shape (N, 2), got {E.shape}")
    n = E.shape[0]
    if s is None:
        s = float(np.clip(20000.0 / max(n, 1), 0.05, 12.0))
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 7))
    else:
        fig = ax.figure
    # rasterized: a million points stay a small file even in vector formats
    if labels is None:
        ax.scatter(E[:, 0], E[:, 1], s=s, alpha=alpha, linewidths=0, rasterized=True)
    else:
        labels = np.asarray(labels)
        if labels.shape[0] != n:
            raise ValueError(f"labels has {labels.shape[0]} entries but E has {n} rows")
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, c in enumerate(classes):
            m = labels == c
            ax.scatter(E[m, 0], E[m, 1], s=s, alpha=alpha, linewidths=0, color=cmap(i % cmap.N),
                       label=str(c), rasterized=True)
        if legend and len(classes) <= 20:
            ax.legend(markerscale=max(1.0, 6.0 / np.sqrt(s)), fontsize=8, loc="best", frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    if title:
        ax.set_title(title)
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig
