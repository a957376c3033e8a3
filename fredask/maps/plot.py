"""The PCovR map as a scatter plot coloured by the property, with a colour bar.

The first two map coordinates are the axes (with one component: the
coordinate against the property).  Rows whose property is unknown are grey
under the others; rows without coordinates (skipped structures) are left
out.  Above :data:`MAX_POINTS` rows a random subset (fixed seed) is drawn, and
the title says so.  Points are drawn in a random order, so no part of the
data hides another by coming last.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

#: Most points drawn in one plot.
MAX_POINTS = 200_000


def scatter(
    projection: np.ndarray,
    values: np.ndarray,
    *,
    label: str = "property",
    title: str | None = None,
    ax=None,
    max_points: int = MAX_POINTS,
    seed: int = 0,
):
    """Scatter plot of a map coloured by ``values``.

    Parameters
    ----------
    projection : numpy.ndarray, shape (n, k)
        Map coordinates of every row (NaN rows are left out).
    values : numpy.ndarray, shape (n,)
        The colour of every row (NaN: grey).
    label : str
        The colour bar's label (the property).
    title : str, optional
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure is made when omitted.
    max_points : int
        Draw a random subset of this many rows when there are more.
    seed : int
        The subset's and the drawing order's seed.

    Returns
    -------
    matplotlib.figure.Figure
    """
    projection = np.asarray(projection, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    shown = np.flatnonzero(np.isfinite(projection).all(axis=1))
    rng = np.random.default_rng(seed)
    n_shown = shown.size
    shown = rng.permutation(shown)[:max_points]
    if ax is None:
        ax = Figure(figsize=(6.4, 5.2), layout="constrained").add_subplot()
    if projection.shape[1] >= 2:
        x, y = projection[shown, 0], projection[shown, 1]
        ax.set_ylabel("PCov 2")
    else:
        x, y = projection[shown, 0], values[shown]
        ax.set_ylabel(label)
    ax.set_xlabel("PCov 1")
    size = float(np.clip(3e4 / max(shown.size, 1), 0.5, 20.0))
    known = np.isfinite(values[shown])
    if not known.all():
        ax.scatter(x[~known], y[~known], s=size, c="0.75", linewidths=0, rasterized=True)
    points = ax.scatter(
        x[known],
        y[known],
        s=size,
        c=values[shown][known],
        cmap="viridis",
        linewidths=0,
        rasterized=True,
    )
    ax.figure.colorbar(points, ax=ax, label=label)
    note = f" ({shown.size} of {n_shown} rows drawn)" if shown.size < n_shown else ""
    ax.set_title((title or "PCovR map") + note, fontsize=10)
    return ax.figure
