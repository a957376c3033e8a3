"""Bootstrap intervals over structures for the measures that are means over test rows.

GFRE, GFRD and LFRE are each the root mean square of per-test-row numbers
``e_i`` (the pointwise errors or distortions), the mutual k-NN agreement the
mean of per-test-row shares (docs/method.md, section 14).  Atoms of one
structure are not independent (they share a geometry and, through message
passing, each other's features), so the resampling unit is the structure:
a resample draws structures with replacement, every drawn structure
bringing all its rows.  With more than ``max_groups`` (default
:data:`MAX_GROUPS`) structures, the structures are first dealt at random
into that many groups and the groups are drawn; a group of whole structures
is as independent as a structure, and the weights then fit in memory.

A resample costs weighted sums over groups, not a pass over the data:

* test side: the per-group sums ``E_g = sum_{i in g} e_i^2`` (or shares)
  and test-row counts ``n_g`` come from the per-row values the matrix
  already has; the resample's mean is ``sum_g w_g E_g / sum_g w_g n_g``
  with ``w_g`` the number of draws of group ``g``;
* train side: the errors are in units of the target's spread on the train
  rows (the scaler), an estimate whose own fluctuation changes a GFRE at
  first order.  One extra pass keeps every group's train-row count, column
  means and per-column sums of squares (:func:`group_train_moments`, ``2 P``
  numbers per group); a resample merges them with its weights, exactly, and
  refits the model-wise scale, and its values are multiplied by
  ``scale_full / scale_resample`` of the target.

The fitted maps themselves (ridge weights, Procrustes rotation, the LFRE's
local fits, the centre) are held at their full-data values, in the data's
units: they minimise the train error, so their fluctuations change the test
error at second order only (``O(p / n_train)``).  With few train rows per
feature, refitted resamples would be wider.  tests/test_bootstrap.py checks
the calibration by simulation: nominal 90% covers the true GFRE in 85-95%
of 200 repetitions over correlated atoms, while resampling atoms as if they
were independent covers it far less often.

The CKA, CCA and Procrustes distance are not means over rows: their
resamples merge per-group test-row scatters instead
(:func:`similarity_bootstrap`, at most :data:`MAX_SCATTER_GROUPS` groups,
``P^2`` numbers each) and solve the small problems again; they fit nothing.

The interval is the percentile interval of the resample values.  Its
assumptions: the structures are an independent sample from the population
the interval is about, there are enough of them (tens at least; at least
:data:`MIN_UNITS`), and the scaler scales each model as a whole (the
default, or none); a column-wise scaler is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fredask.errors import FredaskError
from fredask.stats.features import Pair

#: Default share of the resample distribution between the interval's ends.
DEFAULT_CONFIDENCE = 0.9
#: Fewest resampling units (structures) a bootstrap accepts.
MIN_UNITS = 2
#: Most resampling groups: more structures are dealt at random into this many.
MAX_GROUPS = 1024


class BootstrapError(FredaskError, ValueError):
    """A bootstrap request that cannot be computed (too few structures, bad settings)."""


@dataclass(frozen=True)
class Bootstrap:
    """The settings of a bootstrap over structures.

    Attributes
    ----------
    n_resamples : int
        Resamples drawn (``B``), at least 1.
    confidence : float in (0, 1)
        Share of the resample distribution between the interval's ends.
    random_state : int
        Seed of the resampling (the same seed draws the same structures).
    """

    n_resamples: int
    confidence: float = DEFAULT_CONFIDENCE
    random_state: int = 0

    def __post_init__(self):
        if isinstance(self.n_resamples, bool) or not isinstance(self.n_resamples, int | np.integer):
            raise BootstrapError(
                f"bootstrap must be a whole number of resamples, got {self.n_resamples!r}"
            )
        if self.n_resamples < 1:
            raise BootstrapError(f"bootstrap must be at least 1 resample, got {self.n_resamples}")
        if not 0 < self.confidence < 1:
            raise BootstrapError(f"confidence must be in (0, 1), got {self.confidence}")


def resampling_groups(
    n_rows: int, row_structures: np.ndarray | None, max_groups: int, random_state: int
) -> np.ndarray:
    """The resampling group of every row: its structure, or a random group of structures.

    Parameters
    ----------
    n_rows : int
    row_structures : numpy.ndarray of int, shape (n_rows,), or None
        The structure of every row; None: every row is its own structure.
    max_groups : int
        With more structures than this, they are dealt at random (seeded by
        ``random_state``) into ``max_groups`` groups of nearly equal size.

    Returns
    -------
    numpy.ndarray of int64, shape (n_rows,)
        Groups numbered ``0 .. n_groups - 1``.
    """
    if row_structures is None:
        unit = np.arange(n_rows, dtype=np.int64)
    else:
        unit = np.unique(np.asarray(row_structures), return_inverse=True)[1].astype(np.int64)
    n_units = int(unit.max()) + 1 if unit.size else 0
    if n_units <= max_groups:
        return unit
    dealt = np.empty(n_units, dtype=np.int64)
    dealt[np.random.default_rng(random_state).permutation(n_units)] = (
        np.arange(n_units) % max_groups
    )
    return dealt[unit]


def draw_weights(n_groups: int, settings: Bootstrap) -> np.ndarray:
    """How often each group is drawn in each resample, shape ``(n_resamples, n_groups)``.

    Raises
    ------
    BootstrapError
        With fewer than :data:`MIN_UNITS` groups.
    """
    if n_groups < MIN_UNITS:
        raise BootstrapError(
            f"{n_groups} resampling group(s); a bootstrap over structures "
            f"needs at least {MIN_UNITS}"
        )
    rng = np.random.default_rng(settings.random_state)
    uniform = np.full(n_groups, 1.0 / n_groups)
    return rng.multinomial(n_groups, uniform, size=settings.n_resamples).astype(np.float64)


def resample_means(
    per_row: Mapping[Pair, np.ndarray], groups: np.ndarray, weights: np.ndarray
) -> dict[Pair, np.ndarray]:
    """Every pair's mean of ``per_row`` in each resample.

    Parameters
    ----------
    per_row : mapping of (source, target) to numpy.ndarray, shape (n_test,)
        A number per test row (a squared error, a share of neighbours).
    groups : numpy.ndarray of int, shape (n_test,)
        The resampling group of every test row.
    weights : numpy.ndarray, shape (n_resamples, n_groups)
        Draws per group (:func:`draw_weights`).

    Returns
    -------
    dict of (source, target) to numpy.ndarray, shape (n_resamples,)
        The same resamples (the same drawn structures) for every pair.
    """
    n_groups = weights.shape[1]
    pairs = list(per_row)
    sums = np.stack(
        [np.bincount(groups, np.asarray(per_row[p], np.float64), n_groups) for p in pairs], axis=1
    )
    counts = np.bincount(groups, minlength=n_groups).astype(np.float64)
    table = (weights @ sums) / (weights @ counts)[:, None]
    return {pair: table[:, i] for i, pair in enumerate(pairs)}


def group_train_moments(features, split, groups, scheduler, backend, progress) -> list:
    """One pass: every group's train-row moments (count, means, per-column sums of squares).

    Returns
    -------
    list of Moments or None
        One per group (``None`` for a group without train rows), on the
        host, with common per-column powers of two; ``"diagonal"`` form.
    """
    from fredask.cluster.clients import compute
    from fredask.stats.moments import align_moments, merge_moments, moments_to_host
    from fredask.stats.passes import statistics_graph
    from fredask.stats.splits import FOLD1, FOLD2, N_SUBSETS, TEST, UNUSED, row_labels

    labels = row_labels(features.n_rows, split, None, False)
    labels[labels == TEST] = UNUSED  # test rows enter through their per-row values
    parts = compute(
        statistics_graph(features, labels, "diagonal", backend.xp, groups=groups),
        scheduler,
        progress,
    )
    n_groups = len(parts) // N_SUBSETS
    train = [
        merge_moments(
            [moments_to_host(parts[g * N_SUBSETS + s]) for s in (FOLD1, FOLD2)], "diagonal", np
        )
        for g in range(n_groups)
    ]
    return align_moments(train, "diagonal", np)


def resample_scales(train: list, weights: np.ndarray, features, scaler) -> np.ndarray:
    """Each model's scale fitted on each resample's train rows, shape ``(n_resamples, n_models)``.

    The groups' moments merge with the weights exactly (a group drawn ``w``
    times counts as ``w`` copies of its rows).
    """
    from fredask.stats.moments import Moments
    from fredask.stats.scaler import fit_scaler

    present = [g for g, m in enumerate(train) if m is not None]
    counts = np.array([train[g].count for g in present], dtype=np.float64)
    means = np.stack([train[g].mean for g in present])
    squares = np.stack([train[g].scatter for g in present])
    exponent = train[present[0]].exponent
    starts = [features.columns(name).start for name in features.names]
    out = np.empty((weights.shape[0], len(features.names)))
    for b, w in enumerate(weights[:, present]):
        count = w @ counts
        if count == 0:
            out[b] = np.nan
            continue
        mean = (w * counts) @ means / count
        scatter = w @ squares + (w * counts) @ (means - mean) ** 2
        moments = Moments(round(count), mean, scatter, exponent)
        out[b] = fit_scaler(moments, features, scaler, "diagonal")[1][starts]
    return out


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of ``values``."""
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def intervals(
    per_row: Mapping[Pair, np.ndarray],
    groups: np.ndarray,
    weights: np.ndarray,
    confidence: float,
    rms: bool = True,
    target_scale: Mapping[Pair, np.ndarray] | None = None,
) -> dict[Pair, tuple[float, float]]:
    """Every pair's percentile interval of its RMS (``rms``) or mean of ``per_row``.

    Parameters
    ----------
    per_row, groups, weights
        As in :func:`resample_means`.
    confidence : float
    rms : bool
        Resample the mean of the squares and take the root: each resample's
        value is the RMS of its rows exactly.
    target_scale : mapping of (source, target) to numpy.ndarray, shape (n_resamples,), optional
        ``scale_full / scale_resample`` of each pair's target
        (:func:`resample_scales`), multiplying the resample values.
    """
    if rms:
        per_row = {pair: np.asarray(v, np.float64) ** 2 for pair, v in per_row.items()}
    resamples = resample_means(per_row, groups, weights)
    out = {}
    for pair, values in resamples.items():
        values = np.sqrt(values) if rms else values
        if target_scale is not None:
            values = values * target_scale[pair]
        out[pair] = percentile_interval(values[np.isfinite(values)], confidence)
    return out


