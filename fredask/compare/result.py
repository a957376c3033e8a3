"""A reconstruction matrix as a result: its numbers, their context, its files.

:class:`ReconstructionMatrix` holds the all-pairs matrix, the chosen alphas,
the split, how it was computed (metric, level, method, precision), the
distribution of every pair's pointwise errors and free ``metadata`` that
callers fill with :func:`dataclasses.replace` (seed, split kind, store path,
skipped structures).  :meth:`ReconstructionMatrix.save` writes::

    <stem>.json         {"metric", "level", "model", "method", "precision",
                         "n_train", "n_test", "fredask_version", "metadata",
                         "errors": {source: {target: summary}},
                         "dominated": [[source, target], ...],
                         "bootstrap": null or {"n_resamples", "confidence",
                                      "random_state", "unit", "low", "high"},
                         "baseline": null or {"kind": "random", "values"},
                         "paper": <the paper's schema, to_dict()>}
    <stem>.csv          the matrix (rows source, columns target)
    <stem>_errors.csv   one row per pair: value, median, p90, p99, top1_share,
                        dominated, worst rows / errors / structures
    <stem>.png          the heat map
    <stem>_split.npz    train_idx, test_idx
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import fredask
from fredask.compare.distribution import DOMINATED_SHARE, TOP_FRACTION, flat_summaries
from fredask.compare.heatmap import heatmap
from fredask.measures.bootstrap import Bootstrap
from fredask.stats.splits import Split

#: Levels a matrix can describe: atoms, structures (between models), or the
#: cumulant orders of one model (rows are structures).
LEVELS = ("atom", "structure", "order")
_ROWS = {"atom": "atoms", "structure": "structures", "order": "structures"}


@dataclass(frozen=True)
class Intervals:
    """Bootstrap percentile intervals of a matrix (:mod:`fredask.measures.bootstrap`).

    Attributes
    ----------
    low, high : pandas.DataFrame
        The ends, in the matrix's layout.
    settings : Bootstrap
        Resamples, confidence and seed.
    """

    low: pd.DataFrame
    high: pd.DataFrame
    settings: Bootstrap

    def to_json_dict(self) -> dict:
        """``{"n_resamples", "confidence", "random_state", "unit", "low", "high"}``."""
        return {
            "n_resamples": self.settings.n_resamples,
            "confidence": self.settings.confidence,
            "random_state": self.settings.random_state,
            "unit": "structure",
            "low": _nested(self.low),
            "high": _nested(self.high),
        }


def _nested(frame: pd.DataFrame) -> dict:
    """``{row: {column: value}}`` of a frame, as floats."""
    return {str(r): {str(c): float(frame.loc[r, c]) for c in frame.columns} for r in frame.index}


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
    level : {"atom", "structure", "order"}
        What the rows are: atoms, structures, or structures described by the
        cumulant orders of one model (``model``).
    precision : {"input", "float64"}
        The fits' truncation epsilon (:class:`fredask.RidgeSettings`).
    errors : pandas.DataFrame or None
        Per pair (index ``(source, target)``), the distribution of its
        pointwise errors (:func:`fredask.compare.distribution.summarise`): the
        test-row errors of the GFRE and LFRE, the test-row distortions of
        the GFRD.
    model : str or None
        The model whose orders are compared (``level="order"``).
    intervals : Intervals or None
        Bootstrap percentile intervals of every entry, when asked for.
    baseline : pandas.DataFrame or None
        Every entry's chance level (random source features of the same
        width, :mod:`fredask.compare.baseline`), when asked for.
    metadata : dict
        Free, JSON-serialisable context (seed, split kind, store, skipped
        structures...), written into the JSON; fill it with
        ``dataclasses.replace(result, metadata={...})``.
    """

    metric: str
    matrix: pd.DataFrame
    alphas: pd.DataFrame
    split: Split
    method: str
    level: str = "atom"
    precision: str = "float64"
    errors: pd.DataFrame | None = None
    model: str | None = None
    intervals: Intervals | None = None
    baseline: pd.DataFrame | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        """Number of train rows."""
        return int(self.split.train_idx.size)

    @property
    def n_test(self) -> int:
        """Number of test rows."""
        return int(self.split.test_idx.size)

    @property
    def dominated(self) -> pd.DataFrame:
        """Per pair (matrix layout): do the top 1% of test rows carry over half the error?"""
        out = pd.DataFrame(False, index=self.matrix.index, columns=self.matrix.columns)
        if self.errors is not None:
            for (source, target), flag in self.errors["dominated"].items():
                out.loc[source, target] = bool(flag)
        return out

    @property
    def title(self) -> str:
        """E.g. ``"LFRE, atoms, 1000 test / 5044 train"``."""
        what = _ROWS[self.level]
        if self.level == "order":
            what = f"cumulant orders of {self.model}, {what}"
        return f"{self.metric.upper()}, {what}, {self.n_test} test / {self.n_train} train"

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

    def to_json_dict(self) -> dict:
        """Everything :meth:`save` writes to JSON (layout in the module docstring)."""
        summaries: dict = {}
        dominated = []
        if self.errors is not None:
            for (source, target), row in self.errors.iterrows():
                entry = {"source": source, "target": target, **_plain(row.to_dict())}
                summaries.setdefault(source, {})[target] = entry
                if row["dominated"]:
                    dominated.append([source, target])
        return {
            "metric": self.metric,
            "level": self.level,
            "model": self.model,
            "method": self.method,
            "precision": self.precision,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "fredask_version": fredask.__version__,
            "metadata": _plain(self.metadata),
            "errors": summaries,
            "dominated": dominated,
            "bootstrap": None if self.intervals is None else self.intervals.to_json_dict(),
            "baseline": None
            if self.baseline is None
            else {"kind": "random", "values": _nested(self.baseline)},
            "paper": self.to_dict(),
        }

    def plot(self, ax=None, vmax: float | None = None):
        """Annotated heat map: colours 0..vmax (above: the over-colour), dominated pairs marked.

        ``vmax`` defaults to 1, and to 2 for the Procrustes distance (its range).
        """
        if vmax is None:
            vmax = 2.0 if self.metric == "procrustes" else 1.0
        note = (
            f"\u2020 the top {TOP_FRACTION:.0%} of test rows carry over "
            f"{DOMINATED_SHARE:.0%} of the squared error"
        )
        return heatmap(
            self.matrix,
            self.metric,
            ax=ax,
            vmax=vmax,
            title=self.title,
            marked=self.dominated.to_numpy(),
            note=note,
            low=None if self.intervals is None else self.intervals.low,
            high=None if self.intervals is None else self.intervals.high,
            chance=self.baseline,
        )

    def save(self, directory: str | Path, stem: str | None = None) -> dict[str, Path]:
        """Write JSON, the matrix and error-summary CSVs, the heat-map PNG and the split (NPZ).

        Returns
        -------
        dict of str to pathlib.Path
            The written files by kind: ``json``, ``csv``, ``errors``, ``png``, ``split``.
        """
        return write_result(
            directory,
            stem or self.metric,
            self.to_json_dict(),
            self.matrix,
            "source",
            self.errors,
            self.plot(),
            self.split,
        )


