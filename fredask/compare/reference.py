"""Every model against one reference: the paper's training-progress curve.

The checkpoints of a training run (or the fine-tuned variants of a model) are
compared with one reference model in both directions: ``reference -> m`` (how
much of ``m`` the reference explains) and ``m -> reference``.  These are
``2 (n - 1)`` of the ``n^2`` pairs of the all-pairs matrix, computed in the
same single pass (:func:`fredask.compare.matrix.pair_errors`), so the curve's
numbers are exactly the matrix's corresponding entries.

:meth:`ReferenceCurve.save` writes::

    <stem>.json         {"metric", "reference", "level", "method", "precision",
                         "n_train", "n_test", "fredask_version", "metadata",
                         "curve": [{"model", "from_reference", "to_reference",
                                    "alpha_from", "alpha_to"}, ...],
                         "errors": [per-pair summaries]}
    <stem>.csv          one row per model: from_reference, to_reference
    <stem>_errors.csv   the distribution of every pair's pointwise errors
    <stem>.png          both directions against the models' order
    <stem>_split.npz    train_idx, test_idx
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import fredask
from fredask.backend import ArrayBackend
from fredask.compare.distribution import flat_summaries, summary_frame
from fredask.compare.heatmap import METRIC_TITLES
from fredask.compare.matrix import check_comparison, pair_errors
from fredask.compare.result import _ROWS, _plain, write_result
from fredask.stats.splits import Split

__all__ = ["ReferenceCurve", "reference_curve"]

#: The two directions, as columns of :attr:`ReferenceCurve.curve`.
DIRECTIONS = ("from_reference", "to_reference")


@dataclass(frozen=True)
class ReferenceCurve:
    """Every model against one reference model, in both directions.

    Attributes
    ----------
    metric : str
        ``"gfre"``, ``"gfrd"`` or ``"lfre"``.
    reference : str
        The reference model.
    curve : pandas.DataFrame
        Index ``model`` (the other models, in the order given); columns
        ``from_reference`` (the error of reconstructing the model from the
        reference, ``matrix.loc[reference, model]`` of the all-pairs matrix)
        and ``to_reference`` (``matrix.loc[model, reference]``).
    alphas : pandas.DataFrame
        The chosen (unscaled) regularisation of each pair, same layout (NaN
        for the LFRE).
    split : Split
    method : str
    level : str
    precision : str
    errors : pandas.DataFrame or None
        Per pair, the distribution of its pointwise errors (as in
        :class:`~fredask.compare.result.ReconstructionMatrix`).
    metadata : dict
        Free, JSON-serialisable context, written into the JSON.
    """

    metric: str
    reference: str
    curve: pd.DataFrame
    alphas: pd.DataFrame
    split: Split
    method: str
    level: str = "atom"
    precision: str = "float64"
    errors: pd.DataFrame | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        """E.g. ``"GFRE against mace-final, atoms, 1000 test / 5044 train"``."""
        n_test, n_train = self.split.test_idx.size, self.split.train_idx.size
        return (
            f"{self.metric.upper()} against {self.reference}, {_ROWS[self.level]}, "
            f"{n_test} test / {n_train} train"
        )

    def to_json_dict(self) -> dict:
        """Everything :meth:`save` writes to JSON (layout in the module docstring)."""
        curve = [
            {
                "model": model,
                "from_reference": float(row["from_reference"]),
                "to_reference": float(row["to_reference"]),
                "alpha_from": float(self.alphas.loc[model, "from_reference"]),
                "alpha_to": float(self.alphas.loc[model, "to_reference"]),
            }
            for model, row in self.curve.iterrows()
        ]
        errors = []
        if self.errors is not None:
            errors = _plain(flat_summaries(self.errors).to_dict("records"))
        return {
            "metric": self.metric,
            "reference": self.reference,
            "level": self.level,
            "method": self.method,
            "precision": self.precision,
            "n_train": int(self.split.train_idx.size),
            "n_test": int(self.split.test_idx.size),
            "fredask_version": fredask.__version__,
            "metadata": _plain(self.metadata),
            "curve": curve,
            "errors": errors,
        }

    def plot(self, ax=None):
        """Both directions against the models' order (e.g. the checkpoints of a run)."""
        if ax is None:
            width = max(4.5, 0.6 * len(self.curve) + 2)
            figure = Figure(figsize=(width, 3.6), layout="constrained")
            ax = figure.add_subplot()
        x = np.arange(len(self.curve))
        labels = {
            "from_reference": f"{self.reference} \u2192 model",
            "to_reference": f"model \u2192 {self.reference}",
        }
        for column, marker in zip(DIRECTIONS, ("o", "s"), strict=True):
            ax.plot(x, self.curve[column].to_numpy(), marker=marker, label=labels[column])
        ax.set_xticks(x, list(self.curve.index), rotation=30, ha="right")
        ax.set_ylabel(METRIC_TITLES.get(self.metric, self.metric.upper()).split(" (")[0])
        ax.set_ylim(bottom=0)
        ax.set_title(self.title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return ax.figure

    def save(self, directory: str | Path, stem: str | None = None) -> dict[str, Path]:
        """Write JSON, the curve and error-summary CSVs, the PNG and the split (NPZ).

        Returns
        -------
        dict of str to pathlib.Path
            The written files by kind: ``json``, ``csv``, ``errors``, ``png``, ``split``.
        """
        return write_result(
            directory,
            stem or f"{self.metric}_vs_{self.reference}",
            self.to_json_dict(),
            self.curve,
            "model",
            self.errors,
            self.plot(),
            self.split,
        )


def reference_curve(
    features: Mapping[str, object],
    reference: str,
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
    level: str = "atom",
    row_structures=None,
    kept_variance: float | None = None,
) -> ReferenceCurve:
    """Every model against ``reference``, both directions, without the full matrix.

    Computes the ``2 (n - 1)`` pairs ``(reference, m)`` and ``(m, reference)``
    in one pass: the same numbers as the corresponding entries of
    :func:`~fredask.compare.matrix.reconstruction_matrix`, at about ``2 / n``
    of its solves (all models still enter the one statistics pass).

    Parameters
    ----------
    features : mapping of str to array-like
        Per-model ``(n_rows, n_features)`` arrays (numpy, Dask, Zarr), rows
        aligned; their order is the curve's (e.g. checkpoints by step).
    reference : str
        The model every other one is compared with.
    metric, split, train_idx, test_idx, scaler, estimator, method, n_local_points,
    client, progress, device, level, row_structures, kept_variance
        As in :func:`~fredask.compare.matrix.reconstruction_matrix`.

    Returns
    -------
    ReferenceCurve

    Raises
    ------
    FredaskError
        As :func:`~fredask.compare.matrix.check_comparison`, and for a
        reference that is not one of the models.
    """
    request = check_comparison(
        features,
        [metric],
        split,
        n_local_points,
        train_idx=train_idx,
        test_idx=test_idx,
        method=method,
        level=level,
        row_structures=row_structures,
        reference=reference,
    )
    found = pair_errors(
        request,
        metric,
        request.pairs,
        scaler=scaler,
        estimator=estimator,
        method=method,
        n_local_points=n_local_points,
        client=client,
        progress=progress,
        device=device,
        kept_variance=kept_variance,
    )
    others = pd.Index([n for n in request.features.names if n != reference], name="model")

    def frame(table: dict) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "from_reference": [table[(reference, m)] for m in others],
                "to_reference": [table[(m, reference)] for m in others],
            },
            index=others,
        )

    structures = None if row_structures is None else np.asarray(row_structures)
    return ReferenceCurve(
        metric,
        reference,
        frame(found.values),
        frame(found.chosen),
        request.split,
        method,
        level=level,
        precision=found.precision,
        errors=None
        if found.pointwise is None
        else summary_frame(found.pointwise, found.values, request.split.test_idx, structures),
    )
