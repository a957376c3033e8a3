"""Structures: reading them with ASE, fingerprinting them, and their table.

The structure table is what makes rows of different models comparable: each
structure has a fingerprint (a hash of atomic numbers, positions, cell and
pbc), so two stores or two runs can be checked for describing the same
structures in the same order before any feature is written or compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fredask.errors import FredaskError
from fredask.store.properties import property_table


class StructureFileError(FredaskError, ValueError):
    """A structure file cannot be read or holds no structures."""


def fingerprint(atoms) -> np.uint64:
    """A 64-bit hash of atomic numbers, positions, cell and pbc (exact bytes)."""
    return fingerprint_of(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)


def fingerprint_of(numbers, positions, cell, pbc) -> np.uint64:
    """:func:`fingerprint` of a structure given as arrays (as the store holds it)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.ascontiguousarray(numbers, dtype="<i4").tobytes())
    digest.update(np.ascontiguousarray(positions, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(cell, dtype="<f8").tobytes())
    digest.update(np.ascontiguousarray(pbc, dtype="u1").tobytes())
    return np.frombuffer(digest.digest(), dtype="<u8")[0]


def file_hash(path: str | Path) -> str:
    """``blake2b`` hash of a file (a checkpoint, an ingested features file) for provenance."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StructureTable:
    """Per-structure and per-atom description of an ordered set of structures.

    Attributes
    ----------
    n_atoms, offset : numpy.ndarray of int64, shape (n_structures,)
        Atom count and first atom row of each structure (atoms are contiguous).
    fingerprint : numpy.ndarray of uint64, shape (n_structures,)
    subset : numpy.ndarray of str, shape (n_structures,)
        ``atoms.info["subset"]`` (or a user column); ``""`` when absent.
    source_file : numpy.ndarray of str, shape (n_structures,)
    source_index : numpy.ndarray of int64, shape (n_structures,)
        Index of the structure in its source file.
    cell : numpy.ndarray of float64, shape (n_structures, 3, 3)
    pbc : numpy.ndarray of bool, shape (n_structures, 3)
    numbers : numpy.ndarray of int16, shape (n_atoms_total,)
    positions : numpy.ndarray of float64, shape (n_atoms_total, 3)
    property_names : numpy.ndarray of str, shape (n_properties,)
        Numeric per-structure properties read with the structures
        (:mod:`fredask.store.properties`: ``atoms.info`` numbers, the
        calculator's energy, ``energy_per_atom``); default none.
    properties : numpy.ndarray of float64, shape (n_structures, n_properties)
        Their values, NaN where a structure has none.
    """

    n_atoms: np.ndarray
    offset: np.ndarray
    fingerprint: np.ndarray
    subset: np.ndarray
    source_file: np.ndarray
    source_index: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    numbers: np.ndarray
    positions: np.ndarray
    property_names: np.ndarray | None = None
    properties: np.ndarray | None = None

    def __post_init__(self):
        names = np.array([] if self.property_names is None else self.property_names, dtype=str)
        values = self.properties
        if values is None:
            values = np.full((self.n_structures, names.size), np.nan)
        values = np.asarray(values, dtype=np.float64)
        if values.shape != (self.n_structures, names.size):
            raise ValueError(
                f"properties of shape {values.shape}; expected {(self.n_structures, names.size)} "
                f"for {self.n_structures} structures and properties {names.tolist()}"
            )
        object.__setattr__(self, "property_names", names)
        object.__setattr__(self, "properties", values)

    @property
    def n_structures(self) -> int:
        return int(self.n_atoms.shape[0])

    @property
    def n_atoms_total(self) -> int:
        return int(self.numbers.shape[0])

    @classmethod
    def from_atoms(
        cls,
        structures: Sequence,
        source_file: Sequence[str] | str = "",
        source_index: Sequence[int] | None = None,
        subset: Sequence[str] | str | None = None,
    ) -> StructureTable:
        """Build the table of a list of ``ase.Atoms``.

        Parameters
        ----------
        structures : sequence of ase.Atoms
        source_file : str or sequence of str
            File each structure came from.
        source_index : sequence of int, optional
            Index in that file (default: position in ``structures``).
        subset : str, sequence of str or None
            Subset label of each structure; default ``atoms.info["subset"]``.

        The numeric properties of every structure (``atoms.info`` numbers, the
        calculator's results, ``energy_per_atom``) are recorded as well
        (:func:`fredask.store.properties.property_table`).
        """
        n = len(structures)
        if n == 0:
            raise ValueError("no structures given")
        empty = [i for i, a in enumerate(structures) if len(a) == 0]
        if empty:
            raise ValueError(f"structures {empty[:5]} have no atoms")
        n_atoms = np.array([len(a) for a in structures], dtype=np.int64)
        if subset is None:
            subset = [str(a.info.get("subset", "")) for a in structures]
        property_names, properties = property_table(structures)
        return cls(
            n_atoms=n_atoms,
            offset=np.concatenate([[0], np.cumsum(n_atoms)[:-1]]).astype(np.int64),
            fingerprint=np.array([fingerprint(a) for a in structures], dtype=np.uint64),
            subset=np.array(_broadcast(subset, n), dtype=str),
            source_file=np.array(_broadcast(source_file, n), dtype=str),
            source_index=np.asarray(
                range(n) if source_index is None else source_index, dtype=np.int64
            ),
            cell=np.array([a.cell.array for a in structures], dtype=np.float64),
            pbc=np.array([a.pbc for a in structures], dtype=bool),
            numbers=np.concatenate([a.numbers for a in structures]).astype(np.int16),
            positions=np.concatenate([a.positions for a in structures]).astype(np.float64),
            property_names=property_names,
            properties=properties,
        )

    def atoms(self, index: int):
        """Rebuild structure ``index`` as ``ase.Atoms`` (its subset and properties in ``info``)."""
        import ase

        start = int(self.offset[index])
        stop = start + int(self.n_atoms[index])
        atoms = ase.Atoms(
            numbers=self.numbers[start:stop],
            positions=self.positions[start:stop],
            cell=self.cell[index],
            pbc=self.pbc[index],
        )
        atoms.info["subset"] = str(self.subset[index])
        for name, value in zip(self.property_names, self.properties[index], strict=True):
            if not np.isnan(value):
                atoms.info[str(name)] = float(value)
        return atoms

    def structures_overlapping(self, start: int, stop: int) -> range:
        """Indices of the structures with atoms in rows ``[start, stop)``."""
        return structures_overlapping(self.offset, start, stop)


def structures_overlapping(offset: np.ndarray, start: int, stop: int) -> range:
    """Indices of the structures (first rows ``offset``) with atoms in rows ``[start, stop)``."""
    first = int(np.searchsorted(offset, start, side="right")) - 1
    last = int(np.searchsorted(offset, stop - 1, side="right"))
    return range(max(first, 0), last)


def _broadcast(value, n: int) -> list:
    if isinstance(value, str):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise ValueError(f"expected {n} values, got {len(value)}")
    return value


def read_structures(paths: Iterable[str | Path], index: str = ":") -> StructureTable:
    """Read every structure of the given files (any format ASE reads).

    Raises
    ------
    StructureFileError
        Naming the file that is missing, unreadable or empty.
    """
    import ase.io

    structures, files, indices = [], [], []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise StructureFileError(f"{path}: no such file")
        try:
            read = ase.io.read(path, index=index)
        except Exception as error:  # ASE raises many types for bad files
            raise StructureFileError(f"{path}: cannot read structures ({error})") from error
        read = read if isinstance(read, list) else [read]
        if not read:
            raise StructureFileError(f"{path}: holds no structures")
        structures += read
        files += [str(path)] * len(read)
        indices += list(range(len(read)))
    return StructureTable.from_atoms(structures, source_file=files, source_index=indices)
