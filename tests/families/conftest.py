"""Shared harness of the model-family tests (each family runs in its own environment).

``tests/families/run`` builds ``.venv-<family>`` for every family (torch 2.13.0
CPU, fredask, the family's package) and runs ``test_<family>.py`` in it; in
any other environment those tests skip, naming the package they need.

Every family test builds a small model with random weights through the
family's own package, extracts it through ``fredask extract`` into a store
and compares the stored rows with what the package's own API returns for the
same structures.  :func:`family_structures` are those structures (molecules
and crystals of several sizes and elements); :func:`extract_rows` runs the
CLI and reads the store back, one array per structure.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

#: Elements of :func:`family_structures` (every tiny model is built for these).
ELEMENTS = ("H", "Li", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "Cl", "Cu")

#: Atomic numbers of :data:`ELEMENTS`, ascending.
NUMBERS = (1, 3, 6, 7, 8, 9, 11, 12, 13, 14, 17, 29)


def family_structures() -> list:
    """24 structures: 10 molecules (pbc False), 12 crystals, 2 slabs (pbc True, True, False).

    Sizes run from 2 to 54 atoms, over the 12 :data:`ELEMENTS`; positions
    are rattled (seeded) so that no two atoms of a structure are
    symmetry-equivalent.  Each carries ``info["name"]``.
    """
    from ase.build import bulk, fcc111, molecule

    molecules = ["H2O", "CH4", "NH3", "CO2", "C6H6", "CH3OH", "HCN", "C2H6", "LiF", "NaCl"]
    crystals = [
        bulk("Si", "diamond", a=5.43),
        bulk("Si", "diamond", a=5.43, cubic=True),
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("MgO", "rocksalt", a=4.21, cubic=True),
        bulk("LiF", "rocksalt", a=4.03),
        bulk("Cu", "fcc", a=3.61),
        bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2)),
        bulk("Al", "fcc", a=4.05).repeat((3, 1, 1)),
        bulk("SiC", "zincblende", a=4.36),
        bulk("C", "diamond", a=3.57, cubic=True),
        bulk("Mg", "hcp", a=3.21, c=5.21),
        bulk("Si", "diamond", a=5.43, cubic=True).repeat((1, 1, 2)),
    ]
    out = []
    for name in molecules:
        atoms = molecule(name)
        atoms.info["name"] = f"molecule-{name}"
        out.append(atoms)
    for index, atoms in enumerate(crystals):
        atoms.info["name"] = f"crystal-{index}-{atoms.get_chemical_formula()}"
        out.append(atoms)
    for size in ((2, 2, 3), (3, 3, 6)):
        slab = fcc111("Cu", size=size, vacuum=6.0)
        slab.info["name"] = f"slab-Cu111-{len(slab)}"
        out.append(slab)
    rng = np.random.default_rng(7)
    for atoms in out:
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    return out


@pytest.fixture(scope="session")
def structures() -> list:
    """:func:`family_structures`, built once."""
    return family_structures()


def extract_rows(
    spec: str,
    structures: list,
    folder: Path,
    *options: str,
) -> tuple[list[np.ndarray], dict]:
    """``fredask extract`` of ``structures`` with ``--model spec``; the stored rows back.

    Parameters
    ----------
    spec : str
        A model spec, e.g. ``"mace:/tmp/model.model"``.
    structures : list of ase.Atoms
    folder : pathlib.Path
        Where the structure file and the store are written.
    *options : str
        More command-line arguments (``"--layer", "-1"``, ``"--option", "k=v"``).

    Returns
    -------
    rows : list of numpy.ndarray
        The stored features, one ``(n_atoms, n_features)`` array per structure.
    metadata : dict
        The stored feature array's attributes (its source).
    """
    from ase.io import write

    from fredask.cli import main
    from fredask.store import FeatureStore

    path = folder / "structures.extxyz"
    write(path, structures, format="extxyz")
    store_path = folder / "store.zarr"
    argv = ["extract", str(path), "--model", spec, "--store", str(store_path)]
    main([*argv, "--cluster", "sync", *options])
    store = FeatureStore.open(store_path)
    (name,) = store.feature_names()
    values = np.asarray(store.features(name)[:])
    bounds = np.cumsum([0, *store.n_atoms_per_structure()])
    assert store.n_structures == len(structures)
    rows = [values[start:stop] for start, stop in itertools.pairwise(bounds)]
    return rows, dict(store.features(name).attrs)


def assert_rows_equal(rows: list[np.ndarray], expected: list[np.ndarray], tol: float = 1e-6):
    """Every structure's stored rows equal the package's own, to ``tol`` (relative to its scale)."""
    assert len(rows) == len(expected)
    for index, (got, want) in enumerate(zip(rows, expected, strict=True)):
        want = np.asarray(want, dtype=np.float64)
        assert got.shape == want.shape, f"structure {index}: {got.shape} != {want.shape}"
        assert got.dtype == np.float32
        scale = max(float(np.abs(want).max()), 1.0)
        np.testing.assert_allclose(
            got, want, rtol=0, atol=tol * scale, err_msg=f"structure {index}"
        )
