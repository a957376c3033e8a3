"""All-pairs comparisons: every ordered model pair from one pass over the data.

:func:`check_comparison` validates a whole request (metrics, split, neighbour
counts) before anything is read, so a caller computing several metrics can
refuse the request before writing the first; :func:`reconstruction_matrix`
calls it first and then computes one metric's matrix (a
:class:`~fredask.compare.result.ReconstructionMatrix`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd

from fredask.backend import ArrayBackend, resolve_backend
from fredask.cluster.clients import resolve_client
from fredask.compare.baseline import baseline_pairs, check_baseline, with_random_sources
from fredask.compare.distribution import summary_frame
from fredask.compare.result import LEVELS, Intervals, ReconstructionMatrix
from fredask.errors import FredaskError
from fredask.measures.bootstrap import (
    MIN_UNITS,
    Bootstrap,
    bootstrap_intervals,
    similarity_bootstrap,
)
from fredask.measures.global_fit import fit_global
from fredask.measures.local_fit import (
    NeighbourCount,
    check_local_points,
    local_errors,
    neighbour_counts,
)
from fredask.measures.mutual_knn import mutual_neighbours
from fredask.measures.similarity import (
    SIMILARITY_METRICS,
    SYMMETRIC_METRICS,
    cka_norm_products,
    similarities,
    similarities_of,
)
from fredask.solvers.settings import RidgeSettings
from fredask.stats.features import FeatureSet, Pair, as_feature_set
from fredask.stats.moments import METHODS
from fredask.stats.scaler import ScalerSettings
from fredask.stats.splits import Split, check_split, resolve_split

GLOBAL_METRICS = ("gfre", "gfrd")
#: Symmetric similarity measures of the test rows (no fit, no pointwise errors).
SIMILARITY = SYMMETRIC_METRICS
METRICS = (*GLOBAL_METRICS, "lfre", *SIMILARITY)
#: Neighbours of ``"mutual_knn"`` when ``n_local_points`` is not given.
DEFAULT_MUTUAL_K = 10

__all__ = [
    "GLOBAL_METRICS",
    "METRICS",
    "SIMILARITY",
    "ComparisonError",
    "ComparisonRequest",
    "ReconstructionMatrix",
    "check_comparison",
    "global_matrices",
    "reconstruction_matrix",
]


class ComparisonError(FredaskError, ValueError):
    """A comparison request that cannot be computed (metric, method, split, level...)."""


@dataclass(frozen=True)
class ComparisonRequest:
    """A validated comparison: what :func:`check_comparison` resolved.

    Attributes
    ----------
    features : FeatureSet
    metrics : tuple of str
    split : Split
    n_local_points : dict of (source, target) to int, or None
        The LFRE's ``k`` per pair (``None`` without ``"lfre"``).
    capped : dict of (source, target) to int
        Pairs whose default ``k = min(p, q)`` (the value) is capped at the train rows.
    pairs : list of (source, target)
        The ordered pairs to compute: all of them, or those with the reference.
    row_structures : numpy.ndarray or None
        The structure of every row (names the worst rows' structures; the
        bootstrap's resampling unit).
    bootstrap : Bootstrap or None
        The resampling of the intervals, if asked for.
    """

    features: FeatureSet
    metrics: tuple[str, ...]
    split: Split
    n_local_points: dict[Pair, int] | None
    capped: dict[Pair, int]
    pairs: list[Pair]
    row_structures: np.ndarray | None = None
    bootstrap: Bootstrap | None = None


@dataclass(frozen=True)
class PairErrors:
    """One metric for some ordered pairs (what :func:`pair_errors` returns).

    Attributes
    ----------
    values : dict of (source, target) to float
    chosen : dict of (source, target) to float
        The chosen unscaled alpha (NaN for the LFRE, one per test row, and the
        similarities, which fit nothing).
    pointwise : dict of (source, target) to numpy.ndarray, or None
        The per-test-row errors (distortions for the GFRD); None for the
        similarity measures, which have none.
    precision : str
        The fits' truncation precision.
    intervals : dict of (source, target) to (low, high), or None
        The bootstrap's percentile intervals, when one was asked for.
    """

    values: dict[Pair, float]
    chosen: dict[Pair, float]
    pointwise: dict[Pair, np.ndarray] | None
    precision: str
    intervals: dict[Pair, tuple[float, float]] | None = None


def comparison_pairs(names: Sequence[str], reference: str | None = None) -> list[Pair]:
    """The ordered pairs a comparison computes.

    Parameters
    ----------
    names : sequence of str
        The models, in order.
    reference : str, optional
        None: every ordered pair, diagonal included (the all-pairs matrix);
        a model name: for every other model ``m``, ``(reference, m)`` and
        ``(m, reference)`` (the model-vs-reference curve), ``2 (n - 1)``
        pairs instead of ``n^2``.

    Raises
    ------
    ComparisonError
        For a reference that is not one of the models, or without another model.
    """
    names = list(names)
    if reference is None:
        return list(product(names, names))
    if reference not in names:
        raise ComparisonError(
            f"reference {reference!r} is not one of the models: {', '.join(names)}"
        )
    others = [name for name in names if name != reference]
    if not others:
        raise ComparisonError(f"reference {reference!r}: no other model to compare with")
    return [pair for m in others for pair in ((reference, m), (m, reference))]


def check_comparison(
    features,
    metrics: str | Sequence[str],
    split: Split | None = None,
    n_local_points: NeighbourCount = None,
    *,
    train_idx=None,
    test_idx=None,
    method: str = "qr",
    level: str = "atom",
    row_structures=None,
    reference: str | None = None,
    bootstrap: Bootstrap | int | None = None,
) -> ComparisonRequest:
    """Validate a comparison request before any data is read.

    Parameters
    ----------
    features : mapping of str to array-like, or FeatureSet
        Per-model ``(n_rows, n_features)`` arrays (anything
        :func:`fredask.stats.features.as_feature_set` takes).
    metrics : str or sequence of {"gfre", "gfrd", "lfre", "cka", "cca", "procrustes", \
"mutual_knn"}
        Every metric the caller will compute with these features and split.
    split : Split, optional
        Default: ``train_idx`` / ``test_idx``, else scikit-matter's 50/50 split.
    n_local_points : int, callable (p, q) -> int, or None
        The LFRE's neighbours (see :func:`reconstruction_matrix`).
    train_idx, test_idx : array-like of int, optional, keyword-only
        Instead of ``split``.
    method : {"qr", "gram"}, keyword-only
    level : {"atom", "structure", "order"}, keyword-only
    row_structures : array-like of int, shape (n_rows,), optional, keyword-only
    reference : str, optional, keyword-only
        Compute only the pairs with this model (:func:`comparison_pairs`).
    bootstrap : Bootstrap or int, optional, keyword-only
        Percentile intervals over test structures (an int: that many
        resamples at the default confidence); see
        :mod:`fredask.measures.bootstrap`.

    Returns
    -------
    ComparisonRequest

    Raises
    ------
    FredaskError
        One line naming the metric, argument, row or pair: an unknown metric,
        method or level; ``split`` together with ``train_idx``/``test_idx``;
        split rows outside the data, repeated or (for a global metric)
        overlapping; an ``n_local_points`` that is not a whole number >= 2 or
        (given explicitly) exceeds the train rows; a ``row_structures`` of the
        wrong shape; a reference that is not one of the models; a
        bootstrap of fewer than 1 resample, or over fewer than two test
        structures.
    """
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    if not metrics:
        raise ComparisonError(f"no metric given; use some of {', '.join(METRICS)}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ComparisonError(f"unknown metric {unknown[0]!r}; use one of {', '.join(METRICS)}")
    if method not in METHODS:
        raise ComparisonError(f"method must be one of {METHODS}, got {method!r}")
    if level not in LEVELS:
        raise ComparisonError(f"level must be one of {LEVELS}, got {level!r}")
    feature_set = features if isinstance(features, FeatureSet) else as_feature_set(features)
    n_rows = feature_set.n_rows
    if split is None:
        split = resolve_split(n_rows, train_idx=train_idx, test_idx=test_idx)
    elif train_idx is not None or test_idx is not None:
        raise ComparisonError("give either split or train_idx/test_idx, not both")
    else:
        check_split(split, n_rows, allow_overlap=set(metrics) <= {"lfre", *SIMILARITY})
    _check_row_structures(row_structures, n_rows)
    structures = None if row_structures is None else np.asarray(row_structures)
    bootstrap = _check_bootstrap(bootstrap, metrics, split, structures)
    pairs = comparison_pairs(feature_set.names, reference)
    ks, capped = None, {}
    if "lfre" in metrics:
        ks, capped = neighbour_counts(feature_set, pairs, n_local_points, split.train_idx.size)
    else:
        check_local_points(n_local_points)
    return ComparisonRequest(feature_set, metrics, split, ks, capped, pairs, structures, bootstrap)


def _check_bootstrap(bootstrap, metrics, split: Split, structures) -> Bootstrap | None:
    """The bootstrap's settings, refused for metrics without per-row values or too few units."""
    if bootstrap is None:
        return None
    if not isinstance(bootstrap, Bootstrap):
        bootstrap = Bootstrap(bootstrap)
    test = split.test_idx
    n_units = test.size if structures is None else np.unique(structures[test]).size
    if n_units < MIN_UNITS:
        raise ComparisonError(
            f"bootstrap: the test rows come from {n_units} structure(s); resampling needs "
            f"at least {MIN_UNITS}"
        )
    return bootstrap


def _check_row_structures(row_structures, n_rows: int) -> None:
    if row_structures is None:
        return
    values = np.asarray(row_structures)
    if values.shape != (n_rows,) or not np.issubdtype(values.dtype, np.integer):
        raise ComparisonError(
            f"row_structures must be an integer array of shape ({n_rows},) (one structure "
            f"per row), got {values.dtype} of shape {values.shape}"
        )


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
    level: str = "atom",
    row_structures=None,
    kept_variance: float | None = None,
    bootstrap: Bootstrap | int | None = None,
    baseline: str | None = None,
    debiased: bool = False,
) -> ReconstructionMatrix:
    """Reconstruction errors between all ordered pairs of models, in one pass.

    Parameters
    ----------
    features : mapping of str to array-like
        Per-model ``(n_rows, n_features)`` arrays (numpy, Dask, Zarr), rows
        aligned across models.
    metric : {"gfre", "gfrd", "lfre", "cka", "cca", "procrustes", "mutual_knn"}
        Global reconstruction error or distortion, local reconstruction
        error, or a symmetric similarity of the test rows
        (:mod:`fredask.measures.similarity`: linear CKA, mean squared
        canonical correlation, orthogonal Procrustes distance;
        :mod:`fredask.measures.mutual_knn`: the mean share of each test row's
        ``n_local_points`` (default 10) nearest train rows that two models'
        spaces agree on).
    split : Split, optional
        Train/test rows (e.g. from :func:`fredask.stratified_split`); else
        ``train_idx``/``test_idx`` or scikit-matter's default split.
    scaler : optional
        As in :mod:`fredask.metrics`.
    estimator : Ridge2FoldCV or RidgeSettings, optional
        Default ``RidgeSettings(precision="float64")``: float32 features are
        fitted as the exact numbers they are (the :mod:`fredask.metrics`
        drop-ins keep scikit-matter's float32 rule, ``precision="input"``).
    method : {"qr", "gram"}
        Exact or fast statistics (global metrics).
    n_local_points : int, callable (p, q) -> int, or None
        Neighbours of the LFRE; ``None``: ``min(p, q)`` per pair, as in the
        paper, capped at the number of train rows (one warning names the
        capped pairs).  A given count above the train rows is refused before
        any work.  The neighbour search is shared by all pairs with one source.
    client : distributed.Client, "threads" or "sync", optional
        Default: the active client, else the embedded LocalCluster.
    progress : bool
        Show a progress bar for the pass.
    device : {"cpu", "gpu", "auto"} or ArrayBackend
        Array module of the chunk kernels (:func:`fredask.backend.resolve_backend`).
    level : {"atom", "structure", "order"}
        What the rows are (for the titles and the saved JSON).
    row_structures : array-like of int, shape (n_rows,), optional
        The structure of every row, to name the worst rows' structures.
    kept_variance : float in (0, 1], optional
        ``metric="cca"``: SVCCA, keeping each model's leading directions that
        explain this share of its variance.
    bootstrap : Bootstrap or int, optional
        Percentile intervals (``ReconstructionMatrix.intervals``) from
        resampling the test rows' structures (``row_structures``; without
        it, every row is its own unit); an int is the number of resamples
        at 90% confidence (:mod:`fredask.measures.bootstrap`): gfre, gfrd,
        lfre and mutual_knn resample per-row values (the fits held fixed);
        cka, cca and procrustes merge per-group test scatters (at most 64
        groups of whole structures).
    baseline : {"random"}, optional
        Also compute every pair's chance level (``ReconstructionMatrix.baseline``):
        the same measure from standard-normal features of the source's width
        to the target, on the same rows (:mod:`fredask.compare.baseline`);
        one more pass.
    debiased : bool
        ``metric="cka"``: the debiased CKA (Song et al.'s unbiased HSIC; one
        more read of the test rows).

    Returns
    -------
    ReconstructionMatrix
        With the distribution of every pair's pointwise errors (``errors``):
        the LFRE's per-test-row errors; the GFRE's test-row errors, from the
        test rows gathered in the same pass (or one more pass over the chunks
        holding them when they exceed 256 MiB); for the GFRD, the test-row
        distortions (the numbers the GFRD is the root mean square of).

    Raises
    ------
    FredaskError
        See :func:`check_comparison`, called first.
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
        bootstrap=bootstrap,
    )
    check_baseline(baseline)
    feature_set, split = request.features, request.split
    pairs = request.pairs
    settings = {
        "scaler": scaler,
        "estimator": estimator,
        "method": method,
        "n_local_points": n_local_points,
        "client": client,
        "progress": progress,
        "device": device,
        "kept_variance": kept_variance,
        "debiased": debiased,
    }
    found = pair_errors(request, metric, pairs, **settings)
    chance = None
    if baseline is not None:
        augmented = with_random_sources(feature_set)
        random_request = check_comparison(
            augmented, [metric], split, n_local_points, method=method, level=level
        )
        random_pairs = baseline_pairs(pairs)
        values = pair_errors(random_request, metric, random_pairs, **settings).values
        chance = {pair: values[r] for pair, r in zip(pairs, random_pairs, strict=True)}
    return as_matrix(request, metric, found, method, level, chance)


def as_matrix(
    request: ComparisonRequest,
    metric: str,
    found: PairErrors,
    method: str,
    level: str,
    chance: dict[Pair, float] | None = None,
) -> ReconstructionMatrix:
    """The :class:`ReconstructionMatrix` of one metric's :class:`PairErrors` (all pairs)."""
    names = request.features.names
    index = pd.Index(names, name="source")
    columns = pd.Index(names, name="target")

    def square(table: dict) -> pd.DataFrame:
        return pd.DataFrame([[table[(s, t)] for t in names] for s in names], index, columns)

    bounds = None
    if found.intervals is not None:
        bounds = Intervals(
            square({p: lo for p, (lo, _) in found.intervals.items()}),
            square({p: hi for p, (_, hi) in found.intervals.items()}),
            request.bootstrap,
        )
    split = request.split
    return ReconstructionMatrix(
        metric,
        square(found.values),
        square(found.chosen),
        split,
        method,
        level=level,
        precision=found.precision,
        errors=None
        if found.pointwise is None
        else summary_frame(found.pointwise, found.values, split.test_idx, request.row_structures),
        intervals=bounds,
        baseline=None if chance is None else square(chance),
    )


