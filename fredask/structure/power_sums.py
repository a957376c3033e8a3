"""Power sums of row segments about their means: the numerics of structure cumulants.

For consecutive segments of rows (the atoms of structures, or pieces of them)
and every column: the count and the power sums ``S_j = sum (x - c)^j``
(``j = 1..order``) about a centre ``c`` at the computed mean, all segments at
once with segment reductions (no Python loop per segment).  Sums about the
mean, not raw power sums: a feature with mean 1e4 and spread 1e-2 keeps its
digits; and since ``c`` is a known float64 number and ``S_1`` is kept,
moving sums to another centre is exact algebra (the binomial expansion), so
the rounding of the mean does not leak into the higher moments.  Pieces of
one segment merge by the pairwise update for arbitrary order (Pébay 2008):
all moved to one centre and added.  Then the cumulants (docs/method.md, section 7).
Every function takes the array module ``xp`` (numpy or cupy) and computes in
float64 whatever the input dtype.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from itertools import pairwise
from math import comb
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from fredask.backend import segment_sums

#: Highest cumulant order (docs/method.md, section 7 gives the formulas up to 8).
MAX_ORDER = 8
#: Rows a kernel works on at a time: small blocks stay in cache (about 2x faster).
SUBBLOCK_ROWS = 2048


@dataclass
class PowerSums:
    """Count and power sums about a centre near the mean, per segment of rows and column.

    The centre is a float64 number known exactly, so moving the sums to
    another centre is exact algebra (binomial expansion); keeping the first
    sum ``S_1`` (not assuming it is zero) removes the rounding error of the
    centre from every higher sum.

    Attributes
    ----------
    count : array, shape (k,)
        Rows of each segment (float64).
    centre : array, shape (k, d)
        Centre of each segment's sums (close to its column means).
    sums : array, shape (order, k, d)
        ``sums[j - 1] = sum over the segment's rows of (x - centre)^j``, ``j = 1..order``.
    """

    count: Any
    centre: Any
    sums: Any

    def __len__(self) -> int:
        return int(self.count.shape[0])

    @property
    def mean(self):
        """Column means, ``centre + S_1 / n``."""
        return self.centre + self.sums[0] / self.count[:, None]

    def take(self, segments: slice) -> PowerSums:
        """The sums of a slice of the segments (views)."""
        return PowerSums(self.count[segments], self.centre[segments], self.sums[:, segments])

    def copy(self) -> PowerSums:
        """A copy that keeps no larger arrays alive."""
        xp = array_namespace(self.sums)
        return PowerSums(*(xp.asarray(a, copy=True) for a in (self.count, self.centre, self.sums)))


def transpose_into(out, rows, xp=np, tile: int = 64) -> None:
    """``out[...] = rows.T`` (with the cast); on numpy in tiles of rows, 2x faster."""
    if xp is not np:
        out[...] = xp.asarray(rows).T
        return
    for start in range(0, rows.shape[0], tile):
        out[:, start : start + tile] = rows[start : start + tile].T


def expand_segments(values, lengths: np.ndarray, out, xp=np) -> None:
    """``out[:, i] = values[:, segment of row i]``: each segment's column over its rows.

    On numpy in place (``np.repeat`` would allocate, and fresh large arrays
    page-fault on Dask workers, which return freed memory to the system).
    """
    if xp is np:
        segment_of_row = np.repeat(np.arange(lengths.size), lengths)
        np.take(values, segment_of_row, axis=1, out=out, mode="clip")
    else:
        segment_of_row = np.repeat(np.arange(lengths.size), lengths)  # (CuPy's repeat
        out[...] = xp.take(values, xp.asarray(segment_of_row), axis=1)  # takes no arrays)


def compiled_kernels():
    """:mod:`fredask.structure.power_sums_compiled` (compiled on first use), or None without numba.

    numba is a dependency, but it supports a new Python only months after its
    release; without it the array-module kernels run on numpy (4x slower).
    """
    try:
        return importlib.import_module("fredask.structure.power_sums_compiled")
    except ImportError:
        return None


def segment_power_sums(block, lengths: np.ndarray, order: int, xp=np) -> PowerSums:
    """Power sums of consecutive segments of the rows of ``block`` about their means.

    On numpy the compiled one-read kernel
    (:func:`fredask.structure.power_sums_compiled.segment_power_sums_cpu`), otherwise (or
    without numba) :func:`segment_power_sums_xp`; the two agree to rounding.

    Parameters
    ----------
    block : array, shape (n, d)
        Rows, any real dtype (computed in float64).
    lengths : numpy.ndarray of int, shape (k,)
        Rows of each segment, all >= 1, summing to ``n``.
    order : int
        Highest power.

    Returns
    -------
    PowerSums
        Centred on the computed means (``S_1`` holds their rounding error).
    """
    compiled = compiled_kernels() if xp is np else None
    if compiled is None:
        return segment_power_sums_xp(block, lengths, order, xp)
    centre, sums = compiled.segment_power_sums_cpu(block, lengths, order)
    return PowerSums(np.asarray(lengths, dtype=np.float64), centre, sums)


def segment_cumulants(
    block, lengths: np.ndarray, order: int, kappa8: str = "textbook", root_scale: bool = True, xp=np
):
    """Cumulant-major cumulants of consecutive segments of the rows of ``block``.

    ``cumulants_from_sums(segment_power_sums(...))``; on numpy fused into one
    compiled read of the block
    (:func:`fredask.structure.power_sums_compiled.segment_cumulants_cpu`).

    Returns
    -------
    array, shape (k, order * d), float64
    """
    compiled = compiled_kernels() if xp is np else None
    if compiled is None:
        sums = segment_power_sums_xp(block, lengths, order, xp)
        return cumulants_from_sums(sums, kappa8, root_scale, xp, consume=True)
    out = compiled.segment_cumulants_cpu(block, lengths, order, kappa8)
    if root_scale:
        scale_roots(out, order, xp)
    return out


def segment_power_sums_xp(block, lengths: np.ndarray, order: int, xp=np) -> PowerSums:
    """:func:`segment_power_sums` in array operations of ``xp`` (numpy or cupy).

    Segment reductions over a float64 copy of the block, transposed so that
    each reduction runs over contiguous memory, in sub-blocks of about
    :data:`SUBBLOCK_ROWS` rows.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    n_segments, n_columns = lengths.shape[0], block.shape[1]
    # Whole segments of about SUBBLOCK_ROWS rows at a time, in reused buffers (fresh
    # large arrays cost page faults on Dask workers, which return freed memory).
    bounds = [0]
    while bounds[-1] < n_segments:
        after = int(np.searchsorted(ends, starts[bounds[-1]] + SUBBLOCK_ROWS, side="right"))
        bounds.append(max(bounds[-1] + 1, after))
    most_rows = max((int(ends[b - 1] - starts[a]) for a, b in pairwise(bounds)), default=0)
    deviations = xp.empty(n_columns * most_rows, dtype=xp.float64)
    powers = xp.empty(n_columns * most_rows, dtype=xp.float64)
    # Feature-major: reducing contiguous runs of a row is about 2x faster than along rows.
    centre = xp.empty((n_columns, n_segments), dtype=xp.float64)
    sums = xp.empty((order, n_columns, n_segments), dtype=xp.float64)
    for first, stop in pairwise(bounds):
        seg = slice(first, stop)
        row0, row1 = int(starts[first]), int(ends[stop - 1])
        local_starts = xp.asarray(starts[seg] - row0)
        local_lengths = xp.asarray(lengths[seg])
        size = n_columns * (row1 - row0)
        x = xp.reshape(deviations[:size], (n_columns, row1 - row0))
        power = xp.reshape(powers[:size], x.shape)
        transpose_into(x, block[row0:row1], xp)  # a float64 copy: the block is not changed
        segment_sums(x, local_starts, local_lengths, centre[:, seg], xp)
        centre[:, seg] /= local_lengths
        expand_segments(centre[:, seg], lengths[seg], power, xp)
        x -= power
        segment_sums(x, local_starts, local_lengths, sums[0, :, seg], xp)
        xp.multiply(x, x, out=power)
        for j in range(1, order):
            segment_sums(power, local_starts, local_lengths, sums[j, :, seg], xp)
            if j < order - 1:
                power *= x
    count = xp.asarray(lengths, dtype=xp.float64)
    return PowerSums(count, centre.T, xp.permute_dims(sums, (0, 2, 1)))


