"""The feature store: per-atom features of many models in one Zarr v3 group.

Layout (format version 2; every array has dimension names, so
``xarray.open_zarr(path, group="structures")`` and ``group="features"`` work,
and the metadata is consolidated, so they open without warnings)::

    /                       attrs["fredask"] = {"format_version": 2, "chunk_rows": C, ...}
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
    structures/property_names (property,)          str     numeric per-structure properties
    structures/properties   (structure, property)  float64 read with the structures (energy,
                            energy_per_atom, atoms.info numbers; NaN where missing); only
                            where the structures had any (fredask.store.properties)
    features/<name>         (atom, <name>_feature) float32 or float64, chunks (C, n_features)
    progress/<name>         (chunk,)               uint8   1 once a row chunk is written
    structure_features/<name>/cumulants  (structure, <name>_cumulant)  float64
                            per-structure cumulants of features/<name> (fredask.structure.stored)
    staging/features/<name>, staging/progress/<name>
                            features being written (an extraction, an ingest, an overwrite)
    locks/<name>            an empty group whose zarr.json a writer of <name> locks

Integrity.  Every array ends its codec chain in a CRC-32C checksum, and every
chunk is written (also chunks equal to the fill value), so a flipped bit or a
deleted chunk file is found (:mod:`fredask.store.integrity`) instead of read as
numbers.  ``progress/<name>`` records the shape, chunks, dtype and source the
features array must have, so an edited ``zarr.json`` is found too.

Provenance.  Every features array records its ``source`` (the ingested file's
hash and key, or the model, checkpoint hash, layer and settings of an
extraction) and ``source_id``, a hash of it.  Writing a name again from the same
source is skipped; from another source it is refused unless ``overwrite=True``.

Atomic writes.  Features are written under ``staging/`` and moved into
``features/`` (replacing an old array) only once every row chunk is written, so
``features/`` holds only complete arrays and an overwrite never leaves a mix.
An interrupted extraction resumes from ``staging/progress/<name>``, only from
the same source.  All feature arrays share the row chunking ``C``, so the engine
reads one chunk of every model at a time.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from fredask.errors import FredaskError
from fredask.store.checks import (
    STAGING,
    STRUCTURE_GROUP,
    TABLE_FIELDS,
    check_features,
    check_store,
    verify_store,
)
from fredask.store.integrity import ChunkReader, checksummed, missing_chunk_files
from fredask.store.provenance import describe_source, model_source, source_id
from fredask.store.structures import StructureTable, structures_overlapping

FORMAT_VERSION = 2
DEFAULT_CHUNK_ROWS = 32_768
_DIMENSIONS = {
    "cell": ("structure", "cell_vector", "xyz"),
    "pbc": ("structure", "cell_vector"),
    "numbers": ("atom",),
    "positions": ("atom", "xyz"),
    "property_names": ("property",),
    "properties": ("structure", "property"),
}


LOG = logging.getLogger("fredask")
#: The metadata of an empty Zarr v3 group (what a lock file holds).
_EMPTY_GROUP = b'{"zarr_format": 3, "node_type": "group", "attributes": {}}'
#: Writes every chunk, also those equal to the fill value, so a missing file is damage.
_ALL_CHUNKS = {"write_empty_chunks": True}
#: What a store without properties records (its structure files gave none).
NO_PROPERTIES = "none (its structure files gave no energy and no numeric atoms.info entries)"


class StoreError(FredaskError, ValueError):
    """The path is not a (readable) fredask store, or the request does not fit it."""


def is_free_path(path: str | Path) -> bool:
    """Whether a new store may be created at ``path``: nothing there, or an empty folder."""
    path = Path(path)
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


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
        per_structure = {name: getattr(structures, name) for name in TABLE_FIELDS}
        per_structure |= {"cell": structures.cell, "pbc": structures.pbc}
        for name, values in per_structure.items():
            chunks = (min(n_s, 2**20), *values.shape[1:])
            _write_array(table, name, values, _DIMENSIONS.get(name, ("structure",)), chunks)
        for name in ("numbers", "positions"):
            values = getattr(structures, name)
            chunks = (chunk_rows * 4, *values.shape[1:])
            _write_array(table, name, values, _DIMENSIONS[name], chunks)
        n_properties = structures.property_names.size
        if n_properties:
            names = structures.property_names
            _write_array(table, "property_names", names, _DIMENSIONS["property_names"], names.shape)
            chunks = (min(n_s, 2**20), n_properties)
            values = structures.properties
            _write_array(table, "properties", values, _DIMENSIONS["properties"], chunks)
        for name in ("features", "progress", "locks", STAGING, f"{STAGING}/features"):
            group.require_group(name)
        group.require_group(f"{STAGING}/progress")
        group.attrs["fredask"] = {
            "format_version": FORMAT_VERSION,
            "chunk_rows": chunk_rows,
            "n_structures": n_s,
            "n_atoms": structures.n_atoms_total,
            "created": _now(),
        }
        store = cls(group, path)
        store.consolidate()
        return store

    @classmethod
    def open_or_create(
        cls, path: str | Path, structures: StructureTable, what: str = "the structures"
    ) -> FeatureStore:
        """Open ``path`` for appending if it exists (checking that it holds
        ``structures``, described as ``what`` in errors), else create it.

        An existing folder that is not a fredask store is refused (nothing is
        written into it); an empty folder is used.
        """
        path = Path(path)
        if not is_free_path(path):
            store = cls.open(path, mode="a")
            store.check_fingerprints(structures.fingerprint, what=what)
            return store
        return cls.create(path, structures, overwrite=path.exists())

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> FeatureStore:
        """Open an existing store (``mode="r"`` or ``"a"``), checking its format."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: no such store")
        if not (path / "zarr.json").is_file():
            raise StoreError(f"{path}: not a fredask store (no zarr.json); choose a new path")
        try:
            group = zarr.open_group(path, mode=mode, use_consolidated=False)
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
        if meta["format_version"] < FORMAT_VERSION:
            raise StoreError(
                f"{path}: store format {meta['format_version']} has no chunk checksums or "
                f"source records; fredask now writes format {FORMAT_VERSION}: extract or "
                "ingest its features into a new store"
            )
        for name in ("structures", "features", "progress"):
            if name not in group:
                raise StoreError(f"{path}: damaged store, its {name}/ group is missing")
        if mode != "r":
            for name in ("locks", f"{STAGING}/features", f"{STAGING}/progress"):
                group.require_group(name)
        return cls(group, path)

    def consolidate(self) -> None:
        """Consolidate the metadata, for readers such as ``xarray.open_zarr``.

        fredask itself never reads the consolidated copy (it opens with
        ``use_consolidated=False``), so a stale copy cannot mislead it.
        """
        with warnings.catch_warnings():  # "not part of the Zarr format 3 specification"
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(self.path)

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
        names = self.group["structures"].array_keys()
        return StructureTable(**{name: self._table(name) for name in names})

    def structures(self) -> pd.DataFrame:
        """Per-structure table (no per-atom columns, with the properties) as a DataFrame."""
        columns = {name: self._table(name) for name in TABLE_FIELDS}
        names = self.property_names()
        if names:
            values = self._table("properties")
            columns |= {name: values[:, j] for j, name in enumerate(names) if name not in columns}
        return pd.DataFrame(columns).rename_axis("structure")

    def property_names(self) -> list[str]:
        """The numeric per-structure properties recorded with the structures (may be none)."""
        if "property_names" not in self.group["structures"]:
            return []
        return [str(name) for name in self._table("property_names")]

    def structure_property(self, name: str) -> np.ndarray:
        """The values (float64, NaN where missing) of property ``name``, one per structure.

        Raises
        ------
        StoreError
            One line naming ``name`` and the properties the store records.
        """
        names = self.property_names()
        if name not in names:
            held = ", ".join(names) if names else NO_PROPERTIES
            raise StoreError(f"{self.path}: no property {name!r}; the store records {held}")
        return np.asarray(self._table("properties")[:, names.index(name)], dtype=np.float64)

    def structures_in_rows(self, start: int, stop: int) -> list:
        """``ase.Atoms`` of the structures with atoms in rows ``[start, stop)``.

        Reads only those structures' rows of the table (not the whole table),
        so a task's cost does not grow with the store.  Each has
        ``info["structure_index"]``, ``info["first_row"]`` and ``info["subset"]`` set.
        """
        import ase

        offset = self._table("offset")
        overlapping = structures_overlapping(offset, start, stop)
        first, last = overlapping.start, overlapping.stop
        n_atoms = self._table("n_atoms", slice(first, last))
        row0, row1 = int(offset[first]), int(offset[last - 1] + n_atoms[-1])
        numbers = self._table("numbers", slice(row0, row1))
        positions = self._table("positions", slice(row0, row1))
        cells, pbcs = (
            self._table("cell", slice(first, last)),
            self._table("pbc", slice(first, last)),
        )
        subsets = self._table("subset", slice(first, last)) if last > first else []
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

    def _table(self, name: str, rows: slice = slice(None)) -> np.ndarray:
        """Rows of the structure table's array ``name`` (strings as ``str``); a damaged
        chunk raises :class:`~fredask.store.integrity.DamagedChunkError` naming its file."""
        if name not in self.group["structures"]:
            raise StoreError(f"{self.path}/structures/{name}: missing; the store is damaged")
        array = self.group["structures"][name]
        values = ChunkReader(array, self.path, every_chunk=True)[(rows,)]
        return np.array(values.tolist(), dtype=str) if values.dtype.kind == "T" else values

    def n_atoms_per_structure(self) -> np.ndarray:
        """The atom count of every structure, in row order (int64)."""
        return self._table("n_atoms").astype(np.int64)

    @property
    def attrs(self) -> zarr.core.attributes.Attributes:
        """User attributes of the store (free-form; fredask's own live under ``"fredask"``)."""
        return self.group.attrs

    def atom_subsets(self) -> np.ndarray:
        """The subset label of every atom (its structure's), for stratified splits."""
        return np.repeat(self._table("subset"), self._table("n_atoms"))

    def check_fingerprints(self, fingerprints: np.ndarray, what: str = "structures") -> None:
        """Refuse ``fingerprints`` that differ from the store's, naming the first mismatch."""
        own = self._table("fingerprint")
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
        names = set(self.group["features"].array_keys())
        if not complete_only:
            names |= set(self._staging("features").array_keys())
        return sorted(names)

    def has_features(self, name: str) -> bool:
        """Whether features named ``name`` exist (complete, or being written)."""
        return name in self.group["features"] or name in self._staging("features")

    def is_complete(self, name: str) -> bool:
        """Whether complete features named ``name`` exist."""
        return name in self.group["features"]

    def features(self, name: str) -> zarr.Array:
        """The features of model ``name``: the complete array, else the one being written."""
        if name in self.group["features"]:
            return self.group["features"][name]
        if name in self._staging("features"):
            return self._staging("features")[name]
        raise StoreError(f"{self.path}: no features named {name!r}")

    def feature_arrays(self, names=None) -> dict[str, zarr.Array]:
        """Complete features arrays, by name, for the comparison engine.

        Runs the cheap checks of :meth:`check` on them first (shapes against
        their records, missing chunk files, checksums configured) and reads
        the structure table once, so a damaged chunk of it is named before
        any comparison (the features' own chunks are checked as they are read).
        """
        names = self.feature_names() if names is None else list(names)
        incomplete = [n for n in names if not self.is_complete(n)]
        unknown = [n for n in incomplete if not self.has_features(n)]
        if unknown:
            raise StoreError(
                f"{self.path}: no features named {unknown}; it has {self.feature_names()}"
            )
        if incomplete:
            raise StoreError(f"{self.path}: features {incomplete} are incomplete; resume them")
        problems = self.check(names)
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise StoreError(f"{problems[0]}{more}; run `fredask verify {self.path}`")
        self.structure_table()  # decoded once: a damaged table chunk is named here
        return {name: self.features(name) for name in names}

    def skipped_structures(self, names=None) -> np.ndarray:
        """Sorted structures that some model in ``names`` skipped (``skip_errors``)."""
        names = self.feature_names() if names is None else names
        skipped = {s["structure"] for n in names for s in self.features(n).attrs.get("skipped", [])}
        return np.array(sorted(skipped), dtype=np.int64)

    def skipped_reasons(self, names=None) -> dict[int, str]:
        """Why each skipped structure was skipped (the first model's reason), by structure."""
        names = self.feature_names() if names is None else names
        reasons: dict[int, str] = {}
        for name in names:
            for entry in self.features(name).attrs.get("skipped", []):
                reasons.setdefault(int(entry["structure"]), str(entry.get("reason", "")))
        return dict(sorted(reasons.items()))

    def usable_structures(self, names=None) -> np.ndarray:
        """Structures that no model in ``names`` skipped."""
        return np.setdiff1d(np.arange(self.n_structures), self.skipped_structures(names))

    def usable_rows(self, names=None) -> np.ndarray:
        """Rows of structures that no model in ``names`` skipped (``skip_errors``)."""
        return np.flatnonzero(~self.skipped_row_mask(self.skipped_structures(names)))

    def skipped_row_mask(self, skipped) -> np.ndarray:
        """True at the rows of the structures ``skipped``."""
        mask = np.zeros(self.n_atoms, dtype=bool)
        offset, n_atoms = self._table("offset"), self._table("n_atoms")
        for s in skipped:
            mask[offset[s] : offset[s] + n_atoms[s]] = True
        return mask

    def create_features(
        self,
        name: str,
        n_features: int,
        dtype,
        metadata: Mapping[str, object],
        source: Mapping[str, object] | None = None,
        overwrite: bool = False,
    ) -> zarr.Array:
        """Begin (or resume) writing features ``name`` from ``source``.

        * complete features of ``name`` from the same source: kept (logged),
          nothing to write (:meth:`pending_chunks` is empty);
        * from another source: refused, naming both, unless ``overwrite``;
        * an unfinished write of ``name`` from the same source, same shape:
          resumed (how an interrupted extraction continues); from another
          source: refused unless ``overwrite`` (then it starts again).

        New arrays are written under ``staging/`` and replace ``features/<name>``
        in :meth:`finish_features`.

        Parameters
        ----------
        name : str
            Name of the features in the store.
        n_features : int
        dtype : float32 or float64
        metadata : mapping
            Recorded as the array's attributes (``model``, ``package``, ...).
        source : mapping, optional
            What the values are a function of (default: :func:`model_source`
            of ``metadata``).
        overwrite : bool
            Replace features of ``name`` from any source.

        Returns
        -------
        zarr.Array
            The array being written (or the complete one, when kept).
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise StoreError(f"features must be float32 or float64, got {dtype}")
        source = dict(model_source(metadata) if source is None else source)
        ident = source_id(source)
        state = self.check_source(
            name, source, overwrite, shape=(self.n_atoms, n_features), dtype=dtype
        )
        staged = self._staging("features")
        if state == "kept":
            LOG.info("features %r already hold %s: kept", name, describe_source(source))
            return self.group["features"][name]
        if state == "resume":
            LOG.info("features %r: resuming the write from %s", name, describe_source(source))
            return staged[name]
        self.discard_features(name)
        array = staged.create_array(
            name,
            shape=(self.n_atoms, n_features),
            chunks=(self.chunk_rows, n_features),
            dtype=dtype,
            fill_value=np.nan,
            compressors=checksummed(),
            dimension_names=("atom", f"{name}_feature"),
        )
        array.attrs.update(
            {
                **metadata,
                "dtype": str(dtype),
                "created": _now(),
                "complete": False,
                "source": source,
                "source_id": ident,
            }
        )
        progress = self._staging("progress").create_array(
            name,
            shape=(self.n_chunks,),
            chunks=(1,),
            dtype="uint8",
            fill_value=0,
            compressors=checksummed(compress=False),
            dimension_names=("chunk",),
        )
        progress.attrs.update(
            {
                "chunk_rows": self.chunk_rows,
                "shape": list(array.shape),
                "chunks": list(array.chunks),
                "dtype": str(dtype),
                "source_id": ident,
            }
        )
        return array

    def check_source(
        self,
        name: str,
        source: Mapping[str, object],
        overwrite: bool = False,
        shape: tuple[int, int] | None = None,
        dtype=None,
    ) -> str:
        """What writing ``name`` from ``source`` would do, refusing what
        :meth:`create_features` would refuse (nothing is written).

        Returns
        -------
        {"new", "kept", "resume"}
            Write a new array; keep the complete one of the same source; resume
            the unfinished write of the same source (and ``shape``/``dtype``).

        Raises
        ------
        StoreError
            Features (complete or unfinished) of ``name`` from another source,
            without ``overwrite``; naming both sources.
        """
        ident = source_id(source)
        if overwrite:
            return "new"
        if self.is_complete(name):
            existing = self.group["features"][name]
            if existing.attrs.get("source_id") == ident:
                return "kept"
            raise StoreError(
                f"{self.path}: features {name!r} exist from "
                f"{describe_source(existing.attrs.get('source'))}, not from "
                f"{describe_source(source)}; pass overwrite (--overwrite) to replace them, "
                "or choose another name"
            )
        staged = self._staging("features")
        if name not in staged:
            return "new"
        old = staged[name]
        same = old.attrs.get("source_id") == ident
        if shape is not None:
            same = same and old.shape == tuple(shape) and old.dtype == np.dtype(dtype)
        if same:
            return "resume"
        raise StoreError(
            f"{self.path}: an unfinished write of features {name!r} from "
            f"{describe_source(old.attrs.get('source'))} exists, not from "
            f"{describe_source(source)}; pass overwrite (--overwrite) to start again"
        )

    def discard_features(self, name: str) -> None:
        """Delete the unfinished write of ``name`` (``staging/``), if any."""
        for kind in ("features", "progress"):
            shutil.rmtree(self.path / STAGING / kind / name, ignore_errors=True)

    def pending_chunks(self, name: str) -> list[int]:
        """Row chunks of ``name`` not written yet (none once it is complete)."""
        if name in self._staging("progress"):
            return [int(i) for i in np.flatnonzero(self._staging("progress")[name][:] == 0)]
        if self.is_complete(name):
            return []
        raise StoreError(f"{self.path}: no features named {name!r}")

    def write_chunk(self, name: str, index: int, values: np.ndarray) -> None:
        """Write row chunk ``index`` of the features being written as ``name``, then
        mark it done.

        One call writes exactly one Zarr chunk, so tasks writing different
        chunks never touch the same object.
        """
        start, stop = self.chunk_bounds(index)
        if name not in self._staging("features"):
            raise StoreError(f"{self.path}: features {name!r} are not being written")
        array = self._staging("features")[name]
        if values.shape != (stop - start, array.shape[1]):
            raise StoreError(
                f"chunk {index} of {name!r} needs shape {(stop - start, array.shape[1])}, "
                f"got {values.shape}"
            )
        array.with_config(_ALL_CHUNKS)[start:stop] = values
        self._staging("progress")[name].with_config(_ALL_CHUNKS)[index] = 1

    def finish_features(self, name: str) -> None:
        """Move ``name`` into ``features/`` once every chunk is written.

        Replaces complete features of the same name: the old array is moved
        aside, the new one moved in, then the old one deleted, so readers see
        the old or the new array, never a mix.
        """
        if name not in self._staging("features"):
            if self.is_complete(name):
                return
            raise StoreError(f"{self.path}: no features named {name!r}")
        pending = self.pending_chunks(name)
        if pending:
            raise StoreError(f"features {name!r} still miss {len(pending)} chunks")
        self._staging("features")[name].attrs["complete"] = True
        aside = self.path / STAGING / f"replaced-{name}"
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir(parents=True)
        for kind in ("features", "progress"):
            final = self.path / kind / name
            if final.exists():
                os.replace(final, aside / kind)
        for kind in ("features", "progress"):
            os.replace(self.path / STAGING / kind / name, self.path / kind / name)
        shutil.rmtree(aside, ignore_errors=True)
        self.consolidate()

    def add_features(
        self,
        name: str,
        values,
        metadata: Mapping[str, object],
        fingerprints=None,
        source: Mapping[str, object] | None = None,
        overwrite: bool = False,
    ) -> zarr.Array:
        """Write a whole in-memory (or Dask) array of features for model ``name``.

        All or nothing: on any failure (NaN rows, a full disk) the partial
        write is deleted and features already stored under ``name`` stay.
        ``source`` and ``overwrite`` are those of :meth:`create_features`.
        """
        if fingerprints is not None:
            self.check_fingerprints(fingerprints, what=f"features {name!r}")
        if values.ndim != 2 or values.shape[0] != self.n_atoms:
            raise StoreError(
                f"features {name!r} have shape {values.shape}; the store holds {self.n_atoms} atoms"
            )
        self.create_features(name, values.shape[1], values.dtype, metadata, source, overwrite)
        try:
            for index in self.pending_chunks(name):
                start, stop = self.chunk_bounds(index)
                block = np.asarray(values[start:stop])
                if not np.isfinite(block).all():
                    bad = start + int(np.flatnonzero(~np.isfinite(block).all(axis=1))[0])
                    raise StoreError(f"features {name!r} hold NaN or infinite values (row {bad})")
                self.write_chunk(name, index, block)
            self.finish_features(name)
        except BaseException:
            self.discard_features(name)
            raise
        return self.features(name)

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[None]:
        """Hold the store's write lock for ``name``; a second writer is refused.

        The lock is an ``flock`` on ``locks/<name>/zarr.json``, an empty Zarr
        group (so it does not disturb Zarr's listings), deleted again on
        release (so a refused or failed write leaves no trace).  After taking
        the lock the file is checked to still be the one at that path, since
        a releasing writer may have just deleted it.
        """
        folder = self.path / "locks" / name
        while True:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "zarr.json"
            handle = open(path, "a+b")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                raise StoreError(
                    f"{self.path}: another process is writing features {name!r}; "
                    "wait for it or stop it"
                ) from None
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(handle.fileno())
            if current is not None and (current.st_ino, current.st_dev) == (
                mine.st_ino,
                mine.st_dev,
            ):
                break
            handle.close()  # the previous writer deleted it meanwhile: take a new one
        if mine.st_size == 0:
            handle.write(_EMPTY_GROUP)
            handle.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                folder.rmdir()
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def _staging(self, kind: str) -> zarr.Group:
        key = f"{STAGING}/{kind}"
        if key not in self.group:
            if self.group.read_only:
                return zarr.open_group(zarr.storage.MemoryStore(), mode="w")  # nothing staged
            self.group.require_group(key)
        return self.group[key]

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

        ``compressors=None`` stores it uncompressed (but checksummed); the
        caller writes every chunk with ``array.with_config(write_empty_chunks=True)``
        (:meth:`writable`) and then calls :meth:`finish_structure_features`.
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
                compressors=checksummed(compress=False) if compressors is None else compressors,
                dimension_names=("structure", f"{name}_{kind.removesuffix('s')}"),
                overwrite=True,
            )
        )
        array.attrs.update({**attributes, "created": _now(), "complete": False})
        return array

    @staticmethod
    def writable(array: zarr.Array) -> zarr.Array:
        """``array`` configured to write every chunk (a missing chunk file is then damage)."""
        return array.with_config(_ALL_CHUNKS)

    def finish_structure_features(self, array: zarr.Array) -> None:
        """Mark a structure-level array complete (every chunk written)."""
        missing = missing_chunk_files(self.path, array)
        if missing:
            raise StoreError(f"{missing[0]}: chunk of {array.path} was not written")
        array.attrs["complete"] = True
        self.consolidate()

    # -- integrity -----------------------------------------------------------------
    def check(self, names=None) -> list[str]:
        """Cheap checks (metadata and listings, no chunk reads): one line per problem.

        See :func:`fredask.store.checks.check_store`.
        """
        return check_store(self, names)

    def verify(self, progress: bool = False) -> list[str]:
        """Read every chunk of every array and check it: one line per problem.

        See :func:`fredask.store.checks.verify_store`; an empty list: the store is sound.
        """
        return verify_store(self, progress)

    # -- summary -------------------------------------------------------------------
    def info(self) -> str:
        """A human-readable summary of the store, with the cheap checks' findings."""
        lines = [
            f"fredask store {self.path} (format {self.group.attrs['fredask']['format_version']})",
            f"  {self.n_structures} structures, {self.n_atoms} atoms, "
            f"{self.n_chunks} row chunks of {self.chunk_rows}",
        ]
        subsets = pd.Series(self._table("subset")).value_counts()
        if len(subsets):
            lines.append(
                "  subsets: " + ", ".join(f"{k or '(none)'} {v}" for k, v in subsets.items())
            )
        if self.property_names():
            lines.append("  properties: " + ", ".join(self.property_names()))
        for name in self.feature_names(complete_only=False):
            array = self.features(name)
            attrs = array.attrs
            if self.is_complete(name):
                damage = check_features(self, name)
                state = "complete" if not damage else f"DAMAGED ({damage[0]})"
            else:
                state = f"INCOMPLETE ({len(self.pending_chunks(name))} chunks missing)"
            n_skipped = len(attrs.get("skipped", []))
            skipped = f", {n_skipped} structures skipped" if n_skipped else ""
            lines.append(
                f"  features/{name}: {array.shape[1]} x {array.dtype}, "
                f"model {attrs.get('model', '?')}, {state}{skipped}"
            )
            if name in self.group["features"] and name in self._staging("features"):
                lines.append(f"    (a replacement of features/{name} is being written)")
        reasons = self.skipped_reasons(self.feature_names(complete_only=False))
        for s, reason in list(reasons.items())[:10]:
            lines.append(f"  skipped structure {s}: {reason}")
        if len(reasons) > 10:
            lines.append(
                f"  ... {len(reasons) - 10} more skipped structures "
                "(FeatureStore.skipped_reasons())"
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
            compressors=checksummed(),
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
        name,
        shape=values.shape,
        chunks=chunks,
        dtype=dtype,
        compressors=checksummed(),
        dimension_names=dims,
    )
    array.with_config(_ALL_CHUNKS)[...] = values


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
