"""Per-structure cumulants of atom features, streamed over row chunks (SPEC section 7).

A structure is a run of contiguous rows.  Each row chunk is reduced to the
count and the power sums ``S_j = sum (x - c)^j`` (``j = 1..order``) about a
centre ``c`` at the computed mean, for every piece of a structure it holds,
all pieces at once with segment reductions (no Python loop per structure).
Sums about the mean, not raw power sums: a feature with mean 1e4 and spread
1e-2 keeps its digits; and since ``c`` is a known float64 number and ``S_1``
is kept, moving sums to another centre is exact algebra, so the rounding of
the mean does not leak into the higher moments.  A structure that crosses
chunk boundaries is the merge of its pieces by the pairwise update for
arbitrary order (Pébay 2008): all pieces moved to one centre by the binomial
expansion and added.  The kernel of a chunk finishes the structures wholly
inside it and hands on only the sums of its two edge pieces; a small task per
crossing structure merges them.  Kernels take the array module ``xp`` (numpy
or cupy) and compute in float64 whatever the input dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from math import comb
from typing import Any

import dask
import dask.array as da
import numpy as np

from fredask.cluster import compute
from fredask.features import as_feature_set
from fredask.passes import NonFiniteFeaturesError

#: Highest cumulant order (SPEC section 7 gives the formulas up to 8).
MAX_ORDER = 8
KAPPA8_VARIANTS = ("textbook", "paper")
#: Rows a chunk kernel works on at a time: small blocks stay in cache (about 2x faster).
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
        return PowerSums(self.count.copy(), self.centre.copy(), self.sums.copy())


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
        out[...] = xp.repeat(values, lengths.tolist(), axis=1)


def segment_power_sums(block, lengths: np.ndarray, order: int, xp=np) -> PowerSums:
    """Power sums of consecutive segments of the rows of ``block`` about their means.

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
    deviations = xp.empty(n_columns * most_rows)
    powers = xp.empty(n_columns * most_rows)
    # Feature-major: reducing contiguous runs of a row is about 2x faster than along rows.
    centre = xp.empty((n_columns, n_segments))
    sums = xp.empty((order, n_columns, n_segments))
    for first, stop in pairwise(bounds):
        seg = slice(first, stop)
        row0, row1 = int(starts[first]), int(ends[stop - 1])
        local_starts = xp.asarray(starts[seg] - row0)
        local_lengths = xp.asarray(lengths[seg])
        x = deviations[: n_columns * (row1 - row0)].reshape(n_columns, row1 - row0)
        power = powers[: x.size].reshape(x.shape)
        transpose_into(x, block[row0:row1], xp)  # a float64 copy: the block is not changed
        xp.add.reduceat(x, local_starts, axis=1, out=centre[:, seg])
        centre[:, seg] /= local_lengths
        expand_segments(centre[:, seg], lengths[seg], power, xp)
        x -= power
        xp.add.reduceat(x, local_starts, axis=1, out=sums[0, :, seg])
        xp.multiply(x, x, out=power)
        for j in range(1, order):
            xp.add.reduceat(power, local_starts, axis=1, out=sums[j, :, seg])
            if j < order - 1:
                power *= x
    count = xp.asarray(lengths, dtype=xp.float64)
    return PowerSums(count, centre.T, sums.transpose(0, 2, 1))


def moved_sums(part: PowerSums, offset, xp=np, in_place: bool = False):
    """Power sums of ``part``'s rows about ``part.centre + offset`` (orders 1..order).

    ``sum (x - c - o)^p = sum_k C(p, k) S_{p-k} (-o)^k`` with ``S_0 = n``,
    evaluated by the Pascal recursion ``b_p += (-o) b_{p-1}`` (``r = 1..order``,
    ``p = order..r``): two passes per step, one scratch array; with
    ``in_place`` in ``part.sums`` itself.
    """
    order = part.sums.shape[0]
    step = -offset
    moved = part.sums if in_place else xp.array(part.sums)  # b_1..b_order; b_0 = n
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
    feature_major = sums.centre.flags.f_contiguous and not sums.centre.flags.c_contiguous
    shape = (n_segments, order * width)
    out = xp.empty(shape[::-1]).T if feature_major else xp.empty(shape)
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
        for p in range(2, order + 1):
            xp.abs(kappa[p], out=scratch)
            xp.power(scratch, 1.0 / p, out=scratch)
            xp.copysign(scratch, kappa[p], out=kappa[p])
    return out


