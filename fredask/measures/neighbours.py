"""Streamed k-nearest-neighbour search among train rows.

For every test row, the ``k`` train rows nearest in the scaled source space
(squared Euclidean distance computed as scikit-matter does,
``|t|^2 + |c|^2 - 2 t.c``), ordered by (distance, row index) so exact ties are
deterministic.  One pass over the chunks: per chunk one GEMM of the test rows
against the chunk's train rows (in blocks of :data:`BLOCK_ROWS` rows), the
``k`` best per test row kept, and the partial lists merged in a Dask tree.
Once a test row has ``k`` candidates, a block only contributes the entries at
or below its current ``k``-th distance (a comparison, not a partition of the
block), and lists stay unsorted until the end.  Memory is bounded by
``n_test x (k + BLOCK_ROWS)``, not by the train size.
"""

from __future__ import annotations

import dask
import numpy as np

from fredask.backend import order_by, smallest_indices, to_device, to_host
from fredask.cluster.clients import Scheduler, compute
from fredask.stats.checks import check_finite
from fredask.stats.features import FeatureSet
from fredask.stats.passes import chunk_tasks, tree_reduce
from fredask.stats.splits import FOLD1, FOLD2

#: Train rows per distance block inside a chunk.
BLOCK_ROWS = 4096


def smallest_k(distances, rows, k: int, xp, sort: bool = True):
    """The ``k`` smallest entries of each row of ``distances``, by (distance, row index).

    Parameters
    ----------
    distances : array, shape (n_test, m)
    rows : array of int, shape (n_test, m) or (m,)
        Row indices of the candidates.
    k : int
    sort : bool
        Order the result by (distance, row index); otherwise the same set in
        any order.

    Returns
    -------
    (distances, rows) each of shape (n_test, min(k, m)).
    """
    rows = xp.broadcast_to(rows, distances.shape)
    if distances.shape[1] > k:
        candidates = smallest_indices(distances, k, xp)
        picked_d = xp.take_along_axis(distances, candidates, axis=1)
        picked_r = xp.take_along_axis(rows, candidates, axis=1)
        kth = xp.max(picked_d, axis=1, keepdims=True)
        ambiguous = xp.nonzero(xp.sum(distances <= kth, axis=1) > k)[0]
        if ambiguous.shape[0]:  # ties straddle the k-th place: keep the lowest row indices
            picked_d[ambiguous], picked_r[ambiguous] = _smallest_k_with_ties(
                distances[ambiguous], rows[ambiguous], kth[ambiguous], k, xp
            )
        distances, rows = picked_d, picked_r
    if not sort:
        return distances, rows
    order = order_by(distances, rows, xp)
    return xp.take_along_axis(distances, order, axis=1), xp.take_along_axis(rows, order, axis=1)


def _smallest_k_with_ties(distances, rows, kth, k: int, xp):
    """Exactly ``k`` entries per row: all below ``kth``, then tied ones by row index."""
    below = distances < kth
    tied = distances == kth
    need = k - xp.sum(below, axis=1, keepdims=True)
    order = xp.argsort(xp.where(tied, rows, xp.iinfo(rows.dtype).max), axis=1)
    rank = xp.argsort(order, axis=1)  # each entry's place among the tied, by row index
    keep = below | (tied & (rank < need))
    n = distances.shape[0]
    return xp.reshape(distances[keep], (n, k)), xp.reshape(rows[keep], (n, k))


def merge_neighbours(parts, k: int, xp, sort: bool = True):
    """Merge partial ``(distances, rows)`` lists into the ``k`` best."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    distances = xp.concat([p[0] for p in parts], axis=1)
    rows = xp.concat([p[1] for p in parts], axis=1)
    return smallest_k(distances, rows, k, xp, sort)


def merge_below(best, distances, rows, k: int, xp):
    """Merge a full candidate block into a list that already holds ``k`` per row.

    Only entries at or below a row's current ``k``-th distance can enter its
    list (ties included, for the row-index rule); they are packed into a
    narrow block, padded with infinite distances, and merged.
    """
    best_d, best_r = best
    hits = distances <= xp.max(best_d, axis=1)[:, None]
    i, j = xp.nonzero(hits)
    if i.shape[0] == 0:
        return best
    n = distances.shape[0]
    counts = xp.sum(hits, axis=1)
    position = xp.arange(i.shape[0]) - (xp.cumulative_sum(counts) - counts)[i]
    width = int(xp.max(counts))
    new_d = xp.full((n, width), xp.inf, dtype=distances.dtype)
    new_r = xp.full((n, width), xp.iinfo(best_r.dtype).max, dtype=best_r.dtype)
    new_d[i, position] = distances[i, j]
    new_r[i, position] = rows[j]
    return merge_neighbours([best, (new_d, new_r)], k, xp, sort=False)


def neighbour_kernel(labels, block, *, name, offset, test, test_sq, centre, scale, k, xp):
    """The ``k`` nearest train rows of this chunk for every test row (unsorted).

    The chunk moves to the device once (:func:`fredask.backend.to_device`),
    with the test rows; the partial lists stay there for the merges.
    """
    labels = to_device(labels, xp)
    block = to_device(block, xp)
    test, test_sq, centre, scale = (to_device(a, xp) for a in (test, test_sq, centre, scale))
    train = (labels == FOLD1) | (labels == FOLD2)
    check_finite([block], train, [name], offset, xp)
    local = xp.nonzero(train)[0]
    best = None
    for lo in range(0, local.shape[0], BLOCK_ROWS):
        sel = local[lo : lo + BLOCK_ROWS]
        c = (xp.astype(block[sel], xp.float64) - centre) / scale
        distances = test @ c.T
        distances *= -2
        distances += xp.sum(c * c, axis=1)[None, :]
        distances += test_sq[:, None]
        rows = xp.astype(sel, xp.int64) + offset
        if best is not None and best[0].shape[1] == k:
            best = merge_below(best, distances, rows, k, xp)
        else:
            parts = [best, (distances, xp.broadcast_to(rows, distances.shape))]
            best = merge_neighbours(parts, k, xp, sort=False)
    return best


def nearest_train_rows(
    features: FeatureSet,
    labels: np.ndarray,
    source: str,
    test: np.ndarray,
    centre: np.ndarray,
    scale: np.ndarray,
    k: int,
    scheduler: Scheduler,
    xp=np,
    split_every: int | None = None,
    progress: bool = False,
):
    """The ``k`` nearest train rows of each test row, in the scaled space of ``source``.

    Parameters
    ----------
    test : array, shape (n_test, p)
        The test rows of ``source``, already centred and scaled.
    centre, scale : arrays, shape (p,)
        The train centre and scale of ``source``.

    Returns
    -------
    distances : numpy.ndarray, shape (n_test, k)
    rows : numpy.ndarray of int64, shape (n_test, k)
        Sorted by (distance, row index).
    """
    model = features.names.index(source)
    test_sq = (test**2).sum(axis=1)
    kernel = dask.delayed(neighbour_kernel, pure=True)
    is_train = lambda lab: bool(((lab == FOLD1) | (lab == FOLD2)).any())  # noqa: E731
    parts = [
        kernel(
            lab,
            blocks[model],
            name=source,
            offset=start,
            test=test,
            test_sq=test_sq,
            centre=centre,
            scale=scale,
            k=k,
            xp=xp,
        )
        for lab, blocks, start in chunk_tasks(features, labels, is_train)
    ]
    merged = tree_reduce(parts, merge_neighbours, k, xp, False, split_every=split_every)
    distances, rows = compute(merged, scheduler, progress)
    return smallest_k(to_host(distances), to_host(rows), k, np)