def ridge_settings(estimator) -> RidgeSettings:
    """The fits' settings: ``estimator``'s, else the float64-exact default."""
    if estimator is None:
        return RidgeSettings(precision="float64")
    return RidgeSettings.from_estimator(estimator)


def global_matrices(
    features: Mapping[str, object],
    metrics: Sequence[str] = ("gfre", "gfrd", "cka", "cca", "procrustes"),
    *,
    split: Split | None = None,
    train_idx=None,
    test_idx=None,
    scaler=None,
    estimator=None,
    method: str = "qr",
    client=None,
    progress: bool = True,
    device: str | ArrayBackend = "cpu",
    level: str = "atom",
    row_structures=None,
    kept_variance: float | None = None,
    bootstrap: Bootstrap | int | None = None,
    debiased: bool = False,
) -> dict[str, ReconstructionMatrix]:
    """Several global matrices from one pass: GFRE, GFRD and the similarities.

    The fit's pass keeps the test rows' moments, which are all the CKA, CCA
    and Procrustes distance need (:func:`fredask.measures.similarity.similarities_of`),
    so the similarities add small solves only.  The arguments are those of
    :func:`reconstruction_matrix`; ``bootstrap`` applies to gfre and gfrd,
    ``debiased`` to cka (one more read of the test rows).

    Returns
    -------
    dict of str to ReconstructionMatrix
        By metric, in the order of ``metrics``.
    """
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    allowed = (*GLOBAL_METRICS, *SIMILARITY_METRICS)
    unknown = [m for m in metrics if m not in allowed]
    if unknown:
        raise ComparisonError(
            f"global_matrices computes {', '.join(allowed)}; not {unknown[0]!r} (use "
            "reconstruction_matrix)"
        )
    if debiased and "cka" not in metrics:
        raise ComparisonError("debiased is an option of metric='cka' only; cka is not asked for")
    if scaler is not None and any(m in SIMILARITY_METRICS for m in metrics):
        raise ComparisonError("the similarities apply no scaler; compute them without one")
    request = check_comparison(
        features,
        metrics,
        split,
        train_idx=train_idx,
        test_idx=test_idx,
        method=method,
        level=level,
        row_structures=row_structures,
        bootstrap=bootstrap,
    )
    ridge = ridge_settings(estimator)
    scheduler = resolve_client(client)
    fit = fit_global(
        request.features,
        request.split,
        request.pairs,
        ridge=ridge,
        scaler=ScalerSettings.from_scaler(scaler),
        method=method,
        distortion="gfrd" in metrics,
        scheduler=scheduler,
        progress=progress,
        device=device,
        gather_test=True,
    )
    out = {}
    nan = float("nan")
    products = None
    if debiased:
        products = cka_norm_products(
            request.features, fit.labels, fit.test_moments, scheduler, fit.backend, progress
        )
    for metric in metrics:
        if metric in SIMILARITY_METRICS:
            found = similarities_of(
                request.features,
                fit.test_moments,
                request.pairs,
                metric,
                method,
                kept_variance if metric == "cca" else None,
                products if metric == "cka" else None,
            )
            values = {pair: r.value for pair, r in found.items()}
            errors = PairErrors(values, dict.fromkeys(values, nan), None, "none")
        else:
            kind = "distortion" if metric == "gfrd" else "error"
            table = fit.pointwise(kind, request.pairs, scheduler=scheduler, progress=progress)
            pointwise = {pair: table[:, i] for i, pair in enumerate(request.pairs)}
            bounds = None
            if request.bootstrap is not None:
                bounds = bootstrap_intervals(
                    pointwise,
                    request.features,
                    request.split,
                    request.row_structures,
                    request.bootstrap,
                    scaler=ScalerSettings.from_scaler(scaler),
                    scheduler=scheduler,
                    backend=fit.backend,
                    progress=progress,
                )
            errors = PairErrors(
                {pair: getattr(r, metric) for pair, r in fit.pairs.items()},
                {pair: r.ridge.alpha for pair, r in fit.pairs.items()},
                pointwise,
                ridge.precision,
                bounds,
            )
        out[metric] = as_matrix(request, metric, errors, method, level)
    return out


