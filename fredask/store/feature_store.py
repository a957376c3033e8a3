"""The feature store: per-atom features of many models in one Zarr v3 group.

Layout (format version 1; every array has dimension names, so
``xarray.open_zarr(path, group="structures")`` and ``group="features"`` work)::

    /                       attrs["fredask"] = {"format_version": 1, "chunk_rows": C, ...}
    structures/n_atoms      (structure,)           int64
    structures/offset       (structure,)           int64   first atom row
    structures/fingerprint  (structure,)           uint64  hash of numbers, positions, cell, pbc
    structures/subset       (structure,)           str
    structures/source_file  (structure,)           str
    structures/source_index (structure,)           int64
    structures/cell         (structure, 3, 3)      float64
    structures/pbc          (structure, 3)         bool
    structures/numbers      (atom,)                int16   atomic numbers
    structures/positions    (atom, 3)              float64
    features/<name>         (atom, <name>_feature) float32 or float64, chunks (C, n_features)
    progress/<name>         (chunk,)               uint8   1 once a row chunk is written
    structure_features/<name>/cumulants  (structure, <name>_cumulant)  float64
                            per-structure cumulants of features/<name> (fredask.structure.stored)

All feature arrays share the row chunking ``C``, so the engine reads one chunk
of every model at a time.  A features array is listed as complete only when
every row chunk has been written (``attrs["complete"]``); an interrupted
extraction leaves it incomplete and resumes from ``progress/<name>``.
"""

from __future__ import annotations

import datetime
import fcntl
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from fredask.errors import FredaskError
from fredask.store.structures import StructureTable, structures_overlapping

FORMAT_VERSION = 1
DEFAULT_CHUNK_ROWS = 32_768
#: The group of structure-level arrays (``structure_features/<name>/<kind>``).
STRUCTURE_GROUP = "structure_features"
_TABLE_FIELDS = ("n_atoms", "offset", "fingerprint", "subset", "source_file", "source_index")
_DIMENSIONS = {
    "cell": ("structure", "cell_vector", "xyz"),
    "pbc": ("structure", "cell_vector"),
    "numbers": ("atom",),
    "positions": ("atom", "xyz"),
}


class StoreError(FredaskError, ValueError):
    """The path is not a (readable) fredask store, or the request does not fit it."""