def bootstrap_intervals(
    per_row: Mapping[Pair, np.ndarray],
    features,
    split,
    row_structures: np.ndarray | None,
    settings: Bootstrap,
    *,
    rms: bool = True,
    scaler=None,
    scheduler="threads",
    backend=None,
    progress: bool = False,
) -> dict[Pair, tuple[float, float]]:
    """The intervals of a matrix's pairs, from their per-test-row values.

    Parameters
    ----------
    per_row : mapping of (source, target) to numpy.ndarray, shape (n_test,)
        Errors (``rms``) or shares, in the order of ``split.test_idx``.
    features : FeatureSet
    split : Split
    row_structures : numpy.ndarray of int, shape (n_rows,), or None
        The resampling unit of every row (None: the rows themselves).
    settings : Bootstrap
    rms : bool
        The measure is the RMS of the values (else their mean).
    scaler : ScalerSettings, optional
        With ``rms`` and a model-wise spread (the default), one more pass
        resamples the target's train-row scale (:func:`group_train_moments`);
        ``None`` or ``with_std=False`` skip it; ``column_wise=True`` is refused.
    scheduler, backend, progress
        For that pass.

    Raises
    ------
    BootstrapError
        For fewer than two test structures, or a column-wise scaler.
    """
    groups = resampling_groups(features.n_rows, row_structures, MAX_GROUPS, settings.random_state)
    test_groups = groups[split.test_idx]
    present = np.unique(test_groups)
    if present.size < MIN_UNITS:
        raise BootstrapError(
            f"the test rows come from {present.size} structure(s); a bootstrap over structures "
            f"needs at least {MIN_UNITS}"
        )
    weights = draw_weights(int(groups.max()) + 1, settings)
    ratio = None
    if rms and scaler is not None and scaler.with_std:
        if scaler.column_wise:
            raise BootstrapError(
                "bootstrap: a column-wise scaler's scales are not resampled; use the default "
                "model-wise scaler"
            )
        train = group_train_moments(features, split, groups, scheduler, backend, progress)
        ones = np.ones((1, weights.shape[1]))
        full = resample_scales(train, ones, features, scaler)[0]
        scales = resample_scales(train, weights, features, scaler)
        index = {name: m for m, name in enumerate(features.names)}
        ratio = {pair: full[index[pair[1]]] / scales[:, index[pair[1]]] for pair in per_row}
    return intervals(per_row, test_groups, weights, settings.confidence, rms, ratio)