def pair_errors(
    request: ComparisonRequest,
    metric: str,
    pairs: Sequence[Pair],
    *,
    scaler=None,
    estimator=None,
    method: str = "qr",
    n_local_points: NeighbourCount = None,
    client=None,
    progress: bool = True,
    device: str | ArrayBackend = "cpu",
    kept_variance: float | None = None,
    debiased: bool = False,
) -> PairErrors:
    """One metric for the given ordered pairs of a checked request, in one pass.

    The engine behind :func:`reconstruction_matrix` (all pairs) and
    :func:`fredask.compare.reference.reference_curve` (the pairs with one
    reference model); the arguments are theirs.  With ``request.bootstrap``,
    the intervals come from the same per-row values and, for the RMS
    measures, one more pass over the train rows' groups.
    """
    settings = ScalerSettings.from_scaler(scaler)
    if request.bootstrap is not None and metric in SIMILARITY_METRICS:
        return _similarity_bootstrap(
            request,
            metric,
            pairs,
            scaler,
            method,
            client,
            progress,
            device,
            kept_variance,
            debiased,
        )
    if request.bootstrap is not None and settings.column_wise and metric != "mutual_knn":
        raise ComparisonError(
            "bootstrap: a column-wise scaler's scales are not resampled; use the default "
            "model-wise scaler"
        )
    found = _pair_values(
        request,
        metric,
        pairs,
        scaler=scaler,
        estimator=estimator,
        method=method,
        n_local_points=n_local_points,
        client=client,
        progress=progress,
        device=device,
        kept_variance=kept_variance,
        debiased=debiased,
    )
    values, chosen, per_row, precision = found
    bounds = None
    if request.bootstrap is not None:
        rms = metric != "mutual_knn"
        scheduler = resolve_client(client)
        bounds = bootstrap_intervals(
            per_row,
            request.features,
            request.split,
            request.row_structures,
            request.bootstrap,
            rms=rms,
            scaler=settings if rms else None,
            scheduler=scheduler,
            backend=resolve_backend(device, request.features.arrays, scheduler),
            progress=progress,
        )
    pointwise = None if metric in SIMILARITY else per_row
    return PairErrors(values, chosen, pointwise, precision, bounds)


