"""Bring features that already exist (one file per model) into a store.

Supported: ``.npy``, ``.npz``, ``.pt``/``.pth`` (a tensor, or a dict of
tensors), ``.h5``/``.hdf5``.  Files with several arrays need ``key``.  The
rows must be the atoms of the structure file(s), in order.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fredask.store.feature_store import FeatureStore, StoreError, is_free_path
from fredask.store.structures import StructureTable, file_hash

FORMATS = (".npy", ".npz", ".pt", ".pth", ".h5", ".hdf5")


def _pick(path: Path, names: list[str], key: str | None) -> str:
    if key is not None:
        if key not in names:
            raise StoreError(f"{path}: no array named {key!r}; it holds {names}")
        return key
    if len(names) != 1:
        raise StoreError(f"{path} holds several arrays {names}; say which with key=")
    return names[0]


def load_feature_file(path: str | Path, key: str | None = None):
    """The per-atom feature array of one file (memory-mapped or lazy where possible)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise StoreError(f"{path}: no such file")
    if suffix == ".npy":
        return np.load(path, mmap_mode="r")
    if suffix == ".npz":
        archive = np.load(path)
        return archive[_pick(path, list(archive.files), key)]
    if suffix in (".pt", ".pth"):
        import torch

        data = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(data, dict):
            data = data[_pick(path, list(data), key)]
        return data.detach().numpy()
    if suffix in (".h5", ".hdf5"):
        import dask.array as da
        import h5py

        handle = h5py.File(path, "r")
        datasets: list[str] = []
        handle.visititems(
            lambda n, obj: datasets.append(n) if isinstance(obj, h5py.Dataset) else None
        )
        dataset = handle[_pick(path, datasets, key)]
        return da.from_array(dataset, chunks=(2**16, -1) if dataset.ndim == 2 else -1)
    raise StoreError(f"{path}: unknown feature file type {suffix!r}; use one of {FORMATS}")


def ingest(
    store: str | Path,
    structures: StructureTable,
    features: Mapping[str, str | Path],
    key: str | None = None,
    command: str = "",
    overwrite: bool = False,
) -> FeatureStore:
    """Write existing feature files into ``store`` (created if missing).

    Every file is opened and checked (rows against the structures) before
    anything is written.  Each name is written all or nothing: a file that
    fails half-way (NaN rows, a full disk) leaves the store as it was, and a
    store this call created is removed again.

    Parameters
    ----------
    store : path
        The store; if it exists, ``structures`` must have its fingerprints.
    structures : StructureTable
        The structures the features belong to, in row order.
    features : mapping of name to path
        One file per model.
    key : str, optional
        Array name inside multi-array files.
    command : str
        Recorded with the features.
    overwrite : bool
        Replace features of a name that came from another file.  Without it,
        a name already holding the same file (same hash) is kept, and one
        holding another file is refused, naming both.
    """
    n_atoms = structures.n_atoms_total
    loaded = {}
    for name, file in features.items():
        values = load_feature_file(file, key)
        if values.ndim != 2 or values.shape[0] != n_atoms:
            raise StoreError(
                f"{file}: features of shape {tuple(values.shape)}; the structures have "
                f"{n_atoms} atoms, so expected ({n_atoms}, n_features)"
            )
        loaded[name] = values
    sources = {
        name: {"kind": "file", "file": str(file), "hash": file_hash(file), "key": key}
        for name, file in features.items()
    }
    path = Path(store)
    fresh, was_empty_folder = is_free_path(path), path.is_dir()
    target = FeatureStore.open_or_create(store, structures, what="the structure files")
    for name, source in sources.items():  # refuse any name before writing the first
        target.check_source(name, source, overwrite)
    try:
        for name, file in features.items():
            values = loaded[name]
            if values.dtype not in (np.float32, np.float64):
                values = values.astype(np.float64)
            metadata = {"model": name, "source_file": str(file), "command": command}
            with target.writing(name):
                target.add_features(
                    name, values, metadata, source=sources[name], overwrite=overwrite
                )
    except BaseException:
        if fresh:
            shutil.rmtree(path, ignore_errors=True)
            if was_empty_folder:
                path.mkdir()
        raise
    return target