#: Most groups whose test-row scatter a similarity bootstrap keeps (``P^2`` numbers each).
MAX_SCATTER_GROUPS = 64


def group_test_moments(features, split, groups, method, scheduler, backend, progress) -> list:
    """One pass: every group's test-row moments (count, means, scatter), on the host, aligned.

    Returns
    -------
    list of Moments or None
        One per group (``None`` for a group without test rows), with common
        per-column powers of two.
    """
    from fredask.cluster.clients import compute
    from fredask.stats.moments import align_moments, moments_to_host
    from fredask.stats.passes import statistics_graph
    from fredask.stats.splits import N_SUBSETS, TEST, UNUSED, row_labels

    labels = row_labels(features.n_rows, split, None, False)
    labels[labels != TEST] = UNUSED
    parts = compute(
        statistics_graph(features, labels, method, backend.xp, groups=groups),
        scheduler,
        progress,
    )
    n_groups = len(parts) // N_SUBSETS
    return align_moments(
        [moments_to_host(parts[g * N_SUBSETS + TEST]) for g in range(n_groups)], method, np
    )


def resample_scatters(parts: list, weights: np.ndarray, method: str):
    """The test rows' moments of every resample, in Gram form (a generator).

    A group drawn ``w`` times counts as ``w`` copies of its rows: counts and
    sums scale by ``w``, and the scatter about the resample's mean is
    ``sum_g w_g (S_g + n_g (m_g - m)(m_g - m)^T)``, exactly.
    """
    from fredask.stats.moments import Moments

    present = [g for g, m in enumerate(parts) if m is not None]
    counts = np.array([parts[g].count for g in present], dtype=np.float64)
    means = np.stack([parts[g].mean for g in present])
    if method == "qr":
        scatters = np.stack([parts[g].scatter.T @ parts[g].scatter for g in present])
    else:
        scatters = np.stack([parts[g].scatter for g in present])
    exponent = parts[present[0]].exponent
    for w in weights[:, present]:
        count = w @ counts
        if count == 0:
            yield None
            continue
        mean = (w * counts) @ means / count
        shifts = np.sqrt(w * counts)[:, None] * (means - mean)
        scatter = np.tensordot(w, scatters, axes=1) + shifts.T @ shifts
        yield Moments(round(count), mean, scatter, exponent)


