"""Per-structure cumulants of atom features, streamed over row chunks (docs/method.md, section 7).

A structure is a run of contiguous rows.  The kernel of a row chunk computes
the cumulants of the structures wholly inside it (:mod:`fredask.structure.power_sums`;
on numpy one compiled read of the chunk, :mod:`fredask.structure.power_sums_compiled`) and
hands on only the power sums of its two edge pieces; a small task per
structure that crosses chunk edges merges its pieces exactly.  The output has
known chunks, so it can be written into a store block by block
(:mod:`fredask.structure.stored`).  Stored (Zarr) features are read in
tasks of several storage chunks (:func:`fredask.stats.features.from_zarr_in_tasks`).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import dask
import dask.array as da
import numpy as np

from fredask.backend import ArrayBackend, resolve_backend, to_device, to_host
from fredask.cluster.clients import compute
from fredask.stats.checks import NonFiniteFeaturesError
from fredask.stats.features import as_feature_set, from_zarr_in_tasks, is_zarr_array
from fredask.structure.power_sums import (
    MAX_ORDER,
    cumulants_from_sums,
    merge_power_sums,
    segment_cumulants,
    segment_power_sums,
)

KAPPA8_VARIANTS = ("textbook", "paper")


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


def check_finite_pieces(block, plan: ChunkPlan, means, first_piece: int, options: dict, xp=np):
    """Refuse NaN or inf in the pieces ``first_piece, ...`` of a chunk, given their means.

    Raises :class:`~fredask.stats.checks.NonFiniteFeaturesError` naming the first
    such structure (not in ``options["skipped"]``) and its first bad row.
    """
    bad = ~xp.all(xp.isfinite(means), axis=1)
    skipped = options["skipped"]
    if skipped.size:
        structures = np.arange(plan.first + first_piece, plan.first + first_piece + len(means))
        bad &= ~xp.asarray(np.isin(structures, skipped))
    if not bool(xp.any(bad)):
        return
    piece = first_piece + int(xp.nonzero(bad)[0][0])
    row0 = int(plan.lengths[:piece].sum())
    rows = xp.asarray(block[row0 : row0 + int(plan.lengths[piece])])
    row = plan.start + row0 + int(xp.nonzero(~xp.all(xp.isfinite(rows), axis=1))[0][0])
    raise NonFiniteFeaturesError(
        f"features {options['name']!r} hold NaN or infinite values in structure "
        f"{plan.first + piece} (first at row {row})"
    )


def finished_cumulants(out, structures: np.ndarray, options: dict, xp=np):
    """``out``, the cumulants of whole ``structures``, on the host: skipped ones NaN,
    overflow an error (checked where they were computed)."""
    skipped = np.isin(structures, options["skipped"])
    if skipped.any():
        out[xp.asarray(skipped)] = xp.nan
    overflow = ~xp.all(xp.isfinite(out), axis=1) & ~xp.asarray(skipped)
    if bool(xp.any(overflow)):
        s = int(structures[int(xp.nonzero(overflow)[0][0])])
        raise FloatingPointError(
            f"cumulants of features {options['name']!r} overflow float64 in structure {s}: "
            f"its spread is too large for order {options['order']}"
        )
    return to_host(out)


def chunk_cumulants(block, plan: ChunkPlan, options: dict, xp=np):
    """The kernel: cumulants of the structures wholly inside one chunk, and its edge pieces.

    Returns
    -------
    (array, (PowerSums, PowerSums))
        Cumulants of the structures that begin and end in the chunk, and the
        sums of its first and last pieces (parts of structures that may cross
        its edges; the same piece when one structure fills the chunk).

    Raises
    ------
    NonFiniteFeaturesError
        NaN or inf in a structure's rows (not a skipped one).
    """
    lengths, order = plan.lengths, options["order"]
    block = to_device(block, xp)  # one copy per chunk; the edge pieces stay there
    last = len(lengths) - 1
    first_piece = segment_power_sums(block[: lengths[0]], lengths[:1], order, xp)
    last_piece = (
        segment_power_sums(block[int(lengths[:last].sum()) :], lengths[last:], order, xp)
        if last
        else first_piece  # one structure fills the chunk: not read twice
    )
    edges = (first_piece, last_piece)
    inside = slice(int(plan.continued), max(plan.n_finished, int(plan.continued)))
    rows = slice(int(lengths[: inside.start].sum()), int(lengths[: inside.stop].sum()))
    kappa8, root_scale = options["kappa8"], options["root_scale"]
    out = segment_cumulants(block[rows], lengths[inside], order, kappa8, root_scale, xp)
    check_finite_pieces(block, plan, edges[0].mean, 0, options, xp)
    check_finite_pieces(block, plan, out[:, : block.shape[1]], inside.start, options, xp)
    check_finite_pieces(block, plan, edges[1].mean, last, options, xp)
    structures = np.arange(plan.first + inside.start, plan.first + inside.stop)
    return finished_cumulants(out, structures, options, xp), edges


def crossing_cumulants(*edges, structure: int, options: dict, xp=np):
    """Cumulants of one structure that crosses chunk edges: its pieces merged.

    ``edges`` are the edge pieces of the chunks it spans, in order: the last
    piece of the first chunk, then the first piece of each later chunk.
    """
    pieces = [edges[0][1], *(e[0] for e in edges[1:])]
    merged = merge_power_sums(pieces, xp)
    out = cumulants_from_sums(merged, options["kappa8"], options["root_scale"], xp)
    return finished_cumulants(out, np.array([structure]), options, xp)


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
    meta = np.empty((0, width), dtype=np.float64)  # blocks come back to the host
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
    device: str | ArrayBackend = "cpu",
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
    device : {"cpu", "gpu", "auto"} or ArrayBackend
        Array module of the chunk kernels (:func:`fredask.backend.resolve_backend`);
        on numpy the compiled kernel runs where numba imports.

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
    lazy = isinstance(features, da.Array) or is_zarr_array(features)
    lazy |= isinstance(getattr(features, "data", None), da.Array)  # Dask-backed xarray
    if is_zarr_array(features):
        features = from_zarr_in_tasks(features)  # several storage chunks per task
    array = as_feature_set({name: features}).arrays[0]
    options = {
        "order": int(order),
        "kappa8": kappa8,
        "root_scale": bool(root_scale),
        "name": name,
        "skipped": np.unique(np.asarray([] if skipped is None else skipped, dtype=np.int64)),
    }
    from fredask.cluster.clients import active_client

    xp = resolve_backend(device, [array], active_client()).xp
    result = cumulant_blocks(array, n_atoms, options, xp)
    return result if lazy else compute(result, "threads")
