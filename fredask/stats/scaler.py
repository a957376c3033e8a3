"""Feature standardisation fitted on the train rows (scikit-matter's ``StandardFlexibleScaler``).

:class:`ScalerSettings` holds the scaler's parameters (read from a
``StandardFlexibleScaler`` where one is given); :func:`fit_scaler` turns the
train rows' moments into one centre and one per-column scale over the
concatenated columns of all models, each model scaled on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from fredask.stats.features import FeatureSet
from fredask.stats.moments import Moments, column_sum_squares


@dataclass(frozen=True)
class ScalerSettings:
    """Parameters of ``StandardFlexibleScaler``, fitted on the train rows.

    Parameters
    ----------
    with_mean : bool
        Centre on the train mean.
    with_std : bool
        Divide by the train spread.
    column_wise : bool
        One scale per column (standard deviation) instead of one scalar
        ``sqrt(sum of column variances)``.
    rtol, atol : float
        A total variance (or column variance) below ``atol + rtol * |mean|``
        is an error.
    """

    with_mean: bool = True
    with_std: bool = True
    column_wise: bool = False
    rtol: float = 0.0
    atol: float = 1e-12

    @classmethod
    def from_scaler(cls, scaler) -> ScalerSettings:
        """Read the parameters of a scikit-matter ``StandardFlexibleScaler``."""
        if scaler is None:
            return cls()
        if isinstance(scaler, cls):
            return scaler
        if type(scaler).__name__ != "StandardFlexibleScaler":
            raise TypeError(
                "scaler must be skmatter.preprocessing.StandardFlexibleScaler or "
                f"fredask.ScalerSettings, got {type(scaler).__name__}"
            )
        return cls(**{f.name: getattr(scaler, f.name) for f in fields(cls)})


def fit_scaler(
    train: Moments, features: FeatureSet, scaler: ScalerSettings, method: str
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and per-column scale fitted on the train rows (StandardFlexibleScaler)."""
    variance = column_sum_squares(train, method, np) / train.count
    centre = train.mean.copy() if scaler.with_mean else np.zeros_like(train.mean)
    scale = np.ones_like(train.mean)
    if not scaler.with_std:
        return centre, scale
    for name in features.names:
        cols = features.columns(name)
        mean, var = train.mean[cols], variance[cols]
        if scaler.column_wise:
            low = var < scaler.atol + np.abs(mean) * scaler.rtol
            if low.any():
                raise ValueError(
                    f"features {name!r}: {int(low.sum())} columns have zero variance on the "
                    f"train rows (first: column {int(np.flatnonzero(low)[0])}); "
                    "column-wise scaling needs every column to vary"
                )
            scale[cols] = np.sqrt(var)
        else:
            total = var.sum()
            if total < abs(mean.mean()) * scaler.rtol + scaler.atol:
                raise ValueError(
                    f"features {name!r} have zero total variance on the train rows "
                    f"({total:.3g} < {scaler.atol:g}): constant features cannot be scaled"
                )
            scale[cols] = np.sqrt(total)
    return centre, scale