def similarity_bootstrap(
    features,
    split,
    row_structures: np.ndarray | None,
    settings: Bootstrap,
    pairs,
    metric: str,
    *,
    method: str = "qr",
    kept_variance: float | None = None,
    scheduler="threads",
    backend=None,
    progress: bool = False,
) -> tuple[dict, dict]:
    """A similarity's values and percentile intervals from one pass of per-group scatters.

    The structures are dealt into at most :data:`MAX_SCATTER_GROUPS` groups
    (every group keeps a ``P x P`` scatter); a resample merges the groups'
    scatters with its weights (:func:`resample_scatters`) and solves the
    pairs' small problems again.  Nothing is fitted, so nothing is held fixed.

    Returns
    -------
    values : dict of (source, target) to Similarity
        From all groups merged: the similarity of the test rows.
    intervals : dict of (source, target) to (low, high)
    """
    from fredask.measures.similarity import similarities_of
    from fredask.stats.moments import merge_moments

    groups = resampling_groups(
        features.n_rows, row_structures, MAX_SCATTER_GROUPS, settings.random_state
    )
    parts = group_test_moments(features, split, groups, method, scheduler, backend, progress)
    pairs = list(pairs)
    whole = merge_moments(parts, method, np)
    values = similarities_of(features, whole, pairs, metric, method, kept_variance)
    weights = draw_weights(sum(p is not None for p in parts), settings)
    full = np.zeros((weights.shape[0], len(parts)))
    full[:, [g for g, p in enumerate(parts) if p is not None]] = weights
    table = np.full((weights.shape[0], len(pairs)), np.nan)
    for b, moments in enumerate(resample_scatters(parts, full, method)):
        if moments is not None:
            found = similarities_of(features, moments, pairs, metric, "gram", kept_variance)
            table[b] = [found[pair].value for pair in pairs]
    bounds = {
        pair: percentile_interval(column[np.isfinite(column)], settings.confidence)
        for pair, column in zip(pairs, table.T, strict=True)
    }
    return values, bounds
