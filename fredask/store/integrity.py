"""Checks that a store's arrays hold what their metadata promises.

Every array of a format-2 store is written with a CRC-32C checksum after its
compressor (Zarr's own ``Crc32cCodec``), so a flipped bit in a chunk file fails
the read instead of returning a wrong number.  This module turns those
failures, and the ones a checksum cannot see (a deleted chunk file reads as the
fill value; an edited ``zarr.json``), into one line naming the array and the
chunk file:

* :func:`missing_chunk_files`: chunk files an array should have and has not
  (a listing, no reads: the cheap check on open);
* :func:`damaged_chunks`: every chunk read and decoded (what ``verify`` does);
* :class:`ChunkReader`: the reader the comparison passes use, which reports a
  damaged chunk as damaged, naming its file, not as NaN features.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr
import zarr.codecs

from fredask.errors import FredaskError


class DamagedChunkError(FredaskError, OSError):
    """A stored chunk fails its checksum, cannot be decoded, or is missing."""


def checksummed(compress: bool = True) -> list:
    """The compressor chain of every store array: Zstd (optional), then CRC-32C."""
    return (
        [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]
        if compress
        else [zarr.codecs.Crc32cCodec()]
    )


def has_checksum(array: zarr.Array) -> bool:
    """Whether ``array``'s codec chain ends in a CRC-32C checksum."""
    return any(isinstance(c, zarr.codecs.Crc32cCodec) for c in array.compressors)


def chunk_grid(array: zarr.Array) -> Iterator[tuple[int, ...]]:
    """Every chunk index of ``array``, in C order."""
    counts = [-(-n // c) for n, c in zip(array.shape, array.chunks, strict=True)]
    return itertools.product(*(range(n) for n in counts))


def chunk_file(root: Path, array: zarr.Array, index: tuple[int, ...]) -> Path:
    """The file of chunk ``index`` of ``array`` in the local store at ``root``."""
    key = array.metadata.encode_chunk_key(index)
    return root / array.path / key


def missing_chunk_files(root: str | Path, array: zarr.Array) -> list[Path]:
    """Chunk files of ``array`` that do not exist (a written array has them all).

    A listing of the array's folder, no reads.  Only meaningful for arrays
    every chunk of which was written (complete features, structure tables).
    """
    root = Path(root)
    present = set()
    base = root / array.path
    for folder, _dirs, files in os.walk(base):
        present.update(os.path.relpath(os.path.join(folder, f), base) for f in files)
    return [
        chunk_file(root, array, index)
        for index in chunk_grid(array)
        if array.metadata.encode_chunk_key(index) not in present
    ]


def read_chunk(root: Path, array: zarr.Array, index: tuple[int, ...]) -> np.ndarray:
    """Chunk ``index`` of ``array``, or :class:`DamagedChunkError` naming its file."""
    try:
        return _decode(root, array, index)
    except DamagedChunkError as error:
        raise DamagedChunkError(f"{error}; run `fredask verify {root}`") from error.__cause__


def _decode(root: Path, array: zarr.Array, index: tuple[int, ...]) -> np.ndarray:
    """Chunk ``index`` of ``array``; :class:`DamagedChunkError` with the bare problem line."""
    selection = tuple(
        slice(i * c, min((i + 1) * c, n))
        for i, c, n in zip(index, array.chunks, array.shape, strict=True)
    )
    try:
        return array[selection]
    except Exception as error:  # checksum mismatch, zstd or shape errors, OSError
        raise DamagedChunkError(
            f"{chunk_file(root, array, index)}: damaged chunk of {array.path} ({_reason(error)})"
        ) from error


def damaged_chunks(
    root: str | Path, array: zarr.Array, threads: int = 4, inspect=None
) -> list[str]:
    """One line per chunk of ``array`` that is missing or fails to decode.

    Reads every chunk (in ``threads`` threads: decoding releases the GIL);
    ``inspect(index, values)``, if given, is called with every decoded chunk
    (from those threads), so further checks of the values need no second read.
    """
    root = Path(root)
    missing = set(missing_chunk_files(root, array))
    problems = [f"{path}: chunk file of {array.path} is missing" for path in sorted(missing)]

    def check(index):
        if chunk_file(root, array, index) in missing:
            return None
        try:
            values = _decode(root, array, index)
        except DamagedChunkError as error:
            return str(error)
        if inspect is not None:
            inspect(index, values)
        return None

    with ThreadPoolExecutor(threads) as pool:
        problems += [p for p in pool.map(check, chunk_grid(array)) if p]
    return problems


class ChunkReader:
    """Reads rows of a stored array; a damaged chunk raises naming its file.

    What :func:`dask.array.from_array` wraps for the comparison passes
    (:func:`fredask.stats.features.from_zarr_in_tasks`).  Written here rather
    than using :func:`dask.array.from_zarr` directly because Zarr's checksum
    error names neither the array nor the chunk file, and a missing chunk file
    reads silently as the fill value (NaN).
    """

    def __init__(
        self, array: zarr.Array, root: str | Path | None = None, every_chunk: bool | None = None
    ):
        self.array = array
        local = root is not None or getattr(array.store, "root", None) is not None
        self.root = store_root(array) if root is None else Path(root)
        # fredask writes every chunk of a complete array (write_empty_chunks), so
        # a missing file there is damage; elsewhere it may be a fill-value chunk
        if every_chunk is None:
            every_chunk = array.attrs.get("complete") is True
        self.every_chunk = local and every_chunk
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def token(self) -> str:
        """A name for the Dask graph: the same array in the same place, the same name."""
        from dask.base import tokenize

        return tokenize(str(self.root), self.array.path, self.shape, str(self.dtype))

    def _chunks_of(self, selection) -> list[tuple[int, ...]]:
        ranges = []
        for axis, (n, c) in enumerate(zip(self.shape, self.array.chunks, strict=True)):
            part = selection[axis] if axis < len(selection) else slice(None)
            start, stop, _ = part.indices(n)
            ranges.append(range(start // c, -(-stop // c)))
        return list(itertools.product(*ranges))

    def __getitem__(self, selection):
        selection = selection if isinstance(selection, tuple) else (selection,)
        indices = self._chunks_of(selection)
        if self.every_chunk:
            for index in indices:
                path = chunk_file(self.root, self.array, index)
                if not path.exists():
                    raise DamagedChunkError(
                        f"{path}: chunk file of {self.array.path} is missing; "
                        f"run `fredask verify {self.root}`"
                    )
        try:
            return self.array[selection]
        except Exception as error:
            for index in indices:  # name the chunk that fails
                read_chunk(self.root, self.array, index)
            raise DamagedChunkError(f"{self.root}/{self.array.path}: {_reason(error)}") from error


def store_root(array: zarr.Array) -> Path:
    """The folder of the local store ``array`` lives in (``Path()`` for other stores)."""
    root = getattr(array.store, "root", None)
    return Path(root) if root is not None else Path()


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "checksum" in text.lower():
        return "checksum mismatch"
    return text[:200]
