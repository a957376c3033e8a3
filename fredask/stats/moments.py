"""Sufficient statistics of row subsets, per chunk, merged as a tree.

For the rows of one subset (fold 1, fold 2 or test) of the concatenated
features ``Z = [X_1 | X_2 | ... | X_M]`` of all models, :class:`Moments` keeps
the row count, the column means and the scatter about those means in one of
two forms (docs/method.md, section 6):

* ``"qr"``: the R factor of the centred rows (tall-skinny QR).  Exact: the
  singular values of any column block of R are those of the data, with no
  squaring of the condition number.
* ``"gram"``: the centred Gram matrix (one GEMM per chunk).  Fast, but its
  eigenvalues square the condition number.
* ``"diagonal"``: only the per-column sums of squared deviations (what the
  scalers need), at the cost of reading the data.

Partial moments merge with the parallel (Chan et al.) update: the scatter of a
union is the sum of the parts' scatters plus ``sum_i n_i (m_i - m)(m_i - m)^T``,
which for factors is one QR of the stacked factors and shift rows.  Every
function takes the array module ``xp`` (see :mod:`fredask.backend`).

Huge or tiny magnitudes: a column whose largest magnitude in a subset lies
outside ``[2**-RANGE_BITS, 2**RANGE_BITS]`` (features near 1e153, whose squares
overflow float64) is multiplied by an exact power of two before any square is
formed, and its moments keep that power (:attr:`Moments.exponent`).  Moments
of different powers are brought to the larger one before they merge
(:func:`align_moments`), again by exact powers of two.  Columns in the range
are left alone, so ordinary data give the same bits as without the rescaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fredask.backend import r_factor, to_device, to_host

#: Scatter forms a global fit can use (``"diagonal"`` serves only the scalers).
METHODS = ("qr", "gram")
#: Columns whose peak magnitude lies beyond ``2**±RANGE_BITS`` are rescaled.
RANGE_BITS = 256
#: ``"qr"`` factors are compressed by a QR only once their rows exceed this many
#: times their columns; below it the stacked centred rows (and shift rows) are
#: the factor themselves (see :func:`compressed`).
COMPRESS_RATIO = 2


@dataclass
class Moments:
    """Count, column means and scatter of one subset of rows.

    Attributes
    ----------
    count : int
        Number of rows.
    mean : array, shape (P,)
        Column means.
    scatter : array
        ``"qr"``: a factor ``(k, P)`` with ``R^T R`` the centred scatter: an R
        factor, or the centred rows themselves while they are few
        (:func:`compressed`);
        ``"gram"``: the centred scatter ``(P, P)`` itself;
        ``"diagonal"``: its diagonal ``(P,)``.
    exponent : numpy.ndarray of int64, shape (P,), or None
        ``mean`` and ``scatter`` describe the data times ``2**-exponent``
        (column by column); ``None`` means no column was rescaled.
    """

    count: int
    mean: Any
    scatter: Any
    exponent: np.ndarray | None = None


def column_exponents(z, xp) -> np.ndarray | None:
    """Per column, the power of two that brings its peak magnitude into [0.5, 1).

    Only for columns whose peak lies outside ``[2**-RANGE_BITS, 2**RANGE_BITS]``
    (0 for the others, and for all-zero columns); ``None`` when no column needs it.
    """
    peak = to_host(xp.maximum(xp.max(z, axis=0), -xp.min(z, axis=0)))  # no |z| copy
    outside = (peak > 2.0**RANGE_BITS) | ((peak < 2.0**-RANGE_BITS) & (peak > 0))
    if not outside.any():
        return None
    return np.where(outside, np.frexp(peak)[1], 0).astype(np.int64)


def exponents_of(moments: Moments) -> np.ndarray:
    """The per-column power of two of ``moments`` (zeros where none was applied)."""
    if moments.exponent is None:
        return np.zeros(np.shape(to_host(moments.mean))[0], dtype=np.int64)
    return moments.exponent


def subset_moments(z, method: str, xp) -> Moments:
    """Moments of the rows of ``z`` (float64, shape (n, P), n >= 1; overwritten).

    Columns of huge or tiny magnitude are first multiplied by an exact power of
    two (:func:`column_exponents`), kept in :attr:`Moments.exponent`.
    """
    exponent = column_exponents(z, xp)
    if exponent is not None:
        z *= to_device(np.ldexp(1.0, -exponent), xp)
    mean = xp.mean(z, axis=0)
    z -= mean
    if method == "qr":
        scatter = compressed(z, xp)
    elif method == "gram":
        scatter = z.T @ z
    else:
        scatter = xp.sum(z * z, axis=0)
    return Moments(int(z.shape[0]), mean, scatter, exponent)


def compressed(factor, xp):
    """``factor`` itself, or its R factor once it has more than :data:`COMPRESS_RATIO`
    times as many rows as columns.

    Any ``F`` with ``F^T F`` equal to the scatter serves the solvers (the SVD
    of a column block of ``F`` has the data's singular values), so a QR only
    pays where it makes the factor smaller.  Where the columns rival the rows
    (structure level: 6,144 cumulant columns of 9,461 structures) every chunk's
    QR and every merge's QR of two wide factors cost ``~3 P^3`` flops and
    shrank nothing; chunks of many rows (the atom level) are compressed as before.
    """
    rows, columns = factor.shape
    return factor if rows <= COMPRESS_RATIO * columns else r_factor(factor, xp)


def _rescaled(moments: Moments, exponent: np.ndarray, method: str, xp) -> Moments:
    """The same moments with the (larger or equal) powers ``exponent``."""
    step = np.ldexp(1.0, exponents_of(moments) - exponent)
    factor = to_device(step, xp)
    if method == "qr":
        scatter = moments.scatter * factor[None, :]
    elif method == "gram":
        scatter = moments.scatter * to_device(np.outer(step, step), xp)
    else:
        scatter = moments.scatter * to_device(step * step, xp)
    return Moments(moments.count, moments.mean * factor, scatter, exponent)


def align_moments(parts, method: str, xp) -> list:
    """Moments brought to common per-column powers of two (the largest), exactly.

    ``None`` entries stay ``None``; moments without rescaled columns are
    returned as they are when no part has any.
    """
    present = [p for p in parts if p is not None]
    if all(p.exponent is None for p in present):
        return list(parts)
    exponent = np.max([exponents_of(p) for p in present], axis=0)
    return [
        None
        if p is None
        else p
        if np.array_equal(exponents_of(p), exponent)
        else _rescaled(p, exponent, method, xp)
        for p in parts
    ]


def merge_moments(parts, method: str, xp) -> Moments | None:
    """Moments of the union of disjoint row sets."""
    parts = [p for p in parts if p is not None and p.count]
    if len(parts) <= 1:
        return parts[0] if parts else None
    parts = align_moments(parts, method, xp)
    count = sum(p.count for p in parts)
    mean = sum(p.mean * p.count for p in parts) / count
    shifts = xp.stack([(p.count**0.5) * (p.mean - mean) for p in parts])
    if method == "qr":
        scatter = compressed(xp.concat([p.scatter for p in parts] + [shifts]), xp)
    elif method == "gram":
        scatter = sum(p.scatter for p in parts) + shifts.T @ shifts
    else:
        scatter = sum(p.scatter for p in parts) + xp.sum(shifts * shifts, axis=0)
    return Moments(count, mean, scatter, parts[0].exponent)


def merge_subsets(groups, method: str, xp) -> tuple[Moments | None, ...]:
    """Merge per-subset (or per group and subset) moments of several chunks, entry by entry."""
    return tuple(merge_moments([g[s] for g in groups], method, xp) for s in range(len(groups[0])))


def factor_about(moments: Moments, centre, method: str, xp):
    """A factor ``F`` with ``F^T F = sum_i (z_i - centre)(z_i - centre)^T``.

    ``centre`` is in the units of ``moments`` (the data times
    ``2**-moments.exponent``), and so is the factor.
    For ``"qr"`` the factor is the R factor with one shift row stacked under it
    (no squaring).  For ``"gram"`` it comes from an eigendecomposition of the
    re-centred scatter, with eigenvalues below ``P * eps * max`` set to zero
    (they are rounding noise of the squared problem).
    """
    shift = (moments.count**0.5) * (moments.mean - centre)
    if method == "qr":
        return xp.concat([moments.scatter, shift[None, :]])
    scatter = moments.scatter + xp.outer(shift, shift)
    evals, evecs = xp.linalg.eigh(scatter)
    floor = xp.max(evals) * scatter.shape[0] * xp.finfo(scatter.dtype).eps
    evals = xp.where(evals > floor, evals, 0.0)
    return xp.sqrt(evals)[:, None] * evecs.T


def column_sum_squares(moments: Moments, method: str, xp):
    """Per-column sums of squared deviations from the subset mean."""
    if method == "qr":
        return xp.sum(moments.scatter**2, axis=0)
    if method == "gram":
        return xp.asarray(xp.linalg.diagonal(moments.scatter), copy=True)
    return xp.asarray(moments.scatter, copy=True)


def moments_to_host(moments: Moments | None) -> Moments | None:
    """The same moments as numpy arrays (from those of any array module)."""
    if moments is None:
        return None
    return Moments(moments.count, to_host(moments.mean), to_host(moments.scatter), moments.exponent)


def used_rows(linear_map: np.ndarray) -> np.ndarray:
    """The rows of a map over the concatenated columns that are not all zero.

    A pair's map is zero outside its source and target columns; products with
    these rows only skip the other models' columns.
    """
    return np.flatnonzero(np.any(linear_map != 0, axis=1))


def rms_of_map(factor: np.ndarray, linear_map: np.ndarray, count: int) -> float:
    """``sqrt(mean_i ||z_i M||^2)`` over a subset, from its factor (used rows of M only)."""
    used = used_rows(linear_map)
    return float(np.sqrt(np.sum((factor[:, used] @ linear_map[used]) ** 2) / count))
