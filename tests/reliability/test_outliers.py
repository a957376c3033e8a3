"""Structures with unphysically short bonds: the rule, its boundary and the shipped structures.

The closed-form cases place two atoms at a chosen distance (directly or through a
periodic image); ASE's own neighbour list is the oracle of the k-d tree search on
the shipped structures and on random triclinic cells.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

ase = pytest.importorskip("ase")

from ase import Atoms  # noqa: E402
from ase.data import covalent_radii  # noqa: E402
from ase.neighborlist import neighbor_list  # noqa: E402

from fredask.errors import FredaskError  # noqa: E402
from fredask.store.datasets import physical_structures, shipped_structures  # noqa: E402
from fredask.store.geometry import (  # noqa: E402
    COLUMNS,
    SHORT_BOND_RATIO,
    GeometryError,
    short_bond_rule,
    short_bond_structures,
    shortest_bond,
)
from fredask.store.structures import StructureTable  # noqa: E402

R_SI, R_O = covalent_radii[14], covalent_radii[8]


@pytest.fixture(scope="module")
def shipped():
    return shipped_structures()


@pytest.fixture(scope="module")
def flagged(shipped):
    start = time.perf_counter()
    frame = short_bond_structures(shipped)
    return frame, time.perf_counter() - start


def _oracle(atoms, ratio):
    """ASE's neighbour list: min distance / (r_i + r_j) over pairs below ``ratio``, or None."""
    radii = covalent_radii[atoms.numbers]
    i, j, d = neighbor_list("ijd", atoms, ratio * radii)
    relative = d / (radii[i] + radii[j])
    relative = relative[relative < ratio]
    return float(relative.min()) if relative.size else None


# -- closed form -------------------------------------------------------------------


def test_two_atoms_in_a_box_give_distance_over_the_radii_sum():
    d = 1.0
    atoms = Atoms("SiO", positions=[[1, 1, 1], [1 + d, 1, 1]], cell=[10, 10, 10], pbc=False)
    frame = short_bond_structures([atoms])
    assert list(frame.columns) == list(COLUMNS)
    assert frame.index.tolist() == [0] and frame.index.name == "structure"
    row = frame.loc[0]
    assert row["shortest_ratio"] == pytest.approx(d / (R_SI + R_O), rel=1e-12)
    assert row["distance"] == pytest.approx(d, rel=1e-12)
    assert row["elements"] == "Si-O"
    assert row["formula"] == "OSi"  # Hill order without carbon: alphabetical


def test_the_shortest_bond_through_a_periodic_image_counts_only_under_pbc():
    # 9.0 A apart in a 10 A box: 1.0 A through the image across the x face
    positions = [[0.5, 5, 5], [9.5, 5, 5]]
    box = Atoms("SiO", positions=positions, cell=[10, 10, 10], pbc=False)
    periodic = Atoms("SiO", positions=positions, cell=[10, 10, 10], pbc=True)
    slab = Atoms("SiO", positions=positions, cell=[10, 10, 10], pbc=[True, False, False])
    other_axis = Atoms("SiO", positions=positions, cell=[10, 10, 10], pbc=[False, True, True])
    frame = short_bond_structures([box, periodic, slab, other_axis])
    assert frame.index.tolist() == [1, 2]
    assert frame["distance"].to_numpy() == pytest.approx([1.0, 1.0], rel=1e-12)
    assert frame["shortest_ratio"].to_numpy() == pytest.approx([1.0 / (R_SI + R_O)] * 2)


def test_an_atom_and_its_own_image_are_a_bond():
    # one Si in a 1.5 A cubic cell: its images are 1.5 A away, ratio 1.5 / (2 r_Si)
    atoms = Atoms("Si", positions=[[0.2, 0.3, 0.4]], cell=[1.5, 1.5, 1.5], pbc=True)
    relative, distance, i, j = shortest_bond(
        atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc
    )
    assert (i, j) == (0, 0)
    assert distance == pytest.approx(1.5, rel=1e-12)
    assert relative == pytest.approx(1.5 / (2 * covalent_radii[14]), rel=1e-12)
    assert shortest_bond(atoms.numbers, atoms.positions, atoms.cell.array, [False] * 3) is None


