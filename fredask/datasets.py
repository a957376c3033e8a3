"""Data that ships with packages or is generated, for the main job, tests and benchmarks.

* :func:`shipped_structures`: real structures from ``ase.collections`` (g2
  molecules, s22 dimers, dcdft crystals) and pymatgen's 288 AFLOW prototype
  crystals, with a ``subset`` label each;
* :func:`write_synthetic_store`: a synthetic "model zoo" of four models that
  share a latent description of each atom to different degrees, written chunk
  by chunk into a Zarr group (``features/<model>``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

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