def default_chunk_rows(n_atoms: int) -> int:
    """Rows per chunk: 32768, but at least 8 chunks (of >= 1024 rows) for small stores."""
    per_eight = -(-n_atoms // 8)
    return int(min(DEFAULT_CHUNK_ROWS, max(1024, -(-per_eight // 1024) * 1024)))


class FeatureStore:
    """A fredask feature store (see the module docstring for the layout).

    Use :meth:`create` or :meth:`open`, not the constructor.
    """

    def __init__(self, group: zarr.Group, path: Path):
        self.group = group
        self.path = path

    # -- opening -------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        structures: StructureTable,
        chunk_rows: int | None = None,
        overwrite: bool = False,
    ) -> FeatureStore:
        """Create a store holding the structure table and no features yet."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} exists; open it, or pass overwrite=True")
        chunk_rows = chunk_rows or default_chunk_rows(structures.n_atoms_total)
        group = zarr.open_group(path, mode="w")
        table = group.create_group("structures")
        n_s = structures.n_structures
        per_structure = {name: getattr(structures, name) for name in _TABLE_FIELDS}
        per_structure |= {"cell": structures.cell, "pbc": structures.pbc}
        for name, values in per_structure.items():
            chunks = (min(n_s, 2**20), *values.shape[1:])
            _write_array(table, name, values, _DIMENSIONS.get(name, ("structure",)), chunks)
        for name in ("numbers", "positions"):
            values = getattr(structures, name)
            chunks = (chunk_rows * 4, *values.shape[1:])
            _write_array(table, name, values, _DIMENSIONS[name], chunks)
        group.create_group("features")
        group.create_group("progress")
        group.attrs["fredask"] = {
            "format_version": FORMAT_VERSION,
            "chunk_rows": chunk_rows,
            "n_structures": n_s,
            "n_atoms": structures.n_atoms_total,
            "created": _now(),
        }
        return cls(group, path)

    @classmethod
    def open_or_create(
        cls, path: str | Path, structures: StructureTable, what: str = "the structures"
    ) -> FeatureStore:
        """Open ``path`` for appending if it exists (checking that it holds
        ``structures``, described as ``what`` in errors), else create it."""
        if Path(path).exists():
            store = cls.open(path, mode="a")
            store.check_fingerprints(structures.fingerprint, what=what)
            return store
        return cls.create(path, structures)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> FeatureStore:
        """Open an existing store (``mode="r"`` or ``"a"``), checking its format."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such store")
        try:
            group = zarr.open_group(path, mode=mode)
        except Exception as error:
            raise StoreError(f"{path}: not a Zarr group ({error})") from error
        meta = group.attrs.get("fredask")
        if not isinstance(meta, dict) or "format_version" not in meta:
            raise StoreError(f"{path}: not a fredask store (no 'fredask' attributes)")
        if meta["format_version"] > FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format version {meta['format_version']} is newer than this "
                f"fredask understands ({FORMAT_VERSION}); upgrade fredask"
            )
        return cls(group, path)

    # -- structures ----------------------------------------------------------------
    @property
    def chunk_rows(self) -> int:
        return int(self.group.attrs["fredask"]["chunk_rows"])

    @property
    def n_atoms(self) -> int:
        return int(self.group.attrs["fredask"]["n_atoms"])

    @property
    def n_structures(self) -> int:
        return int(self.group.attrs["fredask"]["n_structures"])

    @property
    def n_chunks(self) -> int:
        return -(-self.n_atoms // self.chunk_rows)

    def chunk_bounds(self, index: int) -> tuple[int, int]:
        """Rows ``[start, stop)`` of row chunk ``index``."""
        start = index * self.chunk_rows
        return start, min(start + self.chunk_rows, self.n_atoms)

    def structure_table(self) -> StructureTable:
        """The whole structure table, in memory."""
        table = self.group["structures"]
        return StructureTable(**{name: _read(table[name]) for name in table.array_keys()})

    def structures(self) -> pd.DataFrame:
        """Per-structure table (no per-atom columns) as a DataFrame."""
        table = self.group["structures"]
        return pd.DataFrame({name: _read(table[name]) for name in _TABLE_FIELDS}).rename_axis(
            "structure"
        )

    def structures_in_rows(self, start: int, stop: int) -> list:
        """``ase.Atoms`` of the structures with atoms in rows ``[start, stop)``.

        Reads only those structures' rows of the table (not the whole table),
        so a task's cost does not grow with the store.  Each has
        ``info["structure_index"]``, ``info["first_row"]`` and ``info["subset"]`` set.
        """
        import ase

        table = self.group["structures"]
        offset = table["offset"][:]
        overlapping = structures_overlapping(offset, start, stop)
        first, last = overlapping.start, overlapping.stop
        n_atoms = table["n_atoms"][first:last]
        row0, row1 = int(offset[first]), int(offset[last - 1] + n_atoms[-1])
        numbers, positions = table["numbers"][row0:row1], table["positions"][row0:row1]
        cells, pbcs = table["cell"][first:last], table["pbc"][first:last]
        subsets = _read(table["subset"])[first:last] if last > first else []
        out = []
        for i, s in enumerate(range(first, last)):
            lo = int(offset[s]) - row0
            atoms = ase.Atoms(
                numbers=numbers[lo : lo + n_atoms[i]],
                positions=positions[lo : lo + n_atoms[i]],
                cell=cells[i],
                pbc=pbcs[i],
            )
            atoms.info.update(subset=str(subsets[i]), structure_index=s, first_row=int(offset[s]))
            out.append(atoms)
        return out

    def n_atoms_per_structure(self) -> np.ndarray:
        """The atom count of every structure, in row order (int64)."""
        return self.group["structures"]["n_atoms"][:].astype(np.int64)

    @property
    def attrs(self) -> zarr.core.attributes.Attributes:
        """User attributes of the store (free-form; fredask's own live under ``"fredask"``)."""
        return self.group.attrs

    def atom_subsets(self) -> np.ndarray:
        """The subset label of every atom (its structure's), for stratified splits."""
        table = self.group["structures"]
        return np.repeat(_read(table["subset"]), table["n_atoms"][:])

    def check_fingerprints(self, fingerprints: np.ndarray, what: str = "structures") -> None:
        """Refuse ``fingerprints`` that differ from the store's, naming the first mismatch."""
        own = self.group["structures"]["fingerprint"][:]
        fingerprints = np.asarray(fingerprints, dtype=np.uint64)
        if fingerprints.shape != own.shape:
            raise StoreError(
                f"{what} describe {fingerprints.shape[0]} structures, the store "
                f"{self.path} holds {own.shape[0]}"
            )
        differ = np.flatnonzero(fingerprints != own)
        if differ.size:
            raise StoreError(
                f"{what} differ from the store {self.path} at {differ.size} structures, "
                f"first at structure {int(differ[0])}: not the same structures in the same order"
            )

    # -- features ------------------------------------------------------------------
    def feature_names(self, complete_only: bool = True) -> list[str]:
        """Models with features in the store (by default only complete ones)."""
        features = self.group["features"]
        return sorted(
            name
            for name in features.array_keys()
            if not complete_only or features[name].attrs.get("complete", False)
        )

    def has_features(self, name: str) -> bool:
        """Whether a features array (complete or not) named ``name`` exists."""
        return name in self.group["features"]

    def features(self, name: str) -> zarr.Array:
        """The features array of model ``name``."""
        if name not in self.group["features"]:
            raise StoreError(f"{self.path}: no features named {name!r}")
        return self.group["features"][name]

    def feature_arrays(self, names=None) -> dict[str, zarr.Array]:
        """Complete features arrays, by name, for the comparison engine."""
        names = self.feature_names() if names is None else list(names)
        incomplete = [n for n in names if not self.features(n).attrs.get("complete", False)]
        if incomplete:
            raise StoreError(f"{self.path}: features {incomplete} are incomplete; resume them")
        return {name: self.features(name) for name in names}

    def skipped_structures(self, names=None) -> np.ndarray:
        """Sorted structures that some model in ``names`` skipped (``skip_errors``)."""
        names = self.feature_names() if names is None else names
        skipped = {s["structure"] for n in names for s in self.features(n).attrs.get("skipped", [])}
        return np.array(sorted(skipped), dtype=np.int64)

    def usable_structures(self, names=None) -> np.ndarray:
        """Structures that no model in ``names`` skipped."""
        return np.setdiff1d(np.arange(self.n_structures), self.skipped_structures(names))

    def usable_rows(self, names=None) -> np.ndarray:
        """Rows of structures that no model in ``names`` skipped (``skip_errors``)."""
        skipped = self.skipped_structures(names)
        keep = np.ones(self.n_atoms, dtype=bool)
        table = self.group["structures"]
        offset, n_atoms = table["offset"][:], table["n_atoms"][:]
        for s in skipped:
            keep[offset[s] : offset[s] + n_atoms[s]] = False
        return np.flatnonzero(keep)

    def create_features(
        self, name: str, n_features: int, dtype, metadata: Mapping[str, object]
    ) -> zarr.Array:
        """Create (or reopen, when it matches) an empty features array for ``name``.

        Reopening an incomplete array with the same shape, dtype and model
        metadata is how an interrupted extraction resumes.
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise StoreError(f"features must be float32 or float64, got {dtype}")
        features = self.group["features"]
        if name in features:
            existing = features[name]
            same = (
                existing.shape == (self.n_atoms, n_features)
                and existing.dtype == dtype
                and existing.attrs.get("model") == metadata.get("model")
            )
            if not same:
                raise StoreError(
                    f"{self.path}: features {name!r} exist with shape {existing.shape}, "
                    f"dtype {existing.dtype}, model {existing.attrs.get('model')!r}; "
                    "choose another name or delete them"
                )
            return existing
        array = features.create_array(
            name,
            shape=(self.n_atoms, n_features),
            chunks=(self.chunk_rows, n_features),
            dtype=dtype,
            fill_value=np.nan,
            dimension_names=("atom", f"{name}_feature"),
        )
        array.attrs.update({**metadata, "dtype": str(dtype), "created": _now(), "complete": False})
        progress = self.group["progress"].create_array(
            name,
            shape=(self.n_chunks,),
            chunks=(1,),
            dtype="uint8",
            fill_value=0,
            dimension_names=("chunk",),
        )
        progress.attrs["chunk_rows"] = self.chunk_rows
        return array

    def pending_chunks(self, name: str) -> list[int]:
        """Row chunks of ``name`` not written yet."""
        return [int(i) for i in np.flatnonzero(self.group["progress"][name][:] == 0)]

    def write_chunk(self, name: str, index: int, values: np.ndarray) -> None:
        """Write row chunk ``index`` of ``name``, then mark it done.

        One call writes exactly one Zarr chunk, so tasks writing different
        chunks never touch the same object.
        """
        start, stop = self.chunk_bounds(index)
        array = self.features(name)
        if values.shape != (stop - start, array.shape[1]):
            raise StoreError(
                f"chunk {index} of {name!r} needs shape {(stop - start, array.shape[1])}, "
                f"got {values.shape}"
            )
        array[start:stop] = values
        self.group["progress"][name][index] = 1

    def finish_features(self, name: str) -> None:
        """Mark ``name`` complete once every chunk is written."""
        pending = self.pending_chunks(name)
        if pending:
            raise StoreError(f"features {name!r} still miss {len(pending)} chunks")
        self.features(name).attrs["complete"] = True

    def add_features(
        self, name: str, values, metadata: Mapping[str, object], fingerprints=None
    ) -> zarr.Array:
        """Write a whole in-memory (or Dask) array of features for model ``name``."""
        if fingerprints is not None:
            self.check_fingerprints(fingerprints, what=f"features {name!r}")
        if values.ndim != 2 or values.shape[0] != self.n_atoms:
            raise StoreError(
                f"features {name!r} have shape {values.shape}; the store holds {self.n_atoms} atoms"
            )
        self.create_features(name, values.shape[1], values.dtype, metadata)
        for index in self.pending_chunks(name):
            start, stop = self.chunk_bounds(index)
            block = np.asarray(values[start:stop])
            if not np.isfinite(block).all():
                bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                raise StoreError(f"features {name!r} hold NaN or infinite values (row {bad})")
            self.write_chunk(name, index, block)
        self.finish_features(name)
        return self.features(name)

    @contextmanager
    def writing(self, name: str) -> Iterator[None]:
        """Hold the store's write lock for ``name``; a second writer is refused."""
        lock_path = self.path / f".lock-{name}"
        handle = open(lock_path, "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"{self.path}: another process is writing features {name!r}; wait for it or stop it"
            ) from None
        try:
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    # -- structure-level features -------------------------------------------------
    def structure_features(self, name: str, kind: str = "cumulants") -> zarr.Array | None:
        """The stored structure-level array ``structure_features/<name>/<kind>``, or None."""
        key = f"{STRUCTURE_GROUP}/{name}/{kind}"
        return self.group[key] if key in self.group else None

    def structure_feature_names(self, kind: str = "cumulants") -> list[str]:
        """Models with a complete structure-level array of ``kind``."""
        if STRUCTURE_GROUP not in self.group:
            return []
        names = sorted(self.group[STRUCTURE_GROUP].group_keys())
        return [
            n
            for n in names
            if (a := self.structure_features(n, kind)) is not None and a.attrs.get("complete")
        ]

    def create_structure_features(
        self,
        name: str,
        kind: str,
        n_columns: int,
        chunk_structures: int,
        attributes: Mapping[str, object],
        compressors=None,
    ) -> zarr.Array:
        """Create (replacing any old one) an empty, incomplete ``(structure, column)`` array.

        ``compressors=None`` stores it uncompressed; the caller marks it
        complete (``attrs["complete"] = True``) once every chunk is written.
        """
        array = (
            self.group.require_group(STRUCTURE_GROUP)
            .require_group(name)
            .create_array(
                kind,
                shape=(self.n_structures, n_columns),
                chunks=(chunk_structures, n_columns),
                dtype="float64",
                fill_value=float("nan"),
                compressors=compressors,
                dimension_names=("structure", f"{name}_{kind.removesuffix('s')}"),
                overwrite=True,
            )
        )
        array.attrs.update({**attributes, "created": _now(), "complete": False})
        return array

    # -- summary -------------------------------------------------------------------
    def info(self) -> str:
        """A human-readable summary of the store."""
        lines = [
            f"fredask store {self.path} (format {self.group.attrs['fredask']['format_version']})",
            f"  {self.n_structures} structures, {self.n_atoms} atoms, "
            f"{self.n_chunks} row chunks of {self.chunk_rows}",
        ]
        subsets = pd.Series(self.group["structures"]["subset"][:]).value_counts()
        if len(subsets):
            lines.append(
                "  subsets: " + ", ".join(f"{k or '(none)'} {v}" for k, v in subsets.items())
            )
        for name in self.feature_names(complete_only=False):
            array = self.features(name)
            attrs = array.attrs
            missing = len(self.pending_chunks(name))
            state = (
                "complete" if attrs.get("complete") else f"INCOMPLETE ({missing} chunks missing)"
            )
            lines.append(
                f"  features/{name}: {array.shape[1]} x {array.dtype}, "
                f"model {attrs.get('model', '?')}, {state}"
            )
        structure_features = self.group.get(STRUCTURE_GROUP)
        for name, group in sorted(structure_features.groups() if structure_features else []):
            if "cumulants" in group:
                attrs = group["cumulants"].attrs
                state = "complete" if attrs.get("complete") else "INCOMPLETE"
                lines.append(
                    f"  structure_features/{name}/cumulants: orders 1..{attrs.get('order')} "
                    f"({attrs.get('kappa8')} kappa_8) of {attrs.get('n_features')} features, "
                    f"{state}"
                )
        return "\n".join(lines)


def group_attributes(path: str | Path) -> dict | None:
    """The attributes of the Zarr group at ``path``, or None where there is none."""
    try:
        return dict(zarr.open_group(path, mode="r").attrs)
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        return None


def create_group_features(
    path: str | Path, names, n_rows: int, n_features: int, chunk_rows: int
) -> dict[str, zarr.Array]:
    """A new plain Zarr group (no structure table) of empty float32 ``features/<name>`` arrays.

    The layout :func:`group_features` reads: zstd-compressed, chunks of
    ``chunk_rows`` rows; the caller writes the rows, then marks the group with
    its attributes (:func:`set_group_attributes`).
    """
    group = zarr.open_group(path, mode="w")
    return {
        name: group.create_array(
            f"features/{name}",
            shape=(n_rows, n_features),
            chunks=(chunk_rows, n_features),
            dtype="float32",
            compressors=zarr.codecs.ZstdCodec(),
        )
        for name in names
    }


def set_group_attributes(path: str | Path, attributes: Mapping[str, object]) -> None:
    """Add ``attributes`` to the Zarr group at ``path``."""
    zarr.open_group(path, mode="a").attrs.update(attributes)


def group_features(path: str | Path) -> dict[str, zarr.Array]:
    """The arrays under ``features/`` of any Zarr group laid out like a store, by name.

    For plain groups that are not fredask stores (no structure table), such as
    the synthetic stores of the benchmarks.
    """
    group = zarr.open_group(path, mode="r")
    if "features" not in group:
        raise StoreError(f"{path}: no 'features' group; is this a fredask store?")
    return dict(sorted(group["features"].arrays()))


def _write_array(group: zarr.Group, name: str, values: np.ndarray, dims, chunks) -> None:
    dtype = str if values.dtype.kind == "U" else values.dtype
    array = group.create_array(
        name, shape=values.shape, chunks=chunks, dtype=dtype, dimension_names=dims
    )
    array[...] = values


def _read(array: zarr.Array) -> np.ndarray:
    """All of ``array``; variable-length strings as fixed-width ``str``."""
    values = array[...]
    return np.array(values.tolist(), dtype=str) if values.dtype.kind == "T" else values


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
