"""How the GPU check compares the device path with the CPU path: relative differences and
their targets, and the numbers brought back from a cluster to compare."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np

from fredask.backend import to_host

#: Float64 agreement target of the device path with the CPU path (relative).
TARGET = 1e-10


#: Extraction runs float32 models: the agreement target is float32 rounding.
EXTRACTION_TARGET = 1e-4


def max_relative(got, want) -> float:
    """``max |got - want| / |want|`` elementwise (``want`` zero: the absolute difference)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"shapes differ: {got.shape} and {want.shape}")
    scale = np.where(want != 0, np.abs(want), 1.0)
    return float(np.max(np.abs(got - want) / scale)) if got.size else float("nan")


def column_relative(got, want) -> float:
    """``max |got - want|`` over each column's largest ``|want|`` (cumulants' columns differ
    by orders of magnitude)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = np.abs(want).max(axis=0)
    return float(np.max(np.abs(got - want) / np.where(scale > 0, scale, 1.0)))


def block_sum(block) -> float:
    """The sum of a numpy, CuPy or torch block, as a Python float (on its device)."""
    return float(block.sum())


def computed_sum(client, array: da.Array) -> float:
    """Every block of ``array`` computed on ``client`` and reduced to one number."""
    parts = [dask.delayed(block_sum, pure=False)(b) for b in array.to_delayed().ravel()]
    return float(sum(client.compute(parts, sync=True)))


def host_rows(client, array: da.Array, stop: int) -> np.ndarray:
    """The first ``stop`` rows of ``array`` as numpy, whatever its blocks' module."""
    head = array[:stop]
    meta = np.empty((0,) * head.ndim, dtype=head.dtype)
    return np.asarray(client.compute(head.map_blocks(to_host, meta=meta), sync=True))


def off_diagonal(matrix: np.ndarray) -> np.ndarray:
    """The off-diagonal entries of a square matrix."""
    return matrix[~np.eye(len(matrix), dtype=bool)]


def matrix_agreement(got: np.ndarray, want: np.ndarray) -> dict:
    """Off-diagonal relative and diagonal absolute differences of two GFRE matrices."""
    return {
        "max_relative": max_relative(off_diagonal(got), off_diagonal(want)),
        "diagonal_max_abs": float(np.max(np.abs(np.diag(got) - np.diag(want)))),
    }