def moved_sums(part: PowerSums, offset, xp=np, in_place: bool = False):
    """Power sums of ``part``'s rows about ``part.centre + offset`` (orders 1..order).

    ``sum (x - c - o)^p = sum_k C(p, k) S_{p-k} (-o)^k`` with ``S_0 = n``,
    evaluated by the Pascal recursion ``b_p += (-o) b_{p-1}`` (``r = 1..order``,
    ``p = order..r``): two passes per step, one scratch array; with
    ``in_place`` in ``part.sums`` itself.
    """
    order = part.sums.shape[0]
    step = -offset
    moved = part.sums if in_place else xp.asarray(part.sums, copy=True)  # b_1..b_order; b_0 = n
    scratch = xp.empty_like(moved[0])  # the memory layout of the sums (feature-major)
    for r in range(1, order + 1):
        for p in range(order, r - 1, -1):
            below = part.count[:, None] if p == 1 else moved[p - 2]
            xp.multiply(step, below, out=scratch)
            moved[p - 1] += scratch
    return moved


def recentre(part: PowerSums, centre, xp=np) -> PowerSums:
    """The same rows' power sums about another ``centre``.

    The offset is a difference of two nearby float64 numbers, which is exact,
    so the new sums are about exactly ``centre``.
    """
    return PowerSums(part.count, centre, moved_sums(part, centre - part.centre, xp))


