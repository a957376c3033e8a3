"""The global reconstruction engine: one pass, then small solves per pair.

:func:`fit_global` reads the data once (:func:`fredask.stats.passes.subset_statistics`),
fits the scaler of every model on the train rows, and for every requested
ordered pair (source, target) fits the 2-fold ridge and evaluates the GFRE
(and GFRD) on the test rows, all from the subsets' factors.  Pointwise errors
need the test rows themselves: :meth:`GlobalFit.pointwise` makes a second pass
over the chunks that hold test rows only, unless the pass also gathered the
test rows (``gather_test=True``, where they fit in :data:`GATHER_TEST_BYTES`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from fredask.backend import NUMPY, ArrayBackend, resolve_backend, svd, to_host
from fredask.cluster.clients import Scheduler, compute
from fredask.errors import FredaskError
from fredask.measures.caveats import UnderdeterminedFitWarning, warn
from fredask.solvers.procrustes import procrustes_difference
from fredask.solvers.ridge import RidgeFit, SubsetFactor, ridge_2fold
from fredask.solvers.settings import RidgeSettings
from fredask.stats.features import FeatureSet, Pair
from fredask.stats.moments import (
    METHODS,
    Moments,
    align_moments,
    exponents_of,
    factor_about,
    merge_moments,
    moments_to_host,
    rms_of_map,
    used_rows,
)
from fredask.stats.passes import gather_rows_graph, pointwise_norms, statistics_graph
from fredask.stats.scaler import ScalerSettings, fit_scaler
from fredask.stats.splits import FOLD1, FOLD2, TEST, Split, row_labels

#: Largest test-row block (float64 bytes) that ``gather_test=True`` keeps in memory.
GATHER_TEST_BYTES = 256 * 2**20


class SolverError(FredaskError):
    """A dense solve (eigendecomposition, SVD) of a pair's statistics failed."""


@dataclass(frozen=True)
class PairFit:
    """Source -> target results of one ordered pair.

    Attributes
    ----------
    ridge : RidgeFit
        The fitted map and the chosen alpha.
    error_map, distortion_map : numpy.ndarray
        Linear maps over the scaled, centred concatenated columns whose row
        norms are the pointwise error and distortion.
    gfre, gfrd : float
        Global reconstruction error and distortion on the test rows
        (``gfrd`` is NaN when the distortion was not requested).
    """

    ridge: RidgeFit
    error_map: np.ndarray
    distortion_map: np.ndarray | None
    gfre: float
    gfrd: float


@dataclass
class GlobalFit:
    """Everything one pass over the data determines."""

    features: FeatureSet
    split: Split
    labels: np.ndarray
    centre: np.ndarray
    scale: np.ndarray
    pairs: dict[Pair, PairFit] = field(default_factory=dict)
    method: str = "qr"
    backend: ArrayBackend = NUMPY
    test_values: dict[str, np.ndarray] | None = None
    test_moments: Moments | None = None

    def pointwise(
        self,
        kind: str = "error",
        pairs: Iterable[Pair] | None = None,
        scheduler: Scheduler = "threads",
        progress: bool = False,
    ) -> np.ndarray:
        """Per test row errors (``kind="error"``) or distortions, for each pair.

        Returns
        -------
        numpy.ndarray, shape (n_test, n_pairs)
            Rows in the order of ``split.test_idx``.
        """
        pairs = list(self.pairs if pairs is None else pairs)
        attribute = {"error": "error_map", "distortion": "distortion_map"}[kind]
        maps = [getattr(self.pairs[p], attribute) for p in pairs]
        if any(m is None for m in maps):
            raise ValueError("the distortion was not fitted; call fit_global(distortion=True)")
        if self.test_values is not None:
            return self._gathered_norms(maps)
        norms = pointwise_norms(
            self.features,
            self.labels,
            self.centre,
            self.scale,
            maps,
            scheduler,
            xp=self.backend.xp,
            progress=progress,
        )
        sorted_test = np.sort(self.split.test_idx)
        return norms[np.searchsorted(sorted_test, self.split.test_idx)]

    def _gathered_norms(self, maps) -> np.ndarray:
        """:meth:`pointwise` from the gathered test rows: each map's nonzero rows only."""
        z = np.concatenate(
            [np.asarray(self.test_values[name], dtype=np.float64) for name in self.features.names],
            axis=1,
        )
        z = (z - self.centre) / self.scale
        norms = []
        for linear_map in maps:
            used = used_rows(linear_map)
            norms.append(np.linalg.norm(z[:, used] @ linear_map[used], axis=1))
        order = np.searchsorted(np.sort(self.split.test_idx), self.split.test_idx)
        return np.stack(norms, axis=1)[order]


