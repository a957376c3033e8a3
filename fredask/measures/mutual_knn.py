"""Mutual k-nearest-neighbour agreement between models' spaces.

For each test row ``i`` and two models ``X`` and ``Y``, the share of its ``k``
nearest train rows that both spaces agree on, ``|N_k^X(i) ∩ N_k^Y(i)| / k``
(docs/method.md, section 12), with ``N_k`` found by the LFRE's streamed
search (:func:`fredask.measures.neighbours.nearest_train_rows`) in each
model's scaled space: one search per model, shared by all its pairs; the
agreement of every pair is then a set intersection per test row.  1: the two
models see the same neighbourhoods; ``k / n_train``: what unrelated spaces
give on average.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fredask.backend import ArrayBackend, resolve_backend
from fredask.cluster.clients import Scheduler
from fredask.measures.local_fit import scaled_test_rows
from fredask.measures.neighbours import nearest_train_rows
from fredask.stats.features import FeatureSet, Pair
from fredask.stats.scaler import ScalerSettings
from fredask.stats.splits import Split, row_labels


def shared_fraction(rows_x: np.ndarray, rows_y: np.ndarray) -> np.ndarray:
    """Per row, the share of the ``k`` entries of ``rows_x`` also in ``rows_y``.

    Parameters
    ----------
    rows_x, rows_y : numpy.ndarray of int, shape (n, k)
        Neighbour lists without repeats within a row.
    """
    k = rows_x.shape[1]
    # a row's two lists side by side, sorted: a shared entry appears twice in a row
    both = np.sort(np.concatenate([rows_x, rows_y], axis=1), axis=1)
    return np.count_nonzero(both[:, 1:] == both[:, :-1], axis=1) / k


def mutual_neighbours(
    features: FeatureSet,
    split: Split,
    pairs: Iterable[Pair],
    k: int,
    scaler: ScalerSettings | None = None,
    scheduler: Scheduler = "threads",
    progress: bool = False,
    device: str | ArrayBackend = "cpu",
) -> dict[Pair, np.ndarray]:
    """Each test row's mutual k-NN agreement, for every pair.

    Parameters
    ----------
    features : FeatureSet
    split : Split
        Neighbours of the test rows among the train rows.
    pairs : iterable of (source, target)
        Symmetric: ``(a, b)`` and ``(b, a)`` share one result.
    k : int
        Neighbours per row, ``1 <= k <=`` the train rows.
    scaler : ScalerSettings, optional
        Each model's space is scaled as for the LFRE (scikit-matter's
        default: centred on the train mean, one global scale per model).
    scheduler, progress, device
        As in :func:`fredask.measures.local_fit.local_errors`.

    Returns
    -------
    dict of (source, target) to numpy.ndarray, shape (n_test,)
        In the order of ``split.test_idx``.

    Raises
    ------
    ValueError
        For a ``k`` that is not a whole number in ``[1, n_train]``.
    """
    n_train = split.train_idx.size
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or not 1 <= k <= n_train:
        raise ValueError(f"k must be a whole number from 1 to the {n_train} train rows, got {k!r}")
    pairs = list(pairs)
    xp = resolve_backend(device, features.arrays, scheduler).xp
    labels = row_labels(features.n_rows, split, None, False)  # the folds do not matter
    centre, scale, test = scaled_test_rows(
        features, labels, split, scaler or ScalerSettings(), scheduler, progress, xp
    )
    rows = {}
    for name in dict.fromkeys(name for pair in pairs for name in pair):
        columns = features.columns(name)
        _, rows[name] = nearest_train_rows(
            features,
            labels,
            name,
            test[name],
            centre[columns],
            scale[columns],
            int(k),
            scheduler,
            xp=xp,
            progress=progress,
        )
    order = np.searchsorted(np.sort(split.test_idx), split.test_idx)
    out: dict[Pair, np.ndarray] = {}
    for source, target in pairs:
        if (target, source) in out:
            out[(source, target)] = out[(target, source)]
        else:
            out[(source, target)] = shared_fraction(rows[source], rows[target])[order]
    return out
