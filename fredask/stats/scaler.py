"""Feature standardisation fitted on the train rows (scikit-matter's ``StandardFlexibleScaler``).

:class:`ScalerSettings` holds the scaler's parameters (read from a
``StandardFlexibleScaler`` where one is given); :func:`fit_scaler` turns the
train rows' moments into one centre and one per-column scale over the
concatenated columns of all models, each model scaled on its own.

Moments of huge or tiny features carry per-column powers of two
(:attr:`~fredask.stats.moments.Moments.exponent`); the fit works in those
units, tests the variance floors in the data's own units, and returns the
centre and scale in the data's units.  With the scaler's spread
(``with_std=True``) the scaled features, and so every reconstruction error,
do not depend on a global power-of-two scale of a model; without it they do,
and such features are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from fredask.errors import FredaskError
from fredask.stats.features import FeatureSet
from fredask.stats.moments import Moments, column_sum_squares, exponents_of


class FeatureScaleError(FredaskError, ValueError):
    """A model's features cannot be scaled: constant, or too large for float64."""


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
    """Centre and per-column scale fitted on the train rows (StandardFlexibleScaler).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Centre and scale of every concatenated column, in the data's units
        (whatever powers of two ``train`` carries).

    Raises
    ------
    FeatureScaleError
        Naming the model: zero (total) variance on the train rows, features
        that had to be rescaled before squaring with ``with_std=False``, or a
        train spread beyond float64's range.
    """
    with np.errstate(over="ignore", under="ignore"):  # floors beyond float64 are 0 or inf
        return _fit(train, features, scaler, method)


def _fit(train: Moments, features: FeatureSet, scaler: ScalerSettings, method: str):
    variance = column_sum_squares(train, method, np) / train.count
    exponent = exponents_of(train)
    mean = train.mean
    centre = np.ldexp(mean, exponent) if scaler.with_mean else np.zeros_like(mean)
    scale = np.ones_like(mean)
    for name in features.names:
        cols = features.columns(name)
        power = exponent[cols]
        if power.any() and not scaler.with_std:
            extreme = int(power[np.argmax(np.abs(power))])
            raise FeatureScaleError(
                f"features {name!r} reach magnitudes near 2**{extreme}, whose squares leave "
                "float64's range, and without the scaler's spread (with_std=False) "
                "rescaling them would change the errors; multiply them by a power of two"
            )
        if scaler.with_std:
            if scaler.column_wise:
                scale[cols] = _column_scales(name, mean[cols], variance[cols], power, scaler)
            else:
                scale[cols] = _total_scale(name, mean[cols], variance[cols], power, scaler)
    for name in features.names:
        cols = features.columns(name)
        if not (np.isfinite(centre[cols]).all() and np.isfinite(scale[cols]).all()):
            raise FeatureScaleError(
                f"features {name!r} are too large for float64: their train mean or spread "
                f"exceeds {np.finfo(np.float64).max:.3g}; divide them by a power of two"
            )
    return centre, scale


def _column_scales(name, mean, variance, power, scaler: ScalerSettings) -> np.ndarray:
    """Per-column standard deviations (``column_wise=True``), in the data's units."""
    # var * 4**power < atol + |mean| * 2**power * rtol, tested in the rescaled units
    floor = np.ldexp(scaler.atol, -2 * power) + np.ldexp(np.abs(mean) * scaler.rtol, -power)
    low = variance < floor
    if low.any():
        raise FeatureScaleError(
            f"features {name!r}: {int(low.sum())} columns have zero variance on the "
            f"train rows (first: column {int(np.flatnonzero(low)[0])}); "
            "column-wise scaling needs every column to vary"
        )
    return np.ldexp(np.sqrt(variance), power)


def _total_scale(name, mean, variance, power, scaler: ScalerSettings) -> float:
    """``sqrt(sum of column variances)`` of one model, in the data's units."""
    if not power.any():
        total, mean_mean, top = variance.sum(), abs(mean.mean()), 0
        floor = mean_mean * scaler.rtol + scaler.atol
    else:  # in units of 4**top: every column brought to the largest power, exactly
        top = int(power.max())
        total = np.ldexp(variance, 2 * (power - top)).sum()
        mean_mean = abs(np.ldexp(mean, power - top).mean())
        floor = np.ldexp(mean_mean * scaler.rtol, -top) + np.ldexp(scaler.atol, -2 * top)
    if total < floor:
        raise FeatureScaleError(
            f"features {name!r} have zero total variance on the train rows "
            f"({np.ldexp(total, 2 * top):.3g} < {scaler.atol:g}): constant features "
            "cannot be scaled"
        )
    return np.ldexp(np.sqrt(total), top)
