"""Compiled CPU kernels: structure power sums and cumulants in one read of a block.

Each segment (a structure's atoms, 8 to 64 rows in practice, a few tens of
KiB) is summed for its mean and then, while it is still in cache, its
deviations are raised to every power in registers; the cumulants follow per
segment from those few numbers.  The array-module code of
:mod:`fredask.structure.power_sums` (the path for cupy) makes about 19 passes over a
float64 copy of the block and several more over the sums; these kernels make
one over the block itself, in its own dtype, with the same float64 arithmetic
in the same order of operations: the same centre, the same ``S_1``, the same
move to the exact mean by the Pascal recursion and the same moment-cumulant
recursion, so the two agree to rounding.  Compiled by numba on first use and
cached on disk.
"""

from __future__ import annotations

from math import comb

import numba
import numpy as np

#: Powers the kernels always accumulate (the highest cumulant order).
POWERS = 8
#: ``BINOMIAL[p, m] = C(p, m)``, for the moment-cumulant recursion.
BINOMIAL = np.array([[comb(p, m) for m in range(POWERS + 1)] for p in range(POWERS + 1)], float)


@numba.njit(nogil=True, cache=True)
def _centred_sums(block, first, stop, mean, acc):  # pragma: no cover - compiled
    """``mean`` = column means of rows ``first:stop``; ``acc[j]`` = sum of deviations^(j+1)."""
    n_columns = block.shape[1]
    mean[:] = 0.0
    for r in range(first, stop):
        row = block[r]
        for c in range(n_columns):
            mean[c] += row[c]
    for c in range(n_columns):
        mean[c] /= stop - first
    acc[:] = 0.0
    for r in range(first, stop):
        row = block[r]
        for c in range(n_columns):
            x = row[c] - mean[c]
            p = x
            for j in range(POWERS):  # a constant trip count: unrolled by the compiler
                acc[j, c] += p
                p *= x


@numba.njit(nogil=True, cache=True)
def _segment_sums(block, starts, lengths, centre, sums):  # pragma: no cover - compiled
    acc = np.empty((POWERS, block.shape[1]))
    for s in range(starts.shape[0]):
        _centred_sums(block, starts[s], starts[s] + lengths[s], centre[s], acc)
        sums[:, s, :] = acc[: sums.shape[0]]


@numba.njit(nogil=True, cache=True)
def _segment_cumulants(
    block, starts, lengths, order, paper_kappa8, binomial, out
):  # pragma: no cover - compiled
    n_columns = block.shape[1]
    mean = np.empty(n_columns)
    offset = np.empty(n_columns)
    acc = np.empty((POWERS, n_columns))  # power sums, then central moments mu_1..mu_8
    kappa = np.empty((POWERS + 1, n_columns))  # kappa[p], p = 1..order
    for s in range(starts.shape[0]):
        n = float(lengths[s])
        _centred_sums(block, starts[s], starts[s] + lengths[s], mean, acc)
        # about the exact mean centre + S_1 / n: move the sums by the small offset
        for c in range(n_columns):
            offset[c] = acc[0, c] / n
            kappa[1, c] = mean[c] + offset[c]
        for r in range(1, order + 1):
            for p in range(order, r - 1, -1):
                if p == 1:
                    for c in range(n_columns):
                        acc[0, c] += -offset[c] * n
                else:
                    for c in range(n_columns):
                        acc[p - 1, c] += -offset[c] * acc[p - 2, c]
        for p in range(order):
            for c in range(n_columns):
                acc[p, c] /= n
        for p in range(2, order + 1):
            for c in range(n_columns):
                kappa[p, c] = acc[p - 1, c]
            for m in range(2, p - 1):
                for c in range(n_columns):
                    kappa[p, c] -= kappa[m, c] * acc[p - m - 1, c] * binomial[p - 1, m - 1]
        if order == POWERS and paper_kappa8:
            for c in range(n_columns):
                kappa[8, c] += (acc[1, c] * acc[3, c] - acc[2, c] ** 2) * acc[1, c] * 140
        for p in range(1, order + 1):
            for c in range(n_columns):
                out[s, (p - 1) * n_columns + c] = kappa[p, c]


def _rows_and_starts(block, lengths):
    block = np.asarray(block)
    if block.dtype not in (np.float32, np.float64):
        block = block.astype(np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.ascontiguousarray(block), lengths, np.cumsum(lengths) - lengths


def segment_power_sums_cpu(block: np.ndarray, lengths: np.ndarray, order: int):
    """Centres and power sums ``S_1..S_order`` of consecutive row segments, in one read.

    Parameters
    ----------
    block : numpy.ndarray, shape (n, d)
        Rows, float32 or float64 (other dtypes are converted to float64).
    lengths : numpy.ndarray of int, shape (k,)
        Rows of each segment, all >= 1, summing to ``n``.
    order : int
        Highest power, at most :data:`POWERS`.

    Returns
    -------
    (centre, sums) : numpy.ndarray, shapes (k, d) and (order, k, d), float64
        Column means of each segment and the sums of powers of the deviations
        from them.
    """
    block, lengths, starts = _rows_and_starts(block, lengths)
    centre = np.empty((lengths.shape[0], block.shape[1]))
    sums = np.empty((order, lengths.shape[0], block.shape[1]))
    _segment_sums(block, starts, lengths, centre, sums)
    return centre, sums


def segment_cumulants_cpu(
    block: np.ndarray, lengths: np.ndarray, order: int, kappa8: str
) -> np.ndarray:
    """Cumulant-major cumulants (not root-scaled) of consecutive row segments, in one read.

    The compiled twin of ``cumulants_from_sums(segment_power_sums(...),
    root_scale=False)`` (:mod:`fredask.structure.power_sums`); parameters as there.
    Root scaling is left to numpy's vectorised power
    (:func:`fredask.structure.power_sums.scale_roots`), several times faster than
    scalar ``pow`` calls here.

    Returns
    -------
    numpy.ndarray, shape (k, order * d), float64
    """
    block, lengths, starts = _rows_and_starts(block, lengths)
    out = np.empty((lengths.shape[0], order * block.shape[1]))
    paper = kappa8 == "paper"
    _segment_cumulants(block, starts, lengths, order, paper, BINOMIAL, out)
    return out