def _similarity_bootstrap(
    request, metric, pairs, scaler, method, client, progress, device, kept_variance, debiased
) -> PairErrors:
    """:func:`pair_errors` of a similarity with intervals: one pass of per-group scatters."""
    if scaler is not None:
        raise ComparisonError(
            f"{metric}: no scaler is applied (the measure is invariant to a model's scale)"
        )
    if debiased:
        raise ComparisonError("bootstrap: the debiased CKA is not resampled; drop one of them")
    scheduler = resolve_client(client)
    found, bounds = similarity_bootstrap(
        request.features,
        request.split,
        request.row_structures,
        request.bootstrap,
        pairs,
        metric,
        method=method,
        kept_variance=kept_variance,
        scheduler=scheduler,
        backend=resolve_backend(device, request.features.arrays, scheduler),
        progress=progress,
    )
    values = {pair: r.value for pair, r in found.items()}
    return PairErrors(values, dict.fromkeys(values, float("nan")), None, "none", bounds)


def _pair_values(
    request: ComparisonRequest,
    metric: str,
    pairs: Sequence[Pair],
    *,
    scaler,
    estimator,
    method: str,
    n_local_points: NeighbourCount,
    client,
    progress: bool,
    device: str | ArrayBackend,
    kept_variance: float | None,
    debiased: bool = False,
):
    """:func:`pair_errors`' values, alphas, per-row values (mutual_knn: shares) and precision."""
    if debiased and metric != "cka":
        raise ComparisonError(f"debiased is an option of metric='cka' only, not {metric!r}")
    feature_set, split = request.features, request.split
    ridge = ridge_settings(estimator)
    scheduler = resolve_client(client)
    settings = {
        "ridge": ridge,
        "scaler": ScalerSettings.from_scaler(scaler),
        "scheduler": scheduler,
        "progress": progress,
        "device": device,
    }
    pairs = list(pairs)
    if metric == "mutual_knn":
        k = DEFAULT_MUTUAL_K if n_local_points is None else n_local_points
        if callable(k):
            raise ComparisonError("mutual_knn takes one whole n_local_points for all pairs")
        k = min(k, split.train_idx.size) if n_local_points is None else k
        found = mutual_neighbours(
            feature_set,
            split,
            pairs,
            k,
            ScalerSettings.from_scaler(scaler),
            scheduler=scheduler,
            progress=progress,
            device=device,
        )
        nan = float("nan")
        values = {pair: float(np.mean(shares)) for pair, shares in found.items()}
        return values, dict.fromkeys(pairs, nan), found, "none"
    if metric in SIMILARITY:
        if scaler is not None:
            raise ComparisonError(
                f"{metric}: no scaler is applied (the measure is invariant to a model's scale)"
            )
        found = similarities(
            feature_set,
            split,
            pairs,
            metric,
            method=method,
            kept_variance=kept_variance,
            scheduler=scheduler,
            progress=progress,
            device=device,
            debiased=debiased,
        )
        nan = float("nan")
        return {p: r.value for p, r in found.items()}, dict.fromkeys(pairs, nan), None, "none"
    if kept_variance is not None:
        raise ComparisonError("kept_variance is an option of metric='cca' only")
    if metric == "lfre":
        pointwise = local_errors(feature_set, split, pairs, n_local_points, **settings)
        values = {pair: float(np.sqrt(np.mean(e**2))) for pair, e in pointwise.items()}
        chosen = dict.fromkeys(pairs, float("nan"))
    else:
        fit = fit_global(
            feature_set,
            split,
            pairs,
            method=method,
            distortion=metric == "gfrd",
            gather_test=True,
            **settings,
        )
        values = {pair: getattr(result, metric) for pair, result in fit.pairs.items()}
        chosen = {pair: result.ridge.alpha for pair, result in fit.pairs.items()}
        kind = "distortion" if metric == "gfrd" else "error"
        table = fit.pointwise(kind, pairs, scheduler=scheduler, progress=progress)
        pointwise = {pair: table[:, i] for i, pair in enumerate(pairs)}
    return values, chosen, pointwise, ridge.precision
