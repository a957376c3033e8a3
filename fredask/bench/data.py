"""Inputs of a scaling study: synthetic feature stores, or prefixes of a user's store.

The synthetic data is the ``gfre_matrix.py`` benchmark's model zoo,
generalised to any number of models and features: every model sees a shared
32-dimensional latent description ``L`` of each atom through its own map
``A_m`` (some latent directions hidden), ``features_m = tanh(L A_m + noise_m)``.
Stores are plain Zarr v3 groups (``features/m0 ..``, float32, zstd, chunks
``(chunk_rows, n_features)``) under a data directory, written one chunk at a
time and reused when their attributes match.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np

from fredask.store.feature_store import (
    create_group_features,
    group_attributes,
    group_features,
    set_group_attributes,
)

LATENT_DIM = 32
#: Per model (cycled): noise before the tanh, latent directions the model does not see.
NOISE = (0.02, 0.1, 0.4, 0.8)
HIDDEN_LATENTS = (0, 1, 4, 8)
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class StudyInputs:
    """The features one grid point runs on.

    Attributes
    ----------
    features : dict of str to dask.array.Array
        ``(n_atoms, n_features)`` per model, row chunks ``chunk_rows`` (empty
        for the extraction stage).
    structure_sizes : numpy.ndarray
        Atoms per structure (sums to ``n_atoms``), for structure-level stages.
    source : str
        Where the features come from (store path).
    structures : StructureTable, optional
        The structures to extract features of (extraction stage).
    chunk_rows : int
        Rows per chunk.
    """

    features: dict[str, da.Array]
    structure_sizes: np.ndarray
    source: str
    structures: object = None
    chunk_rows: int = 32_768

    @property
    def n_atoms(self) -> int:
        return int(self.structure_sizes.sum())

    @property
    def nbytes(self) -> int:
        """Bytes of all models' features as stored (uncompressed)."""
        return int(sum(a.nbytes for a in self.features.values()))


def synthetic_path(
    data_dir: str | Path, n_atoms: int, n_models: int, n_features: int, chunk_rows: int, seed: int
) -> Path:
    """Where the synthetic store of these sizes lives."""
    name = f"scaling_n{n_atoms}_m{n_models}_f{n_features}_c{chunk_rows}_s{seed}.zarr"
    return Path(data_dir) / name


def _attributes(n_atoms: int, n_models: int, n_features: int, chunk_rows: int, seed: int) -> dict:
    return {
        "n_atoms": n_atoms,
        "n_models": n_models,
        "n_features": n_features,
        "chunk_rows": chunk_rows,
        "latent_dim": LATENT_DIM,
        "noise": list(NOISE),
        "hidden_latents": list(HIDDEN_LATENTS),
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "complete": True,
    }


def _maps(n_models: int, n_features: int, seed: int) -> list[np.ndarray]:
    maps = []
    for m in range(n_models):
        rng = np.random.default_rng([seed, 1_000_000, m])
        a = rng.standard_normal((LATENT_DIM, n_features)) / np.sqrt(LATENT_DIM)
        a[rng.permutation(LATENT_DIM)[: HIDDEN_LATENTS[m % len(HIDDEN_LATENTS)]]] = 0.0
        maps.append(a.astype(np.float32))
    return maps


