"""Data that ships with packages or is generated, for the main job, tests and benchmarks.

* :func:`shipped_structures`: real structures from ``ase.collections`` (g2
  molecules, s22 dimers, dcdft crystals) and pymatgen's 288 AFLOW prototype
  crystals, with a ``subset`` label each;
* :func:`physical_structures`: structures without unphysically short bonds
  (:mod:`fredask.store.geometry`), and a table of those left out;
* :func:`write_synthetic_store`: a synthetic "model zoo" of four models that
  share a latent description of each atom to different degrees, written chunk
  by chunk into a Zarr group (``features/<model>``);
* :func:`write_structure_store`: a fredask store of synthetic structures
  (given atom counts, subset labels) whose atom features depend on a latent
  description of their structure, for structure-level work.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from fredask.store.geometry import SHORT_BOND_RATIO, short_bond_structures

SYNTHETIC_MODELS = {
    # name: (number of latent directions seen, non-linearity, noise)
    "smooth-64": (24, 0.5, 0.05),
    "sharp-64": (24, 2.0, 0.05),
    "partial-48": (12, 1.0, 0.05),
    "noisy-32": (24, 1.0, 0.5),
}
LATENT_DIM = 24


SHIPPED = ("g2", "s22", "dcdft", "aflow")


def shipped_structures(subsets=SHIPPED, min_atoms: int = 8) -> list:
    """Real structures that ship with ASE and pymatgen, labelled by subset.

    Parameters
    ----------
    subsets : sequence of {"g2", "s22", "dcdft", "aflow"}
        ASE's G2 molecules and S22 dimers (no cell), ASE's dcdft elemental
        crystals, pymatgen's AFLOW prototype crystals.
    min_atoms : int
        Periodic cells are repeated until they hold at least this many atoms.

    Returns
    -------
    list of ase.Atoms
        ``info["subset"]`` and ``info["name"]`` set.
    """
    from ase.collections import dcdft, g2, s22

    out = []
    for subset in subsets:
        if subset == "aflow":
            from pymatgen.analysis.prototypes import AFLOW_PROTOTYPE_LIBRARY
            from pymatgen.io.ase import AseAtomsAdaptor

            entries = [
                (e["tags"]["mineral"] or e["tags"]["aflow"], e["snl"].structure)
                for e in AFLOW_PROTOTYPE_LIBRARY
            ]
            structures = [(name, AseAtomsAdaptor.get_atoms(s)) for name, s in entries]
        else:
            collection = {"g2": g2, "s22": s22, "dcdft": dcdft}[subset]
            structures = [(name, collection[name]) for name in collection.names]
        for name, atoms in structures:
            atoms = atoms.copy()
            if atoms.pbc.all():
                atoms = atoms.repeat(_repeats(atoms, min_atoms))
            atoms.info = {"subset": subset, "name": str(name)}
            out.append(atoms)
    return out


def physical_structures(structures, ratio: float = SHORT_BOND_RATIO):
    """Leave out the structures with unphysically short bonds.

    Parameters
    ----------
    structures : sequence of ase.Atoms
        E.g. :func:`shipped_structures`.
    ratio : float
        A structure is left out when two of its atoms (periodic images
        included) are closer than ``ratio`` times the sum of their covalent
        radii (:func:`fredask.store.geometry.short_bond_structures`).

    Returns
    -------
    kept : list of ase.Atoms
        The other structures, in their order (the same objects).
    left_out : pandas.DataFrame
        The structures left out, indexed by their position in ``structures``,
        with the columns of :func:`~fredask.store.geometry.short_bond_structures`.

    Examples
    --------
    >>> from fredask.store.geometry import short_bond_rule
    >>> kept, left_out = physical_structures(shipped_structures())  # doctest: +SKIP
    >>> print(f"left out {len(left_out)} structures with {short_bond_rule()}")  # doctest: +SKIP
    left out 20 structures with shortest bond below 0.75x the sum of covalent radii
    """
    structures = list(structures)
    left_out = short_bond_structures(structures, ratio)
    flagged = set(left_out.index.tolist())
    kept = [atoms for k, atoms in enumerate(structures) if k not in flagged]
    return kept, left_out


def _repeats(atoms, min_atoms: int) -> tuple[int, int, int]:
    """Smallest near-cubic repetition with at least ``min_atoms`` atoms."""
    reps = [1, 1, 1]
    lengths = atoms.cell.lengths()
    while len(atoms) * reps[0] * reps[1] * reps[2] < min_atoms:
        axis = min(range(3), key=lambda i: lengths[i] * reps[i])
        reps[axis] += 1
    return tuple(reps)


def write_synthetic_store(
    path: str | Path, n_rows: int = 1_000_000, chunk_rows: int = 32_768, seed: int = 0
) -> zarr.Group:
    """Write the synthetic model zoo into a Zarr group, one chunk at a time.

    The group is reused when it already holds the same rows and seed.
    """
    group = zarr.open_group(path, mode="a")
    if group.attrs.get("synthetic") == {"n_rows": n_rows, "seed": seed}:
        return group
    rng = np.random.default_rng(seed)
    projections = {
        name: rng.normal(size=(seen, int(name.rsplit("-", 1)[1]))) / np.sqrt(seen)
        for name, (seen, _, _) in SYNTHETIC_MODELS.items()
    }
    arrays = {
        name: group.create_array(
            f"features/{name}",
            shape=(n_rows, proj.shape[1]),
            chunks=(chunk_rows, proj.shape[1]),
            dtype="float32",
            dimension_names=("atom", f"{name}_feature"),
            overwrite=True,
        )
        for name, proj in projections.items()
    }
    for start in range(0, n_rows, chunk_rows):
        stop = min(start + chunk_rows, n_rows)
        block_rng = np.random.default_rng([seed, start])
        latent = block_rng.normal(size=(stop - start, LATENT_DIM))
        for name, (seen, sharpness, noise) in SYNTHETIC_MODELS.items():
            pre = latent[:, :seen] @ projections[name]
            values = np.tanh(sharpness * pre) + noise * block_rng.normal(size=pre.shape)
            arrays[name][start:stop] = values.astype(np.float32)
    group.attrs["synthetic"] = {"n_rows": n_rows, "seed": seed}
    return group


def write_structure_store(
    path: str | Path,
    n_atoms,
    models=("m0",),
    n_features: int = 128,
    subsets=("bulk", "cluster", "molecule"),
    chunk_rows: int | None = None,
    seed: int = 0,
    dtype=np.float32,
):
    """A fredask store of synthetic structures with per-model atom features.

    Atom ``i`` of structure ``s`` has the latent ``z_s + 0.5 u_i`` (both
    standard normal, 8-dim); model ``m`` sees ``tanh(latent A_m) + 0.05 noise``
    with its own random ``A_m``.  Written one row chunk at a time; the
    structure table has zero positions, no cells and fingerprints from the
    structure index.

    Parameters
    ----------
    n_atoms : array-like of int
        Atoms of each structure.
    models : sequence of str
        Names of the feature arrays.
    subsets : sequence of str
        Subset labels, drawn uniformly for the structures.

    Returns
    -------
    fredask.store.FeatureStore
    """
    from fredask.store.feature_store import FeatureStore
    from fredask.store.structures import StructureTable

    n_atoms = np.asarray(n_atoms, dtype=np.int64)
    n_s, total = n_atoms.size, int(n_atoms.sum())
    rng = np.random.default_rng(seed)
    table = StructureTable(
        n_atoms=n_atoms,
        offset=np.cumsum(n_atoms) - n_atoms,
        fingerprint=np.arange(n_s, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15),
        subset=np.asarray(subsets, dtype=str)[rng.integers(len(subsets), size=n_s)],
        source_file=np.full(n_s, "synthetic"),
        source_index=np.arange(n_s, dtype=np.int64),
        cell=np.zeros((n_s, 3, 3)),
        pbc=np.zeros((n_s, 3), dtype=bool),
        numbers=np.ones(total, dtype=np.int16),
        positions=np.zeros((total, 3)),
    )
    store = FeatureStore.create(path, table, chunk_rows=chunk_rows, overwrite=True)
    latent_dim = 8
    structure_latent = rng.normal(size=(n_s, latent_dim))
    maps = {m: rng.normal(size=(latent_dim, n_features)) / np.sqrt(latent_dim) for m in models}
    for m in models:
        store.create_features(m, n_features, dtype, {"model": f"synthetic:{m}"})
    structure_of_row = np.repeat(np.arange(n_s), n_atoms)
    for index in range(store.n_chunks):
        start, stop = store.chunk_bounds(index)
        block_rng = np.random.default_rng([seed, index])
        own = block_rng.normal(size=(stop - start, latent_dim))
        latent = structure_latent[structure_of_row[start:stop]] + 0.5 * own
        for m in models:
            noise = 0.05 * block_rng.normal(size=(stop - start, n_features))
            store.write_chunk(m, index, (np.tanh(latent @ maps[m]) + noise).astype(dtype))
    for m in models:
        store.finish_features(m)
    return store
