"""Heat maps of reconstruction matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

METRIC_TITLES = {
    "gfre": "Global feature reconstruction error (GFRE)",
    "gfrd": "Global feature reconstruction distortion (GFRD)",
    "lfre": "Local feature reconstruction error (LFRE)",
}


def heatmap(matrix: pd.DataFrame, metric: str = "gfre", ax=None, vmax: float = 1.0):
    """Annotated heat map: rows are sources, columns are targets, colours 0..vmax.

    Parameters
    ----------
    matrix : pandas.DataFrame
        Square matrix indexed by source (rows) and target (columns).
    metric : str
        Used for the title and colour-bar label.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made when omitted.
    vmax : float
        Upper end of the colour scale (errors above it saturate).

    Returns
    -------
    matplotlib.figure.Figure
    """
    values = matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    if ax is None:
        size = 1.2 + 0.9 * max(n_rows, n_cols)
        ax = Figure(figsize=(size + 1.5, size), layout="constrained").add_subplot()
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=vmax)
    ax.set_xticks(range(n_cols), matrix.columns, rotation=40, ha="right")
    ax.set_yticks(range(n_rows), matrix.index)
    ax.set_xlabel("target (reconstructed)")
    ax.set_ylabel("source (reconstructs)")
    ax.set_title(METRIC_TITLES.get(metric, metric.upper()), fontsize=10)
    for i in range(n_rows):
        for j in range(n_cols):
            value = values[i, j]
            colour = "black" if np.isfinite(value) and value > 0.6 * vmax else "white"
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", color=colour, fontsize=9)
    ax.figure.colorbar(image, ax=ax, label=metric.upper())
    return ax.figure