def _chunk(seed: int, index: int, rows: int, maps: list[np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng([seed, index])
    latent = rng.standard_normal((rows, LATENT_DIM), dtype=np.float32)
    out = []
    for m, a in enumerate(maps):
        sigma = np.float32(NOISE[m % len(NOISE)])
        out.append(
            np.tanh(latent @ a + sigma * rng.standard_normal((rows, a.shape[1]), np.float32))
        )
    return out


def synthetic_store(
    data_dir: str | Path,
    n_atoms: int,
    n_models: int = 4,
    n_features: int = 128,
    chunk_rows: int = 32_768,
    seed: int = 0,
) -> Path:
    """The synthetic store of these sizes, written (chunk by chunk) if missing.

    Parameters
    ----------
    data_dir : path
        Directory of the stores (created if needed).
    n_atoms, n_models, n_features, chunk_rows, seed : int
        Rows, models (``m0, m1, ..``), columns per model, rows per Zarr chunk,
        and the seed of the data.

    Returns
    -------
    pathlib.Path
        The store (a Zarr v3 group with ``features/m0 ..``).
    """
    attributes = _attributes(n_atoms, n_models, n_features, chunk_rows, seed)
    path = synthetic_path(data_dir, n_atoms, n_models, n_features, chunk_rows, seed)
    if path.exists():
        if group_attributes(path) == attributes:
            return path
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f"m{m}" for m in range(n_models)]
    arrays = create_group_features(path, names, n_atoms, n_features, chunk_rows).values()
    maps = _maps(n_models, n_features, seed)
    for index, start in enumerate(range(0, n_atoms, chunk_rows)):
        stop = min(start + chunk_rows, n_atoms)
        for array, block in zip(arrays, _chunk(seed, index, stop - start, maps), strict=True):
            array[start:stop] = block
    set_group_attributes(path, attributes)
    return path


def synthetic_inputs(path: str | Path, structure_atoms: int = 16) -> StudyInputs:
    """The features of a synthetic store, cut into structures of ``structure_atoms`` atoms."""
    features = {name: da.from_zarr(array) for name, array in group_features(path).items()}
    n_atoms = next(iter(features.values())).shape[0]
    sizes = np.full(n_atoms // structure_atoms, structure_atoms, dtype=np.int64)
    if n_atoms % structure_atoms:
        sizes = np.append(sizes, n_atoms % structure_atoms)
    chunk_rows = (group_attributes(path) or {}).get("chunk_rows", features["m0"].chunks[0][0])
    return StudyInputs(features, sizes, str(path), chunk_rows=int(chunk_rows))


def structure_inputs(n_atoms: int, chunk_rows: int = 32_768, min_atoms: int = 8) -> StudyInputs:
    """The shipped structures (ASE, pymatgen), cycled until they hold ``n_atoms`` atoms.

    Whole structures are taken in order, so the total is the first sum that
    reaches ``n_atoms`` (a few atoms more).
    """
    from fredask.store.datasets import shipped_structures
    from fredask.store.structures import StructureTable

    shipped = shipped_structures(min_atoms=min_atoms)
    chosen, total = [], 0
    while total < n_atoms:
        atoms = shipped[len(chosen) % len(shipped)]
        chosen.append(atoms)
        total += len(atoms)
    table = StructureTable.from_atoms(
        chosen, source_file=[a.info["subset"] for a in chosen], source_index=range(len(chosen))
    )
    sizes = np.array([len(a) for a in chosen], dtype=np.int64)
    return StudyInputs({}, sizes, "shipped structures", table, chunk_rows)


def store_inputs(
    path: str | Path,
    n_atoms: int | None = None,
    n_features: int | None = None,
    chunk_rows: int | None = None,
    models: list[str] | None = None,
) -> StudyInputs:
    """A prefix of a fredask store: its first whole structures and first columns.

    Parameters
    ----------
    path : path
        A fredask store (:class:`fredask.store.FeatureStore`).
    n_atoms : int, optional
        Keep the structures that end at or before this row (default: all).
    n_features : int, optional
        Keep the first columns of every model (default: all).
    chunk_rows : int, optional
        Row chunks of the Dask views (default: the store's).
    models : list of str, optional
        Models to use (default: all complete ones).

    Returns
    -------
    StudyInputs
    """
    from fredask.store.feature_store import FeatureStore

    store = FeatureStore.open(path)
    arrays = store.feature_arrays(models)
    sizes = store.n_atoms_per_structure()
    ends = np.cumsum(sizes)
    keep = sizes.size if n_atoms is None else int(np.searchsorted(ends, n_atoms, side="right"))
    if keep == 0:
        raise ValueError(f"{path}: its first structure has more than {n_atoms} atoms")
    rows = int(ends[keep - 1])
    chunks = chunk_rows or store.chunk_rows
    features = {}
    for name, array in arrays.items():
        width = array.shape[1] if n_features is None else n_features
        if width > array.shape[1]:
            raise ValueError(f"{path}: {name!r} has {array.shape[1]} features, not {width}")
        features[name] = da.from_zarr(array)[:rows, :width].rechunk({0: chunks, 1: -1})
    return StudyInputs(features, sizes[:keep], str(path), chunk_rows=chunks)
