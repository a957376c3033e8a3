"""Structures with unphysically short bonds, found from covalent radii.

A structure is flagged when two of its atoms (or an atom and a periodic image,
its own included) are closer than ``ratio`` times the sum of their covalent
radii (``ase.data.covalent_radii``).  The features of such atoms can lie far
from every other atom's, so a few of them can dominate the variance of a
comparison: :func:`short_bond_structures` lists them, the demo leaves them out
(:func:`fredask.store.datasets.physical_structures`).

The search is a k-d tree (``scipy.spatial.cKDTree``) over the atoms and the
periodic images within reach of the cell (their own images included), so its
cost is linear in the atoms of a structure; ASE's neighbour list
(``ase.neighborlist.neighbor_list`` with cutoffs ``ratio * r_i``) gives the
same pairs and is the tests' oracle, at about 10x the time on small cells
(2.3 s against 0.2-0.3 s for the 543 shipped structures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

import numpy as np

from fredask.errors import FredaskError

#: Default threshold: a bond shorter than this fraction of the covalent-radii sum.  At
#: 0.8 the single-bond radii also flag real triple bonds (N2, HCN, acetylenes at
#: 0.77-0.80: 6 of the shipped molecules); at 0.75 only the 20 AFLOW prototypes whose
#: generic lattice parameters squeeze a bond (Ullmanite's Sb-Ni at 0.39, BC8 Si at 0.64).
SHORT_BOND_RATIO = 0.75

#: The columns of :func:`short_bond_structures`, in order.
COLUMNS = ("subset", "source_file", "formula", "shortest_ratio", "distance", "elements")

# The search radius is widened by this relative margin so that the exact test
# ``distance / (r_i + r_j) < ratio`` is made here, not by the tree's ``<=``.
_MARGIN = 1e-9


class GeometryError(FredaskError, ValueError):
    """A bad input to the geometry checks, described in one line.

    A ratio that is not a finite number above 0, a periodic axis without a cell
    vector, a singular cell or an atomic number without a covalent radius.
    """


def check_ratio(ratio) -> float:
    """``ratio`` as a float, or a one-line :class:`GeometryError`.

    Parameters
    ----------
    ratio : float
        Fraction of the covalent-radii sum; must be finite and above 0.

    Returns
    -------
    float
    """
    if isinstance(ratio, bool) or not isinstance(ratio, Real):
        raise GeometryError(f"short-bond ratio must be a number, got {ratio!r}")
    value = float(ratio)
    if not math.isfinite(value) or value <= 0:
        raise GeometryError(f"short-bond ratio must be a finite number above 0, got {ratio!r}")
    return value


def short_bond_rule(ratio: float = SHORT_BOND_RATIO) -> str:
    """The rule of :func:`short_bond_structures` in words, for messages.

    Examples
    --------
    >>> short_bond_rule(0.8)
    'shortest bond below 0.75x the sum of covalent radii'
    """
    return f"shortest bond below {check_ratio(ratio):g}x the sum of covalent radii"


def shortest_bond(numbers, positions, cell, pbc, ratio: float = SHORT_BOND_RATIO):
    """The shortest bond of one structure relative to its covalent radii, if below ``ratio``.

    Parameters
    ----------
    numbers : array-like of int, shape (n_atoms,)
    positions : array-like of float, shape (n_atoms, 3)
        Cartesian positions in Angstrom.
    cell : array-like of float, shape (3, 3)
        Cell vectors as rows; zero rows are allowed along non-periodic axes.
    pbc : array-like of bool, shape (3,)
    ratio : float
        Only pairs closer than ``ratio * (r_i + r_j)`` are looked at.

    Returns
    -------
    tuple (shortest_ratio, distance, i, j) or None
        ``min distance / (r_i + r_j)`` over atom pairs (periodic images
        included), the distance in Angstrom and the two atoms (``i == j`` for
        an atom and its own image); ``None`` when no pair is below ``ratio``.

    Raises
    ------
    GeometryError
        A bad ``ratio``, or a periodic axis without a cell vector.
    """
    from scipy.spatial import cKDTree

    ratio = check_ratio(ratio)
    numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    radii = _radii(numbers)
    if numbers.size == 0:
        return None
    # every pair closer than ratio * (r_i + r_j) is closer than this
    reach = 2 * ratio * float(radii.max()) * (1 + _MARGIN)
    wrapped, points, atom, reach = _images(positions, cell, pbc, reach)
    tree = cKDTree(wrapped)
    if points is None:
        pairs = tree.query_pairs(reach, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
        d = np.linalg.norm(wrapped[i] - wrapped[j], axis=1)
    else:
        found = tree.sparse_distance_matrix(cKDTree(points), reach, output_type="ndarray")
        found = found[found["i"] != found["j"]]  # an atom itself (the images start at 0)
        i, j, d = found["i"], atom[found["j"]], found["v"]
    if d.size == 0:
        return None
    relative = d / (radii[i] + radii[j])
    best = int(np.argmin(relative))
    if not relative[best] < ratio:
        return None
    return float(relative[best]), float(d[best]), int(i[best]), int(j[best])


def _radii(numbers: np.ndarray) -> np.ndarray:
    """ASE's covalent radii of ``numbers`` (Angstrom), or a one-line error."""
    from ase.data import covalent_radii

    bad = numbers[(numbers < 0) | (numbers >= len(covalent_radii))]
    if bad.size:
        raise GeometryError(f"atomic number {int(bad[0])} has no covalent radius")
    return covalent_radii[numbers]