@pytest.mark.parametrize("skew", [0, 50, 10**6])
def test_a_skewed_basis_of_the_same_lattice_gives_the_same_bond(skew):
    # a simple cubic lattice of Si, a = 2 A, spanned by (2, 0, 0), (2 skew, 2, 0), (0, 0, 2):
    # the shortest bond is an atom and its image 2 A away, however skewed the basis
    cell = [[2.0, 0, 0], [2.0 * skew, 2.0, 0], [0, 0, 2.0]]
    start = time.perf_counter()
    found = shortest_bond([14], [[0.3, 0.1, 0.7]], cell, [True] * 3, ratio=1.0)
    assert time.perf_counter() - start < 1.0
    relative, distance, i, j = found
    assert (i, j) == (0, 0)
    assert distance == pytest.approx(2.0, rel=1e-9)
    assert relative == pytest.approx(2.0 / (2 * R_SI), rel=1e-9)


def test_a_tiny_cell_crowded_with_images():
    # one H in a 0.05 A cell: 0.05 A from its own images, ratio 0.05 / 0.62, found at once
    start = time.perf_counter()
    found = shortest_bond([1, 1], [[0, 0, 0], [0.01, 0.02, 0.03]], np.eye(3) * 0.05, [True] * 3)
    assert time.perf_counter() - start < 1.0
    assert found[1] == pytest.approx(np.sqrt(0.01**2 + 0.02**2 + 0.02**2), rel=1e-9)


def test_a_molecule_without_a_cell_and_atoms_outside_the_cell():
    # no cell at all, and positions far outside a periodic cell (wrapped)
    free = Atoms("OO", positions=[[-50, 3, 7], [-50, 3, 7.9]])
    outside = Atoms("OO", positions=[[103.0, -42.0, 7.0], [3.0, 8.0, -13.0]], cell=[5, 5, 5])
    outside.pbc = True  # 103 - 3 = 100 = 20 cells, -42 - 8 = -50 = -10 cells, 7 + 13 = 20 = 4 cells
    frame = short_bond_structures([free, outside])
    assert frame.index.tolist() == [0, 1]
    assert frame["distance"].to_numpy() == pytest.approx([0.9, 0.0], abs=1e-9)
    assert frame["elements"].tolist() == ["O-O", "O-O"]


def test_the_threshold_is_strict():
    d = 1.2
    atoms = Atoms("SiO", positions=[[0, 0, 0], [d, 0, 0]])
    exact = d / (R_SI + R_O)
    above, below = math.nextafter(exact, math.inf), math.nextafter(exact, -math.inf)
    assert short_bond_structures([atoms], ratio=above).index.tolist() == [0]
    assert short_bond_structures([atoms], ratio=exact).empty
    assert short_bond_structures([atoms], ratio=below).empty
    assert short_bond_structures([atoms], ratio=exact * 1.01).index.tolist() == [0]


@pytest.mark.parametrize("ratio", [0, -0.5, math.inf, math.nan, "0.8", None, True])
def test_a_bad_ratio_is_one_line(ratio):
    atoms = Atoms("SiO", positions=[[0, 0, 0], [1, 0, 0]])
    with pytest.raises(GeometryError) as error:
        short_bond_structures([atoms], ratio=ratio)
    assert isinstance(error.value, FredaskError) and isinstance(error.value, ValueError)
    message = str(error.value)
    assert "\n" not in message and message.startswith("short-bond ratio must be")
    assert repr(ratio) in message


def test_the_rule_in_words():
    assert short_bond_rule() == "shortest bond below 0.75x the sum of covalent radii"
    assert short_bond_rule(0.8) == "shortest bond below 0.8x the sum of covalent radii"
    assert SHORT_BOND_RATIO == 0.75
    with pytest.raises(GeometryError, match="got -1"):
        short_bond_rule(-1)


def test_a_periodic_axis_without_a_cell_vector_names_the_structure():
    good = Atoms("SiO", positions=[[0, 0, 0], [3, 0, 0]])
    bad = Atoms("Si", positions=[[0, 0, 0]], cell=[[4, 0, 0], [0, 4, 0], [0, 0, 0]], pbc=True)
    with pytest.raises(GeometryError, match=r"^structure 1: periodic along axis 2 without a cell"):
        short_bond_structures([good, bad])


def test_nothing_flagged_is_an_empty_frame_with_the_columns():
    frame = short_bond_structures([Atoms("SiO", positions=[[0, 0, 0], [3, 0, 0]])])
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    assert frame.index.name == "structure"


# -- against ASE's neighbour list ---------------------------------------------------


