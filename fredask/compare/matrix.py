"""All-pairs comparisons: every ordered model pair from one pass over the data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd

from fredask.backend import ArrayBackend
from fredask.cluster.clients import resolve_client
from fredask.compare.heatmap import heatmap
from fredask.measures.global_fit import fit_global
from fredask.measures.local_fit import local_errors
from fredask.solvers.settings import RidgeSettings
from fredask.stats.features import as_feature_set
from fredask.stats.scaler import ScalerSettings
from fredask.stats.splits import Split, resolve_split

GLOBAL_METRICS = ("gfre", "gfrd")
METRICS = (*GLOBAL_METRICS, "lfre")


@dataclass(frozen=True)
class ReconstructionMatrix:
    """Errors between every ordered pair of models.

    Attributes
    ----------
    metric : str
        ``"gfre"``, ``"gfrd"`` or ``"lfre"``.
    matrix : pandas.DataFrame
        ``matrix.loc[source, target]``: error of reconstructing ``target`` from
        ``source``.
    alphas : pandas.DataFrame
        The chosen (unscaled) regularisation of each pair, same layout (NaN
        for the LFRE, which chooses one per test row).
    split : Split
        The train/test rows used for every pair.
    method : str
        ``"qr"`` (exact) or ``"gram"`` (fast) statistics.
    """

    metric: str
    matrix: pd.DataFrame
    alphas: pd.DataFrame
    split: Split
    method: str

    def to_dict(self) -> dict:
        """The paper's schema: ``{target: {source: {"A", "B", "A_to_B", "B_to_A"}}}``.

        ``A`` is the source, ``B`` the target; ``A_to_B`` is the error of
        reconstructing B from A and ``B_to_A`` the reverse.
        """
        m = self.matrix
        return {
            target: {
                source: {
                    "A": source,
                    "B": target,
                    "A_to_B": float(m.loc[source, target]),
                    "B_to_A": float(m.loc[target, source]),
                }
                for source in m.index
            }
            for target in m.columns
        }

    def plot(self, ax=None):
        """Annotated heat map (rows source, columns target, colours 0..1)."""
        return heatmap(self.matrix, self.metric, ax=ax)

    def save(self, directory: str | Path, stem: str | None = None) -> dict[str, Path]:
        """Write JSON (paper schema), CSV, heat-map PNG and the split (NPZ).

        Returns
        -------
        dict of str to pathlib.Path
            The written files by kind.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = stem or self.metric
        paths = {
            "json": directory / f"{stem}.json",
            "csv": directory / f"{stem}.csv",
            "png": directory / f"{stem}.png",
            "split": directory / f"{stem}_split.npz",
        }
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2))
        self.matrix.to_csv(paths["csv"], index_label="source")
        self.plot().savefig(paths["png"], dpi=150)
        np.savez(paths["split"], train_idx=self.split.train_idx, test_idx=self.split.test_idx)
        return paths


def reconstruction_matrix(
    features: Mapping[str, object],
    metric: str = "gfre",
    *,
    split: Split | None = None,
    train_idx=None,
    test_idx=None,
    scaler=None,
    estimator=None,
    method: str = "qr",
    n_local_points=None,
    client=None,
    progress: bool = True,
    device: str | ArrayBackend = "cpu",
) -> ReconstructionMatrix:
    """Reconstruction errors between all ordered pairs of models, in one pass.

    Parameters
    ----------
    features : mapping of str to array-like
        Per-model ``(n_rows, n_features)`` arrays (numpy, Dask, Zarr), rows
        aligned across models.
    metric : {"gfre", "gfrd", "lfre"}
        Global reconstruction error or distortion, or local reconstruction
        error.
    split : Split, optional
        Train/test rows (e.g. from :func:`fredask.stratified_split`); else
        ``train_idx``/``test_idx`` or scikit-matter's default split.
    scaler, estimator : optional
        As in :mod:`fredask.metrics`.
    method : {"qr", "gram"}
        Exact or fast statistics (global metrics).
    n_local_points : int, callable (p, q) -> int, or None
        Neighbours of the LFRE; ``None``: ``min(p, q)`` per pair, as in the
        paper.  The neighbour search is shared by all pairs with one source.
    client : distributed.Client, "threads" or "sync", optional
        Default: the active client, else the embedded LocalCluster.
    progress : bool
        Show a progress bar for the pass.
    device : {"cpu", "gpu", "auto"} or ArrayBackend
        Array module of the chunk kernels (:func:`fredask.backend.resolve_backend`).

    Returns
    -------
    ReconstructionMatrix
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    feature_set = as_feature_set(features)
    if split is None:
        split = resolve_split(feature_set.n_rows, train_idx=train_idx, test_idx=test_idx)
    elif train_idx is not None or test_idx is not None:
        raise ValueError("give either split or train_idx/test_idx, not both")
    names = feature_set.names
    pairs = list(product(names, names))
    settings = {
        "ridge": RidgeSettings.from_estimator(estimator),
        "scaler": ScalerSettings.from_scaler(scaler),
        "scheduler": resolve_client(client),
        "progress": progress,
        "device": device,
    }
    if metric == "lfre":
        errors = local_errors(feature_set, split, pairs, n_local_points, **settings)
        values = {pair: float(np.sqrt(np.mean(e**2))) for pair, e in errors.items()}
        chosen = dict.fromkeys(pairs, float("nan"))  # one alpha per test row
    else:
        fit = fit_global(
            feature_set, split, pairs, method=method, distortion=metric == "gfrd", **settings
        )
        values = {pair: getattr(result, metric) for pair, result in fit.pairs.items()}
        chosen = {pair: result.ridge.alpha for pair, result in fit.pairs.items()}
    index = pd.Index(names, name="source")
    columns = pd.Index(names, name="target")
    matrix = pd.DataFrame([[values[(s, t)] for t in names] for s in names], index, columns)
    alphas = pd.DataFrame([[chosen[(s, t)] for t in names] for s in names], index, columns)
    return ReconstructionMatrix(metric, matrix, alphas, split, method)