# ----------------------------------------------------------------- validation


def check_options(order: int, kappa8: str) -> None:
    """Refuse an order outside 1..8 or an unknown kappa_8 variant."""
    if isinstance(order, bool) or not isinstance(order, int | np.integer):
        raise TypeError(f"order must be an integer in 1..{MAX_ORDER}, got {order!r}")
    if not 1 <= order <= MAX_ORDER:
        raise ValueError(f"order must lie in 1..{MAX_ORDER}, got {order}")
    if kappa8 not in KAPPA8_VARIANTS:
        raise ValueError(f"kappa8 must be one of {KAPPA8_VARIANTS}, got {kappa8!r}")


def structure_offsets(n_atoms, n_rows: int) -> np.ndarray:
    """First row of each structure, after checking the atom counts against the rows.

    Raises
    ------
    ValueError
        Naming the first structure with fewer than one atom, the structure that
        runs past the last row, or the rows that belong to no structure.
    """
    counts = np.asarray(n_atoms)
    if counts.ndim != 1 or counts.size == 0:
        raise ValueError(f"n_atoms must be a non-empty 1-D array, got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.integer):
        raise TypeError(f"n_atoms must hold integer atom counts, got dtype {counts.dtype}")
    counts = counts.astype(np.int64)
    empty = np.flatnonzero(counts < 1)
    if empty.size:
        s = int(empty[0])
        raise ValueError(
            f"structure {s} has {counts[s]} atoms ({empty.size} such structures); "
            "every structure needs at least one atom"
        )
    ends = np.cumsum(counts)
    total = int(ends[-1])
    if total > n_rows:
        s = int(np.searchsorted(ends, n_rows, side="right"))
        raise ValueError(
            f"n_atoms sums to {total} but the features have {n_rows} rows: structure {s} "
            f"(rows {ends[s] - counts[s]}..{ends[s] - 1}) runs past the last row"
        )
    if total < n_rows:
        raise ValueError(
            f"n_atoms sums to {total} but the features have {n_rows} rows: rows "
            f"{total}..{n_rows - 1} after the last structure ({counts.size - 1}) belong to "
            "no structure"
        )
    return ends - counts


# ------------------------------------------------------------------ the pass


@dataclass(frozen=True)
class ChunkPlan:
    """Which structures one row chunk holds, and which of them end in it.

    Attributes
    ----------
    start : int
        First row of the chunk.
    first : int
        First structure with atoms in the chunk.
    lengths : numpy.ndarray of int
        Atoms of structures ``first, first + 1, ...`` inside the chunk.
    n_finished : int
        How many of those structures have their last atom in this chunk.
    index : int
        Position of the chunk.
    begun_in : int
        Chunk holding the first atom of structure ``first``.
    """

    start: int
    first: int
    lengths: np.ndarray
    n_finished: int
    index: int
    begun_in: int

    @property
    def continued(self) -> bool:
        """Whether the chunk's first structure began in an earlier chunk."""
        return self.begun_in < self.index


def plan_chunks(row_chunks, offsets: np.ndarray, n_atoms: np.ndarray) -> list[ChunkPlan]:
    """One :class:`ChunkPlan` per row chunk."""
    bounds = np.concatenate([[0], np.cumsum(row_chunks)]).astype(np.int64)
    ends = offsets + n_atoms
    plans = []
    for i, (start, stop) in enumerate(pairwise(bounds)):
        if start == stop:  # an empty chunk holds no piece
            plans.append(ChunkPlan(int(start), 0, np.zeros(0, np.int64), 0, i, i))
            continue
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(offsets, stop, side="left"))
        lengths = np.minimum(ends[first:last], stop) - np.maximum(offsets[first:last], start)
        n_finished = int(np.searchsorted(ends, stop, side="right")) - first
        begun_in = int(np.searchsorted(bounds, offsets[first], side="right")) - 1
        plans.append(ChunkPlan(int(start), first, lengths, n_finished, i, begun_in))
    return plans


