"""The passes over the data: chunk kernels and their Dask graphs.

A pass maps a kernel over aligned row chunks of all models (plus the row
labels) and either tree-reduces the results (:func:`statistics_graph`) or
concatenates them (:func:`pointwise_norms`).  Kernels receive the array module
``xp`` of :mod:`fredask.backend` and move each block to it once, so the same
code runs on numpy, CuPy and torch chunks; what they return to the client is
small (moments, per-row norms), never a chunk.
"""

from __future__ import annotations

import dask
import numpy as np
from toolz import partition_all

from fredask.backend import empty_columns, to_device, to_host
from fredask.cluster.clients import Scheduler, compute
from fredask.stats.checks import check_finite
from fredask.stats.features import FeatureSet
from fredask.stats.moments import merge_subsets, subset_moments
from fredask.stats.splits import N_SUBSETS, TEST, UNUSED


def gather_rows(blocks, rows, xp):
    """``[X_1 | ... | X_M][rows]`` as a new float64 array (column-major on numpy)."""
    n_cols = sum(b.shape[1] for b in blocks)
    out = empty_columns((rows.shape[0], n_cols), xp)
    every_row = rows.shape[0] == blocks[0].shape[0]
    start = 0
    for block in blocks:
        block = to_device(block, xp)
        out[:, start : start + block.shape[1]] = block if every_row else block[rows]
        start += block.shape[1]
    return out


def statistics_kernel(labels, *blocks, names, offset, method, xp, groups=None, n_groups=1):
    """Moments of fold 1, fold 2 and test rows of one chunk.

    With ``groups`` (the chunk's group of every row, in ``[0, n_groups)``),
    one moments object per group and subset, in the order
    ``group * N_SUBSETS + subset`` (the bootstrap's resampling units,
    :mod:`fredask.measures.bootstrap`); rows are visited group by group
    through one stable sort, so the work is that of the ungrouped kernel.
    """
    labels = to_device(labels, xp)
    blocks = [to_device(block, xp) for block in blocks]
    check_finite(blocks, labels != UNUSED, names, offset, xp)
    n_codes = N_SUBSETS * n_groups
    if groups is None:
        codes = xp.astype(labels, xp.int64)
    else:
        codes = xp.astype(labels, xp.int64) + N_SUBSETS * xp.astype(to_device(groups, xp), xp.int64)
        codes = xp.where(labels == UNUSED, n_codes, codes)
    order = xp.argsort(codes, stable=True)
    bounds = to_host(xp.searchsorted(codes[order], xp.arange(n_codes + 1, dtype=xp.int64)))
    out = []
    for code in range(n_codes):
        lo, hi = int(bounds[code]), int(bounds[code + 1])
        z = gather_rows(blocks, order[lo:hi], xp) if hi > lo else None
        out.append(None if z is None else subset_moments(z, method, xp))
    return tuple(out)


def pointwise_kernel(labels, *blocks, names, offset, centre, scale, maps, xp):
    """``||(z_i - centre) / scale @ M||`` of each test row, for every map M."""
    test = to_device(labels, xp) == TEST
    blocks = [to_device(block, xp) for block in blocks]
    check_finite(blocks, test, names, offset, xp)
    z = gather_rows(blocks, xp.nonzero(test)[0], xp)
    z = (z - to_device(centre, xp)) / to_device(scale, xp)
    norms = [xp.linalg.vector_norm(z @ to_device(m, xp), axis=1) for m in maps]
    return to_host(xp.stack(norms, axis=1))


def tree_reduce(parts: list, combine, *args, split_every: int | None = None):
    """Combine delayed partial results in a tree of fan-in ``split_every``.

    ``combine(list_of_parts, *args)`` merges a group of parts into one.
    ``split_every`` defaults to Dask's own ``split_every`` setting, else 8.

    Not ``dask.array.reduction``: that reduces one array whose chunk results
    are arrays along a reduced axis, while a pass here reads several arrays
    plus the row labels and its chunk results are tuples of moment objects
    (R factors of varying height, ``None`` for an empty subset) or neighbour
    lists.  Wrapping them as a ``dask.bag`` would add a partition layer for
    the same tree.
    """
    split_every = split_every or dask.config.get("split_every", None) or 8
    merge = dask.delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [merge(list(group), *args) for group in partition_all(split_every, parts)]
    return parts[0]


def chunk_tasks(features: FeatureSet, labels: np.ndarray, keep):
    """Per row chunk: (label block, feature blocks, offset), for chunks ``keep`` accepts."""
    blocks = [a.to_delayed()[:, 0] for a in features.arrays]
    start = 0
    for i, size in enumerate(features.row_chunks):
        chunk_labels = labels[start : start + size]
        if keep(chunk_labels):
            yield chunk_labels, [b[i] for b in blocks], start
        start += size


def over_test_chunks(kernel, features: FeatureSet, labels: np.ndarray, **options) -> list:
    """``kernel(labels, *blocks, names=, offset=, **options)``, delayed, per test-row chunk."""
    delayed = dask.delayed(kernel, pure=True)
    return [
        delayed(lab, *blocks, names=features.names, offset=start, **options)
        for lab, blocks, start in chunk_tasks(
            features, labels, lambda lab: bool((lab == TEST).any())
        )
    ]