def _rcond(features: FeatureSet, source: str, n_train: int, ridge: RidgeSettings) -> float:
    index = features.names.index(source)
    return max(n_train, features.widths[index]) * ridge.eps(features.dtypes[index])


def _pairs_text(pairs: list[Pair]) -> str:
    first = f"{pairs[0][0]!r} -> {pairs[0][1]!r}"
    return first if len(pairs) == 1 else f"{first} and {len(pairs) - 1} other pairs"


def _solver_failed(error: Exception, method: str, pairs: list[Pair]) -> SolverError:
    what = "the eigensolver" if method == "gram" else "the SVD"
    advice = "; use method='qr', the exact path" if method == "gram" else ""
    return SolverError(
        f"method={method!r}: {what} failed on the statistics of {_pairs_text(pairs)} "
        f"({error}){advice}"
    )


def _warn_underdetermined(features: FeatureSet, pairs: list[Pair], n_train: int) -> None:
    wide = {
        source: features.widths[features.names.index(source)]
        for source, _ in pairs
        if features.widths[features.names.index(source)] > n_train
    }
    if wide:
        models = ", ".join(f"{name!r} has {width}" for name, width in wide.items())
        warn(
            f"fewer train rows ({n_train}) than source features ({models}): these fits are "
            "underdetermined (a model from itself is then not ~0); use more train rows",
            UnderdeterminedFitWarning,
        )


def subset_statistics(features, labels, method, scheduler, backend, progress, test_rows=None):
    """One pass: the subsets' moments (on the host, aligned) and, optionally, the test rows.

    Returns
    -------
    moments : list of Moments
        Fold 1, fold 2 and the test rows (:data:`~fredask.stats.splits.FOLD1`,
        ``FOLD2``, ``TEST``), with common per-column powers of two.
    gathered : dict of str to numpy.ndarray, or None
        The rows ``test_rows`` of every model, when asked for.
    """
    graphs = [statistics_graph(features, labels, method, backend.xp)]
    if test_rows is not None:
        graphs.append(gather_rows_graph(features, test_rows, backend.xp))
    results = compute(graphs, scheduler, progress)
    moments = [moments_to_host(m) for m in results[0]]
    if any(m is None for m in moments):
        raise ValueError("a fold or the test set has no rows")
    gathered = None
    if test_rows is not None:
        gathered = {name: to_host(values) for name, values in results[1].items()}
    return align_moments(moments, method, np), gathered


def _by_source(pairs: list[Pair]) -> dict[str, list[str]]:
    """The targets of every source, in the order of ``pairs``."""
    grouped: dict[str, list[str]] = {}
    for source, target in pairs:
        grouped.setdefault(source, []).append(target)
    return grouped


def _pair_fit(fit: RidgeFit, a: slice, b: slice, factors, counts, n_cols, distortion) -> PairFit:
    """The error (and distortion) maps of one fitted pair and their test RMS."""
    error_map = np.zeros((n_cols, b.stop - b.start))
    error_map[b] += np.eye(b.stop - b.start)
    error_map[a] -= fit.weights
    distortion_map, gfrd = None, float("nan")
    if distortion:
        difference = procrustes_difference(factors["train"][:, a], fit.weights)
        distortion_map = np.zeros((n_cols, difference.shape[1]))
        distortion_map[a] = difference
        gfrd = rms_of_map(factors[TEST], distortion_map, counts[TEST])
    return PairFit(
        ridge=fit,
        error_map=error_map,
        distortion_map=distortion_map,
        gfre=rms_of_map(factors[TEST], error_map, counts[TEST]),
        gfrd=gfrd,
    )