def chunk_power_sums(block, plan: ChunkPlan, order: int, skipped, name: str, xp=np):
    """The kernel: power sums of every structure piece in one chunk.

    Raises :class:`~fredask.passes.NonFiniteFeaturesError` naming the first
    structure (not in ``skipped``) whose rows hold NaN or inf.
    """
    sums = segment_power_sums(block, plan.lengths, order, xp)
    bad = ~xp.isfinite(sums.mean).all(axis=1)
    if skipped.size:
        structures = xp.arange(plan.first, plan.first + len(sums))
        bad &= ~xp.asarray(np.isin(np.asarray(structures), skipped))
    if bad.any():
        piece = int(xp.flatnonzero(bad)[0])
        row0 = int(plan.lengths[:piece].sum())
        rows = xp.asarray(block[row0 : row0 + int(plan.lengths[piece])])
        row = plan.start + row0 + int(xp.flatnonzero(~xp.isfinite(rows).all(axis=1))[0])
        raise NonFiniteFeaturesError(
            f"features {name!r} hold NaN or infinite values in structure "
            f"{plan.first + piece} (first at row {row})"
        )
    return sums


def finished_cumulants(
    sums: PowerSums, structures: np.ndarray, options: dict, xp=np, consume: bool = False
):
    """Cumulants of whole ``structures`` from their sums: skipped ones NaN, overflow an error."""
    out = cumulants_from_sums(sums, options["kappa8"], options["root_scale"], xp, consume)
    skipped = np.isin(structures, options["skipped"])
    if skipped.any():
        out[xp.asarray(skipped)] = xp.nan
    overflow = ~xp.isfinite(out).all(axis=1) & ~xp.asarray(skipped)
    if overflow.any():
        s = int(structures[int(xp.flatnonzero(overflow)[0])])
        raise FloatingPointError(
            f"cumulants of features {options['name']!r} overflow float64 in structure {s}: "
            f"its spread is too large for order {options['order']}"
        )
    return out


def chunk_cumulants(block, plan: ChunkPlan, options: dict, xp=np):
    """The kernel: cumulants of the structures wholly inside one chunk, and its edge pieces.

    Returns
    -------
    (array, (PowerSums, PowerSums))
        Cumulants of the structures that begin and end in the chunk, and
        copies of the sums of its first and last pieces (parts of structures
        that may cross its edges; the same piece when one structure fills
        the chunk).
    """
    sums = chunk_power_sums(block, plan, options["order"], options["skipped"], options["name"], xp)
    edges = sums.take(slice(0, 1)).copy(), sums.take(slice(len(sums) - 1, None)).copy()
    inside = slice(int(plan.continued), max(plan.n_finished, int(plan.continued)))
    structures = np.arange(plan.first + inside.start, plan.first + inside.stop)
    cumulants = finished_cumulants(sums.take(inside), structures, options, xp, consume=True)
    return cumulants, edges


def crossing_cumulants(*edges, structure: int, options: dict, xp=np):
    """Cumulants of one structure that crosses chunk edges: its pieces merged.

    ``edges`` are the edge pieces of the chunks it spans, in order: the last
    piece of the first chunk, then the first piece of each later chunk.
    """
    pieces = [edges[0][1], *(e[0] for e in edges[1:])]
    return finished_cumulants(merge_power_sums(pieces, xp), np.array([structure]), options, xp)


