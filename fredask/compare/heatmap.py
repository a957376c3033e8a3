"""Heat maps of reconstruction matrices.

Colours run from 0 to ``vmax``; values above it take a distinct over-colour,
shown by an extended colour bar (``extend="max"``), and their numbers are
printed in bold, so an LFRE of 6.27 cannot pass for 1.  Marked cells (pairs
dominated by a few rows) get a dagger after the number, explained in a note
under the axis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from fredask.measures.similarity import SYMMETRIC_METRICS

METRIC_TITLES = {
    "gfre": "Global feature reconstruction error (GFRE)",
    "gfrd": "Global feature reconstruction distortion (GFRD)",
    "lfre": "Local feature reconstruction error (LFRE)",
    "cka": "Linear centred kernel alignment (CKA)",
    "cca": "Mean squared canonical correlation (CCA)",
    "procrustes": "Orthogonal Procrustes distance",
    "mutual_knn": "Mutual k-nearest-neighbour agreement",
}
#: Colour of the values above the scale's maximum (viridis has no red).
OVER_COLOUR = "#d62728"
DAGGER = "\u2020"


def heatmap(
    matrix: pd.DataFrame,
    metric: str = "gfre",
    ax=None,
    vmax: float = 1.0,
    *,
    title: str | None = None,
    marked: np.ndarray | None = None,
    note: str | None = None,
    low: pd.DataFrame | None = None,
    high: pd.DataFrame | None = None,
    chance: pd.DataFrame | None = None,
):
    """Annotated heat map: rows are sources, columns are targets, colours 0..vmax.

    Parameters
    ----------
    matrix : pandas.DataFrame
        Square matrix indexed by source (rows) and target (columns).
    metric : str
        Used for the default title and the colour-bar label.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made when omitted.
    vmax : float
        Upper end of the colour scale; larger values take :data:`OVER_COLOUR`
        and the colour bar is extended.
    title : str, optional
        Default: the metric's full name.
    marked : numpy.ndarray of bool, optional
        Cells (same shape) to mark with a dagger after the number.
    note : str, optional
        The dagger's explanation, added under the axis when a cell is marked.
    low, high : pandas.DataFrame, optional
        Interval ends (same layout), printed under each number as ``[low, high]``.
    chance : pandas.DataFrame, optional
        Chance levels (same layout), printed under each number as ``chance x``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    values = matrix.to_numpy(dtype=float)
    n_rows, n_cols = values.shape
    marked = np.zeros(values.shape, dtype=bool) if marked is None else np.asarray(marked)
    if ax is None:
        size = 1.2 + (0.9 if low is None and chance is None else 1.3) * max(n_rows, n_cols)
        ax = Figure(figsize=(size + 1.5, size + 0.3), layout="constrained").add_subplot()
    cmap = colormaps["viridis"].with_extremes(over=OVER_COLOUR)
    over = np.isfinite(values) & (values > vmax)
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=vmax)
    ax.set_xticks(range(n_cols), matrix.columns, rotation=40, ha="right")
    ax.set_yticks(range(n_rows), matrix.index)
    symmetric = metric in SYMMETRIC_METRICS
    xlabel = "model" if symmetric else "target (reconstructed)"
    if marked.any() and note:
        xlabel += f"\n{note}"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("model" if symmetric else "source (reconstructs)")
    ax.set_title(title or METRIC_TITLES.get(metric, metric.upper()), fontsize=10)
    for i in range(n_rows):
        for j in range(n_cols):
            value = values[i, j]
            light = np.isfinite(value) and 0.6 * vmax < value <= vmax
            text = f"{value:.3f}" + (DAGGER if marked[i, j] else "")
            if low is not None and high is not None:
                text += f"\n[{low.iat[i, j]:.3f}, {high.iat[i, j]:.3f}]"
            if chance is not None:
                text += f"\nchance {chance.iat[i, j]:.3f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                color="black" if light else "white",
                fontsize=9 if low is None and chance is None else 7,
                fontweight="bold" if over[i, j] else "normal",
            )
    ax.figure.colorbar(
        image, ax=ax, label=metric.upper(), extend="max" if over.any() else "neither"
    )
    return ax.figure