def merge_power_sums(parts: list[PowerSums], xp=np) -> PowerSums:
    """Power sums of the union of disjoint parts of the same segments.

    The pairwise update for arbitrary order (Pébay 2008): every part's sums
    moved to one centre (the merged mean as rounded) and added.  Only
    differences of centres enter, so large means with tiny spreads lose no
    digits.
    """
    if len(parts) == 1:
        return parts[0]
    count = sum(p.count for p in parts)
    base = parts[0].mean
    centre = base + sum((p.count / count)[:, None] * (p.mean - base) for p in parts[1:])
    return PowerSums(count, centre, sum(recentre(p, centre, xp).sums for p in parts))


def cumulants_from_sums(
    sums: PowerSums,
    kappa8: str = "textbook",
    root_scale: bool = True,
    xp=np,
    consume: bool = False,
):
    """Cumulant-major descriptor ``[kappa_1 | kappa_2 | ... | kappa_order]``.

    ``kappa_1`` is the mean; higher cumulants follow from the biased central
    moments ``mu_j = M_j / n`` by the moment-cumulant recursion
    ``kappa_p = mu_p - sum_{m=2}^{p-2} C(p-1, m-1) kappa_m mu_{p-m}``.
    ``kappa8="paper"`` adds ``140 mu_2 (mu_2 mu_4 - mu_3^2)`` to ``kappa_8``
    (the paper script's swapped coefficients).  Root scaling maps ``kappa_j``
    to ``sign(kappa_j) |kappa_j|^(1/j)`` for ``j >= 2``.

    ``consume=True`` works in the arrays of ``sums`` (overwritten) instead of
    a copy.

    Returns
    -------
    array, shape (k, order * d), float64
    """
    n = sums.count[:, None]
    order, (n_segments, width) = sums.sums.shape[0], sums.centre.shape
    # The output in the memory layout of the sums (feature-major from the kernel), so
    # that every step below runs over operands of one layout.
    flags = getattr(sums.centre, "flags", None)  # numpy and CuPy say; others: row-major
    feature_major = flags is not None and flags.f_contiguous and not flags.c_contiguous
    shape = (n_segments, order * width)
    out = (
        xp.empty(shape[::-1], dtype=xp.float64).T
        if feature_major
        else xp.empty(shape, dtype=xp.float64)
    )
    kappa = [None] + [out[:, j * width : (j + 1) * width] for j in range(order)]  # kappa[p]
    # About the exact mean centre + S_1 / n: the small offset is moved, not a rounded mean.
    offset = sums.sums[0] / n
    xp.add(sums.centre, offset, out=kappa[1])
    mu = moved_sums(sums, offset, xp, in_place=consume)  # mu[p - 1]: central moment p
    mu /= n
    scratch = xp.empty_like(mu[0])
    for p in range(2, order + 1):
        kappa[p][...] = mu[p - 1]
        for m in range(2, p - 1):
            xp.multiply(kappa[m], mu[p - m - 1], out=scratch)
            scratch *= comb(p - 1, m - 1)
            kappa[p] -= scratch
    if order == MAX_ORDER and kappa8 == "paper":
        xp.multiply(mu[1], mu[3], out=scratch)
        scratch -= mu[2] ** 2
        scratch *= mu[1]
        scratch *= 140
        kappa[8] += scratch
    if root_scale:
        scale_roots(out, order, xp, scratch)
    return out


def scale_roots(cumulants, order: int, xp=np, scratch=None) -> None:
    """Root scaling in place: ``kappa_j -> sign(kappa_j) |kappa_j|^(1/j)`` for ``j >= 2``.

    ``cumulants`` is cumulant-major, shape (k, order * d); ``scratch`` an
    optional (k, d) work array.
    """
    width = cumulants.shape[1] // order
    if scratch is None:
        scratch = xp.empty_like(cumulants[:, :width])
    for p in range(2, order + 1):
        kappa = cumulants[:, (p - 1) * width : p * width]
        xp.abs(kappa, out=scratch)
        xp.pow(scratch, 1.0 / p, out=scratch)
        xp.copysign(scratch, kappa, out=kappa)