def fit_global(
    features: FeatureSet,
    split: Split,
    pairs: Iterable[Pair],
    ridge: RidgeSettings | None = None,
    scaler: ScalerSettings | None = None,
    method: str = "qr",
    distortion: bool = False,
    scheduler: Scheduler = "threads",
    progress: bool = False,
    device: str | ArrayBackend = "cpu",
    gather_test: bool = False,
) -> GlobalFit:
    """Fit every ordered pair from one pass over the data.

    Parameters
    ----------
    features : FeatureSet
        Aligned features of all models.
    split : Split
        Train and test rows; the train order defines the two folds.
    pairs : iterable of (source, target)
        Ordered model pairs to fit.
    ridge, scaler : settings, optional
        Defaults reproduce scikit-matter's reconstruction measures.
    method : {"qr", "gram"}
        Exact tall-skinny QR statistics, or the faster Gram statistics.
    distortion : bool
        Also solve the orthogonal Procrustes problem (GFRD).
    scheduler : distributed.Client or "threads" / "sync"
    progress : bool
        Show a progress bar for the pass.
    device : {"cpu", "gpu", "auto"} or ArrayBackend
        Array module of the chunk kernels (:func:`fredask.backend.resolve_backend`);
        the small solves run on the host in float64.
    gather_test : bool
        Also gather the test rows in the same pass (when they fit in
        :data:`GATHER_TEST_BYTES`), so :meth:`GlobalFit.pointwise` needs no
        second pass.

    Returns
    -------
    GlobalFit

    Raises
    ------
    SolverError
        The eigensolver (``method="gram"``) or an SVD did not converge,
        naming the pair.

    Warns
    -----
    UnderdeterminedFitWarning
        Once, when some source model has more features than there are train rows.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    ridge = ridge or RidgeSettings()
    scaler = scaler or ScalerSettings()
    pairs = list(pairs)
    for source, target in pairs:
        features.columns(source), features.columns(target)
    labels = row_labels(features.n_rows, split, ridge.random_state, ridge.shuffle)
    backend = resolve_backend(device, features.arrays, scheduler)
    test_rows = np.sort(split.test_idx)
    if not gather_test or test_rows.size * features.n_columns * 8 > GATHER_TEST_BYTES:
        test_rows = None
    moments, gathered = subset_statistics(
        features, labels, method, scheduler, backend, progress, test_rows
    )
    _warn_underdetermined(features, pairs, moments[FOLD1].count + moments[FOLD2].count)
    centre, scale, fits = fit_moments(features, moments, pairs, ridge, scaler, method, distortion)
    return GlobalFit(
        features,
        split,
        labels,
        centre,
        scale,
        pairs=fits,
        method=method,
        backend=backend,
        test_values=gathered,
        test_moments=moments[TEST],
    )


def fit_moments(
    features: FeatureSet,
    moments: list,
    pairs: list[Pair],
    ridge: RidgeSettings,
    scaler: ScalerSettings,
    method: str = "qr",
    distortion: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[Pair, PairFit]]:
    """The small solves of :func:`fit_global`, from the subsets' moments.

    Parameters
    ----------
    moments : list of Moments
        Fold 1, fold 2 and the test rows, on the host, aligned (as
        :func:`subset_statistics` returns them, or a bootstrap resample's).
    pairs, ridge, scaler, method, distortion
        As in :func:`fit_global`.

    Returns
    -------
    centre, scale : numpy.ndarray
        The scaler fitted on the train rows.
    fits : dict of (source, target) to PairFit
        In the order of ``pairs``.
    """
    train = merge_moments(moments[FOLD1 : FOLD2 + 1], method, np)
    centre, scale = fit_scaler(train, features, scaler, method)
    power = exponents_of(train)  # the moments' units: the data times 2**-power
    centre_units, scale_units = np.ldexp(centre, -power), np.ldexp(scale, -power)
    try:
        factors = {
            subset: factor_about(m, centre_units, method, np) / scale_units
            for subset, m in zip((FOLD1, FOLD2, TEST), moments, strict=True)
        }
        factors["train"] = factor_about(train, centre_units, method, np) / scale_units
    except np.linalg.LinAlgError as error:
        raise _solver_failed(error, method, pairs) from None
    counts = {FOLD1: moments[FOLD1].count, FOLD2: moments[FOLD2].count, TEST: moments[TEST].count}
    counts["train"] = train.count
    fits: dict[Pair, PairFit] = {}
    n_cols = features.n_columns
    svds = {}
    for source in dict.fromkeys(source for source, _ in pairs):
        for subset in (FOLD1, FOLD2, "train"):
            try:
                svds[(subset, source)] = svd(factors[subset][:, features.columns(source)], np)
            except np.linalg.LinAlgError as error:
                raise _solver_failed(error, method, [p for p in pairs if p[0] == source]) from None
    for source, targets in _by_source(pairs).items():
        a = features.columns(source)
        columns = [features.columns(target) for target in targets]
        sub = {
            k: SubsetFactor(
                factors[k][:, a], [factors[k][:, b] for b in columns], counts[k], svds[(k, source)]
            )
            for k in (FOLD1, FOLD2, "train")
        }
        ridge_fits = ridge_2fold(
            sub[FOLD1],
            sub[FOLD2],
            sub["train"],
            ridge,
            _rcond(features, source, train.count, ridge),
        )
        for target, b, fit in zip(targets, columns, ridge_fits, strict=True):
            fits[(source, target)] = _pair_fit(fit, a, b, factors, counts, n_cols, distortion)
    return centre, scale, {pair: fits[pair] for pair in pairs}
