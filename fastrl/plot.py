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


def compare(embeddings: dict, labels=None, path=None, *, ncols: int | None = None, panel_size: float = 4.0,
            s=None, alpha=0.8, suptitle=None):
    """Several 2-D embeddings side by side, one panel per method, one shared legend.

    Parameters
    ----------
    embeddings : dict of str -> array-like, shape (N_m, 2)
        Panel title -> embedding. Panels keep the dict's order.
    labels : array-like, shape (N,), or dict of str -> array-like, optional
        One label vector for all panels, or one per panel (for embeddings of
        different subsets).
    path : str, optional
        Save the figure here.
    ncols : int, optional
        Panels per row (default: up to 4).
    panel_size : float
        Inches per panel.
    s : float, optional
        Marker size (default: shrinks with N, see :func:`embedding`).
    alpha : float
    suptitle : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib
    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not isinstance(embeddings, dict) or not embeddings:
        raise ValueError("embeddings must be a non-empty dict of name -> (N, 2) array")
    names = list(embeddings)
    ncols = min(len(names), 4) if ncols is None else max(1, int(ncols))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        lab = labels.get(name) if isinstance(labels, dict) else labels
        embedding(embeddings[name], lab, ax=ax, title=name, s=s, alpha=alpha, legend=False)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    handles, texts = axes.ravel()[0].get_legend_handles_labels()
    if handles and len(handles) <= 20:
        fig.legend(handles, texts, loc="center right", markerscale=4.0, fontsize=9, frameon=False)
        fig.subplots_adjust(right=0.92)
    if suptitle:
        fig.suptitle(suptitle)
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