def statistics_graph(
    features: FeatureSet,
    labels: np.ndarray,
    method: str,
    xp=np,
    split_every: int | None = None,
    groups: np.ndarray | None = None,
):
    """The delayed moments of fold 1, fold 2 and test rows of all models.

    Chunks whose rows are all unused are not read.  Partial moments merge in a
    tree of fan-in ``split_every``.  Computing this together with other graphs
    over the same chunks (one ``compute`` call) reads each chunk once.
    With ``groups`` (one non-negative group per row), the moments of every
    group and subset (:func:`statistics_kernel`).
    """
    kernel = dask.delayed(statistics_kernel, pure=True)
    n_groups = 1 if groups is None else int(groups.max()) + 1
    parts = [
        kernel(
            lab,
            *blocks,
            names=features.names,
            offset=start,
            method=method,
            xp=xp,
            groups=None if groups is None else groups[start : start + lab.shape[0]],
            n_groups=n_groups,
        )
        for lab, blocks, start in chunk_tasks(
            features, labels, lambda lab: bool((lab != UNUSED).any())
        )
    ]
    return tree_reduce(parts, merge_subsets, method, xp, split_every=split_every)


def subset_statistics(
    features: FeatureSet,
    labels: np.ndarray,
    method: str,
    scheduler: Scheduler,
    xp=np,
    split_every: int | None = None,
    progress: bool = False,
):
    """One pass: the moments of fold 1, fold 2 and test rows of all models.

    Returns
    -------
    tuple of three :class:`~fredask.stats.moments.Moments` (or None if empty)
        See :func:`statistics_graph`.
    """
    return compute(statistics_graph(features, labels, method, xp, split_every), scheduler, progress)


def pointwise_norms(
    features: FeatureSet,
    labels: np.ndarray,
    centre,
    scale,
    maps,
    scheduler: Scheduler,
    xp=np,
    progress: bool = False,
) -> np.ndarray:
    """One pass over the chunks holding test rows: per-row norms of each map.

    Returns
    -------
    numpy.ndarray, shape (n_test, len(maps))
        Rows in increasing row order.
    """
    parts = over_test_chunks(
        pointwise_kernel, features, labels, centre=centre, scale=scale, maps=maps, xp=xp
    )
    return np.concatenate(compute(parts, scheduler, progress), axis=0)


def gather_kernel(block_list, rows, xp):
    """Rows ``rows`` (chunk-local) of each block, in the block's dtype."""
    return [to_device(b, xp)[to_device(rows, xp)] for b in block_list]


def gather_rows_graph(features: FeatureSet, rows: np.ndarray, xp=np):
    """Delayed ``{model: rows}`` (input dtype) of the given sorted, unique rows.

    Only chunks that hold some of the rows are read; computing this together
    with other graphs over the same chunks (one ``compute`` call) reads each
    chunk once.
    """
    blocks = [a.to_delayed()[:, 0] for a in features.arrays]
    bounds = np.concatenate([[0], np.cumsum(features.row_chunks)])
    kernel = dask.delayed(gather_kernel, pure=True)
    parts = []
    for i in range(len(features.row_chunks)):
        lo, hi = np.searchsorted(rows, bounds[i : i + 2])
        if hi > lo:
            parts.append(kernel([b[i] for b in blocks], rows[lo:hi] - bounds[i], xp))
    return dask.delayed(_by_model, pure=True)(parts, features.names, xp)


def _by_model(parts, names, xp) -> dict:
    return {name: xp.concat([part[m] for part in parts]) for m, name in enumerate(names)}


def norm_products_kernel(labels, *blocks, names, offset, centre, factor, columns, xp):
    """``sum_i u_i u_i^T`` over the chunk's test rows, ``u_i`` every model's ``|z_i - centre|^2``.

    ``factor`` multiplies the columns before the centre is subtracted (the
    moments' powers of two, brought to one power per model), ``columns`` are
    the models' slices of the concatenation.
    """
    test = to_device(labels, xp) == TEST
    blocks = [to_device(block, xp) for block in blocks]
    check_finite(blocks, test, names, offset, xp)
    z = gather_rows(blocks, xp.nonzero(test)[0], xp)
    z = z * to_device(factor, xp) - to_device(centre, xp)
    u = xp.stack([xp.sum(z[:, c] ** 2, axis=1) for c in columns], axis=1)
    return to_host(u.T @ u)


def norm_products(
    features: FeatureSet, labels, centre, factor, scheduler: Scheduler, xp=np, progress=False
) -> np.ndarray:
    """One pass over the chunks holding test rows: :func:`norm_products_kernel` summed.

    The fourth-order statistic of the debiased CKA
    (:func:`fredask.measures.similarity.debiased_cka`), an ``(M, M)`` matrix
    for ``M`` models.
    """
    columns = [features.columns(name) for name in features.names]
    parts = over_test_chunks(
        norm_products_kernel,
        features,
        labels,
        centre=centre,
        factor=factor,
        columns=columns,
        xp=xp,
    )
    return np.sum(compute(parts, scheduler, progress), axis=0)