def write_result(
    directory: str | Path,
    stem: str,
    summary: dict,
    table: pd.DataFrame,
    index_label: str,
    errors: pd.DataFrame | None,
    figure,
    split: Split,
) -> dict[str, Path]:
    """Write a result's files: ``<stem>.json``, ``.csv``, ``_errors.csv``, ``.png``, ``_split.npz``.

    Returns
    -------
    dict of str to pathlib.Path
        By kind: ``json``, ``csv``, ``errors`` (only with ``errors``), ``png``, ``split``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": directory / f"{stem}.json",
        "csv": directory / f"{stem}.csv",
        "errors": directory / f"{stem}_errors.csv",
        "png": directory / f"{stem}.png",
        "split": directory / f"{stem}_split.npz",
    }
    paths["json"].write_text(json.dumps(summary, indent=2))
    table.to_csv(paths["csv"], index_label=index_label)
    if errors is not None:
        flat_summaries(errors).to_csv(paths["errors"], index=False)
    else:
        del paths["errors"]
    figure.savefig(paths["png"], dpi=150)
    np.savez(paths["split"], train_idx=split.train_idx, test_idx=split.test_idx)
    return paths


def _plain(value):
    """``value`` with numpy scalars/arrays, tuples and paths as JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray):
        return [_plain(v) for v in (sorted(value) if isinstance(value, set) else value)]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    return value
