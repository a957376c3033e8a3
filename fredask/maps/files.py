"""A PCovR map's files.

* ``<stem>.json``: mixing, n_components, scaling, method, n_fitted,
  eigenvalues, singular values, explained variance (and ratio), loss_x,
  loss_y, score, fredask_version and metadata (model, property, level,
  store, ...);
* ``<stem>.npz``: projection (n_rows x k; NaN for rows without features),
  values (the property of every row), rows (those fitted), row_structure (the
  structure of every row), projector, centre, scale, target_centre,
  target_scale;
* ``<stem>.png``: the scatter plot coloured by the property
  (:func:`fredask.maps.scatter`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import fredask
from fredask.maps.pcovr import PCovRMap
from fredask.maps.plot import scatter


def summary(result: PCovRMap, metadata: dict | None = None) -> dict:
    """What ``<stem>.json`` holds (JSON types only)."""
    return {
        "mixing": result.mixing,
        "n_components": result.n_components,
        "scaling": result.scaling,
        "method": result.method,
        "n_fitted": result.n_fitted,
        "eigenvalues": result.eigenvalues.tolist(),
        "singular_values": result.singular_values.tolist(),
        "explained_variance": result.explained_variance.tolist(),
        "explained_variance_ratio": result.explained_variance_ratio.tolist(),
        "loss_x": result.loss_x,
        "loss_y": result.loss_y,
        "score": result.score,
        "fredask_version": fredask.__version__,
        "metadata": json.loads(json.dumps(metadata or {}, default=_plain)),
    }


def _plain(value):
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def save_map(
    result: PCovRMap,
    directory: str | Path,
    stem: str,
    values: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    structures: np.ndarray | None = None,
    label: str = "property",
    title: str | None = None,
    metadata: dict | None = None,
) -> dict[str, Path]:
    """Write ``<stem>.json``, ``<stem>.npz`` and ``<stem>.png`` into ``directory``.

    Parameters
    ----------
    values : numpy.ndarray, shape (n_rows,)
        The property of every row (the plot's colours).
    rows, structures : numpy.ndarray, optional
        The fitted rows and the structure of every row, kept in the NPZ
        (``rows``, ``row_structure``).
    label, title
        The colour bar's label and the plot's title.
    metadata : dict, optional
        Written into the JSON.

    Returns
    -------
    dict of str to pathlib.Path
        By kind: ``json``, ``npz``, ``png``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / f"{stem}.{kind}" for kind in ("json", "npz", "png")}
    paths["json"].write_text(json.dumps(summary(result, metadata), indent=2))
    arrays = {
        "projection": result.projection,
        "values": np.asarray(values, dtype=np.float64),
        "projector": result.projector,
        "centre": result.centre,
        "scale": result.scale,
        "target_centre": result.target_centre,
        "target_scale": result.target_scale,
    }
    if rows is not None:
        arrays["rows"] = np.asarray(rows, dtype=np.int64)
    if structures is not None:
        arrays["row_structure"] = np.asarray(structures, dtype=np.int64)
    np.savez(paths["npz"], **arrays)
    figure = scatter(result.projection, values, label=label, title=title)
    figure.savefig(paths["png"], dpi=150)
    return paths