def _images(positions: np.ndarray, cell, pbc, reach: float):
    """The atoms wrapped into the cell and their periodic images within ``reach`` of it.

    Returns
    -------
    wrapped : numpy.ndarray, shape (n_atoms, 3)
        Positions, wrapped into the (reduced) cell along periodic axes.
    points : numpy.ndarray, shape (n_points, 3), or None
        ``wrapped`` itself (first) and every image that may lie within
        ``reach`` of an atom; ``None`` without periodic axes.
    atom : numpy.ndarray of int, shape (n_points,), or None
        The atom each point is an image of.
    reach : float
        ``reach``, capped at the shortest lattice vector.

    Notes
    -----
    The periodic cell vectors are Minkowski-reduced first (the same lattice,
    the shortest nearly orthogonal basis).  With scaled coordinates ``s`` in
    ``[0, 1]`` along periodic axis ``c``, an image shifted by ``k`` cell
    vectors lies at least ``(s + k - 1) f_c`` (or ``-(s + k) f_c``) from every
    atom, ``f_c`` the distance between the cell's faces: images farther than
    ``reach`` are never made, so the point count stays proportional to the
    atoms (plus a skin of width ``reach``).  Every atom is ``L``, the shortest
    lattice vector, from its own image, so no pair farther than ``L`` can have
    a smaller ``d / (r_i + r_j)`` than the atom with the largest radius and
    its image: ``reach`` is capped at ``L``, which bounds the number of image
    shells of any cell, however small or skewed.
    """
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if not pbc.any():
        return positions, None, None, reach
    from ase.geometry import complete_cell, minkowski_reduce

    given = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    missing = [axis for axis in range(3) if pbc[axis] and not np.any(given[axis])]
    if missing:
        raise GeometryError(f"periodic along axis {missing[0]} without a cell vector")
    full = np.asarray(complete_cell(given), dtype=np.float64)
    if abs(np.linalg.det(full)) < 1e-12:
        raise GeometryError("the periodic cell is singular (its vectors are coplanar)")
    full = np.asarray(minkowski_reduce(full, pbc)[0], dtype=np.float64)
    reach = min(reach, float(np.linalg.norm(full[pbc], axis=1).min()) * (1 + _MARGIN))
    inverse = np.linalg.inv(full)
    scaled = positions @ inverse
    scaled[:, pbc] -= np.floor(scaled[:, pbc])
    wrapped = scaled @ full
    face = 1.0 / np.linalg.norm(inverse, axis=0)
    shells = [int(reach // face[c]) + 1 if pbc[c] else 0 for c in range(3)]
    # shifts along each axis with 0 first, and which (shift, atom) may be in reach
    steps = [np.array([0, *[k for n in range(1, m + 1) for k in (n, -n)]]) for m in shells]
    keep = np.ones([len(s) for s in steps] + [len(positions)], dtype=bool)
    for c in range(3):
        if not pbc[c]:
            continue
        t = scaled[None, :, c] + steps[c][:, None]
        outside = np.maximum(np.maximum(t - 1.0, -t), 0.0) * face[c]
        shape = [1, 1, 1, len(positions)]
        shape[c] = len(steps[c])
        keep &= (outside < reach).reshape(shape)
    k0, k1, k2, atom = np.nonzero(keep)
    shift = np.stack([steps[0][k0], steps[1][k1], steps[2][k2]], axis=1)
    points = wrapped[atom] + shift @ full
    return wrapped, points, atom, reach


def short_bond_structures(structures, ratio: float = SHORT_BOND_RATIO):
    """Structures whose shortest bond is below ``ratio`` times the covalent-radii sum.

    Parameters
    ----------
    structures : fredask.store.StructureTable, FeatureStore or sequence of ase.Atoms
        A store is read through its ``structure_table()``.  For ``ase.Atoms``
        the subset is ``info["subset"]`` and the source file
        ``info["source_file"]``, else ``"<subset>:<name>"`` from
        ``info["name"]`` (what the demo writes into its store), else ``""``.
    ratio : float
        Threshold on ``distance / (r_i + r_j)``; finite and above 0.

    Returns
    -------
    pandas.DataFrame
        One row per flagged structure, indexed by structure index (``structure``),
        in order, with columns ``subset``, ``source_file``, ``formula`` (Hill
        notation), ``shortest_ratio`` (min over atom pairs, periodic images
        included, of ``distance / (r_i + r_j)``), ``distance`` (Angstrom) and
        ``elements`` of that pair (heavier first, e.g. ``"Si-O"``).

    Raises
    ------
    GeometryError
        ``ratio`` is not a finite number above 0, or a structure is periodic
        along an axis without a cell vector (naming the structure).
    """
    import pandas as pd

    ratio = check_ratio(ratio)
    rows, index = [], []
    for k, (numbers, positions, cell, pbc, subset, source) in enumerate(_each(structures)):
        try:
            found = shortest_bond(numbers, positions, cell, pbc, ratio)
        except GeometryError as error:
            raise GeometryError(f"structure {k}: {error}") from None
        if found is None:
            continue
        relative, distance, i, j = found
        index.append(k)
        rows.append(
            (subset, source, _formula(numbers), relative, distance, _pair(numbers[i], numbers[j]))
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS), index=pd.Index(index, name="structure"))
    return frame.astype({"shortest_ratio": np.float64, "distance": np.float64})


def _each(structures):
    """``(numbers, positions, cell, pbc, subset, source_file)`` of every structure."""
    if hasattr(structures, "structure_table"):
        structures = structures.structure_table()
    if hasattr(structures, "offset") and hasattr(structures, "numbers"):
        table = structures
        for k in range(table.n_structures):
            start = int(table.offset[k])
            stop = start + int(table.n_atoms[k])
            yield (
                np.asarray(table.numbers[start:stop]),
                table.positions[start:stop],
                table.cell[k],
                table.pbc[k],
                str(table.subset[k]),
                str(table.source_file[k]),
            )
        return
    if not isinstance(structures, Sequence):
        raise GeometryError(
            f"expected a StructureTable, a FeatureStore or a list of ase.Atoms, "
            f"got {type(structures).__name__}"
        )
    for atoms in structures:
        info = getattr(atoms, "info", {})
        subset = str(info.get("subset", ""))
        source = info.get("source_file")
        if source is None:
            source = f"{subset}:{info['name']}" if "name" in info else ""
        yield (
            np.asarray(atoms.numbers),
            atoms.positions,
            atoms.cell.array,
            atoms.pbc,
            subset,
            str(source),
        )


def _formula(numbers) -> str:
    from ase.formula import Formula
    from ase.symbols import Symbols

    return Formula.from_list(list(Symbols(numbers))).format("hill")


def _pair(a: int, b: int) -> str:
    from ase.data import chemical_symbols

    heavier, lighter = (a, b) if a >= b else (b, a)
    return f"{chemical_symbols[heavier]}-{chemical_symbols[lighter]}"