def cumulant_blocks(array: da.Array, n_atoms, options: dict, xp=np) -> da.Array:
    """The Dask graph: a kernel per chunk and a merge per structure crossing chunk edges.

    Output blocks, in structure order: per chunk, the structure that ends in
    it after beginning earlier (one row), then those wholly inside it.
    """
    offsets = structure_offsets(n_atoms, array.shape[0])
    plans = plan_chunks(array.chunks[0], offsets, np.asarray(n_atoms, dtype=np.int64))
    kernel = dask.delayed(chunk_cumulants, nout=2, pure=True)
    crossing = dask.delayed(crossing_cumulants, pure=True)
    blocks = array.rechunk({1: -1}).to_delayed()[:, 0]
    parts = {
        plan.index: kernel(block, plan, options, xp)
        for block, plan in zip(blocks, plans, strict=True)
        if len(plan.lengths)
    }
    width = options["order"] * array.shape[1]
    meta = xp.empty((0, width), dtype=xp.float64)
    out = []
    for plan in plans:
        if plan.continued and plan.n_finished:
            spanned = range(plan.begun_in, plan.index + 1)
            edges = [parts[j][1] for j in spanned if j in parts]
            row = crossing(*edges, structure=plan.first, options=options, xp=xp)
            out.append(da.from_delayed(row, (1, width), dtype=np.float64, meta=meta))
        n_inside = plan.n_finished - int(plan.continued)
        if n_inside > 0:
            inside = parts[plan.index][0]
            out.append(da.from_delayed(inside, (n_inside, width), dtype=np.float64, meta=meta))
    return da.concatenate(out, axis=0)


def structure_cumulants(
    features,
    n_atoms,
    order: int = 8,
    root_scale: bool = True,
    kappa8: str = "textbook",
    *,
    skipped=None,
    name: str = "features",
    xp=np,
):
    """Per-structure cumulants of atom features, root-scaled and concatenated.

    Parameters
    ----------
    features : array-like, shape (n_atoms_total, d)
        Atom features, the atoms of each structure in consecutive rows
        (numpy, Dask, Zarr or xarray; any real dtype, computed in float64).
    n_atoms : array-like of int, shape (n_structures,)
        Atoms of each structure, in row order; every count >= 1, summing to
        the number of rows.
    order : int, default=8
        Highest cumulant, 1 to 8.
    root_scale : bool, default=True
        Map ``kappa_j`` (``j >= 2``) to ``sign(kappa_j) |kappa_j|^(1/j)``.
    kappa8 : {"textbook", "paper"}
        The textbook ``kappa_8``, or the paper script's (two coefficients
        swapped; it adds ``140 mu_2 (mu_2 mu_4 - mu_3^2)``).
    skipped : array-like of int, optional
        Structures whose features are not checked (NaN left by an
        extraction with ``skip_errors``); their rows of the result are NaN.
    name : str
        Used in error messages.
    xp : module
        Array module of the chunks (numpy or cupy).

    Returns
    -------
    numpy.ndarray or dask.array.Array, shape (n_structures, order * d), float64
        Cumulant-major: columns ``[j*d:(j+1)*d]`` hold cumulant ``j + 1`` of
        the ``d`` features.  Dask (with known chunks: per input chunk, a
        row for the structure crossing into it and a block for the structures
        inside it) for Dask, Zarr or Dask-backed inputs, else numpy.

    Raises
    ------
    ValueError
        An order outside 1..8, atom counts below one or not summing to the
        rows (naming the structure).
    NonFiniteFeaturesError
        NaN or inf in a structure's features (naming the structure), raised
        when the result is computed.

    Examples
    --------
    >>> structure_cumulants([[0.0], [2.0], [5.0]], [2, 1], order=2)
    array([[1., 1.],
           [5., 0.]])
    """
    check_options(order, kappa8)
    lazy = isinstance(features, da.Array) or type(features).__module__.startswith("zarr")
    lazy |= isinstance(getattr(features, "data", None), da.Array)  # Dask-backed xarray
    array = as_feature_set({name: features}).arrays[0]
    options = {
        "order": int(order),
        "kappa8": kappa8,
        "root_scale": bool(root_scale),
        "name": name,
        "skipped": np.unique(np.asarray([] if skipped is None else skipped, dtype=np.int64)),
    }
    result = cumulant_blocks(array, n_atoms, options, xp)
    return result if lazy else compute(result, "threads")