def test_random_triclinic_cells_and_partial_pbc_agree_with_ase():
    rng = np.random.default_rng(7)
    disagreements = []
    for trial in range(150):
        n = int(rng.integers(1, 7))
        cell = np.diag(rng.uniform(1.5, 6.0, 3)) + rng.uniform(-1.0, 1.0, (3, 3))
        pbc = rng.random(3) < 0.7
        atoms = Atoms(
            numbers=rng.choice([1, 6, 8, 14, 26, 92], n),
            scaled_positions=rng.uniform(-0.5, 1.5, (n, 3)),
            cell=cell,
            pbc=pbc,
        )
        ratio = float(rng.uniform(0.3, 1.4))
        expected = _oracle(atoms, ratio)
        got = shortest_bond(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, ratio)
        got = None if got is None else got[0]
        if (expected is None) != (got is None) or (got is not None and abs(got - expected) > 1e-12):
            disagreements.append((trial, expected, got))
    assert disagreements == []


def test_the_shipped_structures_agree_with_ase(shipped):
    for ratio in (SHORT_BOND_RATIO, 1.0):
        frame = short_bond_structures(shipped, ratio)
        expected = {k: _oracle(a, ratio) for k, a in enumerate(shipped)}
        expected = {k: v for k, v in expected.items() if v is not None}
        assert frame.index.tolist() == sorted(expected)
        assert frame["shortest_ratio"].to_numpy() == pytest.approx(
            [expected[k] for k in frame.index], rel=1e-12
        )


# -- the shipped structures -----------------------------------------------------------


def test_the_default_flags_only_squeezed_aflow_prototypes(flagged):
    frame, seconds = flagged
    # measured: 20 of 543, all AFLOW prototypes (generic lattice parameters), no molecule
    assert 15 <= len(frame) <= 25
    assert set(frame["subset"]) == {"aflow"}
    ullmanite = frame[frame["source_file"] == "aflow:Ullmanite"]
    assert ullmanite["shortest_ratio"].to_numpy() == pytest.approx([0.391], abs=1e-3)
    assert seconds < 5.0  # measured 0.2-0.3 s on 2 loaded cores; ASE's neighbour list: 2-3 s


def test_the_shipped_structures_flagged_at_0_8(shipped):
    start = time.perf_counter()
    frame = short_bond_structures(shipped, 0.8)
    seconds = time.perf_counter() - start
    counts = frame["subset"].value_counts().to_dict()
    # measured: 35 of 543 (29 AFLOW prototypes; 6 triple bonds C#C, C#N, N#N, which the
    # single-bond covalent radii place at 0.77-0.80: g2 CN, CCH, N2; s22 benzene-HCN,
    # ethene-ethyne; dcdft's N2 crystal); a range, so that radii tables may move a little
    assert 30 <= len(frame) <= 40
    assert 25 <= counts.get("aflow", 0) <= 35
    molecules = frame[frame["subset"].isin(["g2", "s22"])]
    assert len(molecules) <= 6
    # every flagged molecule is a triple bond just under the threshold, none is far below it
    assert (molecules["shortest_ratio"] > 0.76).all()
    assert set(molecules["elements"]) <= {"C-C", "N-C", "N-N"}
    # the far outliers are AFLOW prototypes only, e.g. Ullmanite's 1.03 A Sb-Ni bond
    far = frame[frame["shortest_ratio"] < 0.75]
    assert set(far["subset"]) == {"aflow"} and len(far) >= 15
    ullmanite = frame[frame["source_file"] == "aflow:Ullmanite"]
    assert ullmanite["shortest_ratio"].to_numpy() == pytest.approx([0.391], abs=1e-3)
    assert seconds < 5.0  # measured 0.2-0.3 s on 2 loaded cores; ASE's neighbour list: 2-3 s


def test_a_structure_table_gives_the_same_frame(shipped, flagged):
    table = StructureTable.from_atoms(
        shipped, source_file=[f"{a.info['subset']}:{a.info['name']}" for a in shipped]
    )
    from_table = short_bond_structures(table)
    assert from_table.equals(flagged[0])


def test_physical_structures_leave_out_exactly_the_flagged(shipped, flagged):
    kept, left_out = physical_structures(shipped)
    assert left_out.equals(flagged[0])
    assert len(kept) + len(left_out) == len(shipped)
    left = set(left_out.index)
    expected = [a for k, a in enumerate(shipped) if k not in left]
    assert len(kept) == len(expected) and all(a is b for a, b in zip(kept, expected, strict=True))
    assert short_bond_structures(kept).empty
    assert len(shipped_structures(subsets=("g2",))) == 162  # the default is unchanged
