"""Per-structure cumulants: the values of docs/method.md section 7, scipy, chunk edges, errors.

The references here are independent of fredask's code: per structure, the biased central
moments of ``scipy.stats.moment`` (or a plain two-pass numpy loop) and docs/method.md's explicit
cumulant formulas (fredask uses the moment-cumulant recursion).
"""

import itertools
import math
import sys

import dask.array as da
import numpy as np
import pytest
import scipy.stats
import zarr

from fredask.stats.checks import NonFiniteFeaturesError
from fredask.structure.cumulants import structure_cumulants
from fredask.structure.power_sums import (
    PowerSums,
    compiled_kernels,
    cumulants_from_sums,
    merge_power_sums,
    recentre,
    segment_cumulants,
    segment_power_sums,
    segment_power_sums_xp,
)

SPEC_ATOMS = np.array([[0, 1], [1, -1], [2, 0.5], [3, 2], [10, 0]], dtype=float)
SPEC_TEXTBOOK = [
    3.2, 0.5, 3.5440090293, 1.0, 3.7764003693, 0.0, -2.1030572413, -0.9872585449,
    -5.2357008714, 0.0, -5.7201007337, 1.2498799712, 6.1054471037, 0.0, 7.7431601667,
    -1.5515549415,
]  # fmt: skip
SPEC_PAPER_LAST_BLOCK = [8.0617974486, 1.9974649787]


def spec_kappas(mu, kappa8="textbook"):
    """docs/method.md section 7's explicit formulas; ``mu[j]`` = biased central moment j."""
    k = {2: mu[2], 3: mu[3], 4: mu[4] - 3 * mu[2] ** 2, 5: mu[5] - 10 * mu[2] * mu[3]}
    k[6] = mu[6] - 15 * mu[2] * mu[4] - 10 * mu[3] ** 2 + 30 * mu[2] ** 3
    k[7] = mu[7] - 21 * mu[2] * mu[5] - 35 * mu[3] * mu[4] + 210 * mu[2] ** 2 * mu[3]
    if kappa8 == "textbook":
        cross = 420 * mu[2] ** 2 * mu[4] + 560 * mu[2] * mu[3] ** 2
    else:  # the paper's script: the two coefficients swapped
        cross = 420 * mu[2] * mu[3] ** 2 + 560 * mu[2] ** 2 * mu[4]
    k[8] = mu[8] - 28 * mu[2] * mu[6] - 56 * mu[3] * mu[5] - 35 * mu[4] ** 2 + cross
    k[8] = k[8] - 630 * mu[2] ** 4
    return k


def reference(features, n_atoms, order=8, kappa8="textbook", root_scale=True, moment=None):
    """The paper's per-structure loop: scipy moments, explicit formulas, root scaling."""
    moment = moment or (lambda block, j: scipy.stats.moment(block, order=j, axis=0))
    features = np.asarray(features, dtype=np.float64)
    out, start = [], 0
    for n in n_atoms:
        block = features[start : start + n]
        start += n
        mu = {j: moment(block, j) for j in range(2, max(order, 4) + 1)}
        mu.update({j: np.zeros(block.shape[1]) for j in range(order + 1, 9)})
        kappa = spec_kappas(mu, kappa8)
        row = [block.mean(axis=0)]
        for j in range(2, order + 1):
            row.append(np.sign(kappa[j]) * np.abs(kappa[j]) ** (1 / j) if root_scale else kappa[j])
        out.append(np.concatenate(row))
    return np.array(out)


def exact_mean(block):
    """Column means from correctly rounded sums (``math.fsum``)."""
    return np.array([math.fsum(column) / column.size for column in block.T])


def two_pass_moment(block, j):
    """Biased central moment, corrected two-pass: exactly rounded sums, and the
    deviations re-centred on their own mean (the rounding of the first mean)."""
    deviations = block - exact_mean(block)
    deviations -= exact_mean(deviations)
    return exact_mean(deviations**j)


def ragged(seed, n_structures, low=1, high=200, n_features=3, dtype=np.float64):
    rng = np.random.default_rng(seed)
    n_atoms = rng.integers(low, high + 1, size=n_structures)
    skew = rng.exponential(size=(n_atoms.sum(), n_features))
    features = 2.0 * rng.normal(size=skew.shape) + skew**2 - 1.5
    return features.astype(dtype), n_atoms


def unscale(values, n_features):
    """Undo root scaling: block j back to sign(v) |v|^j (rounding near zero is amplified
    by the j-th root, so root-scaled values are compared after this)."""
    out = values.copy()
    for j in range(2, values.shape[1] // n_features + 1):
        block = out[:, (j - 1) * n_features : j * n_features]
        block[:] = np.sign(block) * np.abs(block) ** j
    return out


def sigma_units(values, reference_values, n_atoms, n_features, order=8):
    """Errors of raw cumulants in units of the structure's std**j (multi-atom structures)."""
    keep = n_atoms > 1
    sigma = np.sqrt(reference_values[keep][:, n_features : 2 * n_features])
    errors = []
    for j in range(2, min(order, values.shape[1] // n_features) + 1):
        cols = slice((j - 1) * n_features, j * n_features)
        diff = np.abs(values[keep][:, cols] - reference_values[keep][:, cols])
        errors.append((diff / sigma**j).max())
    return np.array(errors)


def assert_matches_reference(got, features, n_atoms, root_scaled=True, tol=1e-9):
    """Means to ``tol`` relative, cumulants j >= 2 to ``tol`` in units of std**j."""
    n_features = features.shape[1]
    expected = reference(features, n_atoms, root_scale=False)
    raw = unscale(got, n_features) if root_scaled else got
    np.testing.assert_allclose(raw[:, :n_features], expected[:, :n_features], rtol=tol)
    assert sigma_units(raw, expected, n_atoms, n_features).max() < tol


# ------------------------------------------------------------- docs/method.md, section 7


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_spec_worked_example(kind):
    features = SPEC_ATOMS if kind == "numpy" else da.from_array(SPEC_ATOMS, chunks=(2, 2))
    textbook = np.asarray(structure_cumulants(features, [5]))
    paper = np.asarray(structure_cumulants(features, [5], kappa8="paper"))
    np.testing.assert_allclose(textbook[0], SPEC_TEXTBOOK, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(paper[0, :14], SPEC_TEXTBOOK[:14], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(paper[0, 14:], SPEC_PAPER_LAST_BLOCK, rtol=1e-9)
    single = structure_cumulants(np.array([[1.5, -2.0]]), [1], order=3)
    np.testing.assert_array_equal(single, [[1.5, -2.0, 0.0, 0.0, 0.0, 0.0]])


def test_exponential_distribution_kappa8():
    """Central moments of Exp(1): kappa_j = (j - 1)!, textbook kappa_8 = 5040, paper 5740."""
    central = np.array([0, 1, 2, 9, 44, 265, 1854, 14833], dtype=float)  # S_1 = 0
    sums = PowerSums(np.ones(1), np.ones((1, 1)), central.reshape(8, 1, 1))
    textbook = cumulants_from_sums(sums, "textbook", root_scale=False)[0]
    paper = cumulants_from_sums(sums, "paper", root_scale=False)[0]
    np.testing.assert_allclose(textbook, [1, 1, 2, 6, 24, 120, 720, 5040], rtol=1e-13)
    np.testing.assert_allclose(paper[-1], 5740, rtol=1e-13)
    np.testing.assert_array_equal(paper[:-1], textbook[:-1])


# ------------------------------------------------------------ against scipy


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kappa8", ["textbook", "paper"])
def test_ragged_structures_match_scipy(dtype, kappa8):
    features, n_atoms = ragged(1, 40, dtype=dtype)
    expected = reference(features, n_atoms, kappa8=kappa8, root_scale=False)
    got = structure_cumulants(features, n_atoms, kappa8=kappa8, root_scale=False)
    assert got.dtype == np.float64 and got.shape == (40, 24)
    np.testing.assert_allclose(got[:, :3], expected[:, :3], rtol=1e-13, atol=1e-13)
    assert sigma_units(got, expected, n_atoms, 3).max() < 1e-9
    scaled = structure_cumulants(features, n_atoms, kappa8=kappa8)
    expected_scaled = reference(features, n_atoms, kappa8=kappa8)
    np.testing.assert_allclose(scaled[:, :6], expected_scaled[:, :6], rtol=1e-13)
    assert sigma_units(unscale(scaled, 3), expected, n_atoms, 3).max() < 1e-9


@pytest.mark.parametrize("order", [1, 2, 3, 5, 8])
def test_lower_orders_are_the_leading_blocks(order):
    features, n_atoms = ragged(2, 25, high=30)
    full = structure_cumulants(features, n_atoms)
    part = structure_cumulants(features, n_atoms, order=order)
    np.testing.assert_allclose(part, full[:, : order * 3], rtol=1e-14, atol=1e-14)
    expected = reference(features, n_atoms, order=order, root_scale=False)
    np.testing.assert_allclose(part[:, :3], expected[:, :3], rtol=1e-13)
    assert sigma_units(unscale(part, 3), expected, n_atoms, 3, order).max(initial=0) < 1e-9


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("chunk_rows", [1, 2, 7, 64, 150, 199, 1000])
def test_chunk_boundaries_anywhere_in_ragged_structures(dtype, chunk_rows):
    """Structures of 1..200 atoms crossing chunks of every size (one-atom chunks too)."""
    features, n_atoms = ragged(3, 30, dtype=dtype)
    chunked = da.from_array(features, chunks=(chunk_rows, 3))
    result = structure_cumulants(chunked, n_atoms, root_scale=False)
    assert isinstance(result, da.Array)
    assert not any(np.isnan(c) for c in result.chunks[0])
    expected = reference(features, n_atoms, root_scale=False)
    got = result.compute(scheduler="sync")
    np.testing.assert_allclose(got[:, :3], expected[:, :3], rtol=1e-12)
    assert sigma_units(got, expected, n_atoms, 3).max() < 1e-9


def test_every_placement_of_chunk_boundaries():
    """All 2^8 ways to cut 9 rows of structures (1, 3, 1, 2, 1, 1 atoms) into chunks."""
    n_atoms = np.array([1, 3, 1, 2, 1, 1])
    rng = np.random.default_rng(4)
    features = rng.normal(size=(9, 2)) + rng.exponential(size=(9, 2))
    for cuts in itertools.product([False, True], repeat=8):
        edges = [0, *(i + 1 for i, cut in enumerate(cuts) if cut), 9]
        chunks = tuple(np.diff(edges))
        got = structure_cumulants(da.from_array(features, chunks=(chunks, 2)), n_atoms)
        assert_matches_reference(got.compute(scheduler="sync"), features, n_atoms)


def test_one_atom_structures_have_zero_higher_cumulants():
    rng = np.random.default_rng(5)
    n_atoms = np.array([1, 5, 1, 1, 3, 1])
    features = rng.normal(size=(12, 4)) * 100 + 1e3
    chunked = da.from_array(features, chunks=(2, 4))
    got = structure_cumulants(chunked, n_atoms).compute(scheduler="sync")
    rows = np.cumsum(n_atoms) - n_atoms
    for s in np.flatnonzero(n_atoms == 1):
        np.testing.assert_array_equal(got[s, :4], features[rows[s]])
        np.testing.assert_array_equal(got[s, 4:], 0.0)


def test_empty_chunks_and_zarr_input(tmp_path):
    features, n_atoms = ragged(6, 12, high=20)
    rows = features.shape[0]
    chunks = (0, 5, 0, rows - 9, 4, 0)
    got = structure_cumulants(da.from_array(features, chunks=(chunks, 3)), n_atoms)
    assert_matches_reference(got.compute(scheduler="sync"), features, n_atoms)
    stored = zarr.create_array(
        tmp_path / "f.zarr", shape=features.shape, chunks=(17, 3), dtype=float
    )
    stored[:] = features
    lazy = structure_cumulants(stored, n_atoms)
    assert isinstance(lazy, da.Array)
    assert_matches_reference(lazy.compute(scheduler="sync"), features, n_atoms)


# ------------------------------------------------------------------ numerics


def test_large_mean_tiny_spread_keeps_its_digits():
    """Mean 1e4, spread 1e-2, float64: error of kappa_j below 1e-6 sigma^j; raw sums fail.

    (fredask's error is about 1e-10 sigma^j here; a plain float64 two-pass loop with
    numpy means is off by 7e-7 at kappa_8, from the rounding of its mean.)
    """
    rng = np.random.default_rng(7)
    n_atoms = rng.integers(1, 201, size=30)
    shape = (n_atoms.sum(), 4)
    features = 1e4 + 1e-2 * (rng.normal(size=shape) + rng.exponential(size=shape))
    expected = reference(features, n_atoms, root_scale=False, moment=two_pass_moment)
    chunked = da.from_array(features, chunks=(97, 4))
    got = structure_cumulants(chunked, n_atoms, root_scale=False).compute(scheduler="sync")
    assert sigma_units(got, expected, n_atoms, 4).max() < 1e-8
    # the array-module kernel (the GPU path), run with numpy
    sums = segment_power_sums_xp(features, n_atoms, 8)
    array_path = cumulants_from_sums(sums, root_scale=False)
    assert sigma_units(array_path, expected, n_atoms, 4).max() < 1e-8

    def raw_power_sum_moment(block, j):  # the method docs/method.md, section 7 warns about
        raw = [np.mean(block**k, axis=0) for k in range(j + 1)]
        mean = raw[1]
        return sum(float(math.comb(j, k)) * raw[j - k] * (-mean) ** k for k in range(j + 1))

    raw = reference(features, n_atoms, root_scale=False, moment=raw_power_sum_moment)
    assert sigma_units(raw, expected, n_atoms, 4).max() > 1e3


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16])
@pytest.mark.parametrize(
    ("order", "kappa8", "root_scale"),
    [(8, "textbook", True), (8, "paper", True), (8, "paper", False), (5, "paper", True),
     (3, "textbook", False), (1, "textbook", True)],
)  # fmt: skip
def test_compiled_kernel_equals_array_kernel(dtype, order, kappa8, root_scale):
    """The compiled CPU kernel and the array-module kernel (the GPU path) agree to rounding,
    on ragged structures of 1 to 200 atoms, from a non-contiguous block."""
    features, n_atoms = ragged(11, 40, n_features=7)
    if dtype == np.int16:
        features = np.round(features * 100)
    block = np.asfortranarray(features.astype(dtype))[:, 1:]  # neither C nor contiguous
    compiled = segment_cumulants(block, n_atoms, order, kappa8, root_scale)
    sums = segment_power_sums_xp(block, n_atoms, order)
    expected = cumulants_from_sums(sums, kappa8, root_scale)
    assert compiled.shape == expected.shape == (40, order * 6)
    if root_scale:
        compiled, expected = unscale(compiled, 6), unscale(expected, 6)
    np.testing.assert_allclose(compiled[:, :6], expected[:, :6], rtol=1e-13, atol=1e-13)
    keep = n_atoms > 1
    if order > 1:
        sigma = np.sqrt(expected[keep][:, 6:12])
        for j in range(2, order + 1):
            cols = slice((j - 1) * 6, j * 6)
            diff = np.abs(compiled[keep][:, cols] - expected[keep][:, cols])
            # relative, or in units of std**j where cancellation leaves kappa_j small
            assert (diff / (sigma**j + np.abs(expected[keep][:, cols]))).max() < 1e-11, j
        np.testing.assert_array_equal(compiled[~keep][:, 6:], 0.0)
    compiled_sums = segment_power_sums(block, n_atoms, order)
    np.testing.assert_allclose(compiled_sums.centre, sums.centre, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(compiled_sums.count, sums.count)


def test_without_numba_the_array_kernel_runs(monkeypatch):
    """Where numba cannot be imported (a Python it does not support yet), same results."""
    features, n_atoms = ragged(12, 25, n_features=3)
    compiled = structure_cumulants(features, n_atoms)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    monkeypatch.delitem(sys.modules, "fredask.structure.power_sums_compiled", raising=False)
    assert compiled_kernels() is None
    np.testing.assert_allclose(structure_cumulants(features, n_atoms), compiled, rtol=1e-12)


def test_merging_pieces_equals_one_segment():
    """The pairwise update of any split of a segment equals the segment's own sums."""
    rng = np.random.default_rng(8)
    rows = 1e4 + 1e-2 * rng.standard_t(3, size=(57, 5))
    whole = segment_power_sums(rows, np.array([57]), 8)
    for cut in ([10, 47], [1, 1, 55], [20, 17, 19, 1], [1] * 57):
        edges = np.cumsum([0, *cut])
        parts = [
            segment_power_sums(rows[a:b], np.array([b - a]), 8)
            for a, b in itertools.pairwise(edges)
        ]
        merged = recentre(merge_power_sums(parts), whole.centre)
        np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-15)
        deviations = np.abs(rows - rows.mean(axis=0))
        for j in range(2, 9):
            # the size of M_j's terms (heavy tails make std**j the wrong unit)
            scale = (deviations**j).sum(axis=0)
            diff = np.abs(merged.sums[j - 1] - whole.sums[j - 1])
            assert (diff / scale).max() < 1e-9, (cut, j)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("n_atoms", "message"),
    [
        ([3, 4, 5], r"sums to 12 but the features have 10 rows: structure 2 \(rows 7..11\)"),
        ([3, 4, 2], r"sums to 9 but the features have 10 rows: rows 9..9 .*structure \(2\)"),
        ([3, 0, 7], r"structure 1 has 0 atoms"),
        ([3, -1, 8], r"structure 1 has -1 atoms"),
        ([], "non-empty"),
    ],
)
def test_bad_atom_counts_name_the_structure(n_atoms, message):
    features = np.ones((10, 2))
    with pytest.raises(ValueError, match=message):
        structure_cumulants(features, np.array(n_atoms, dtype=np.int64))


def test_non_integer_atom_counts_and_bad_options():
    features = np.ones((10, 2))
    with pytest.raises(TypeError, match="integer atom counts"):
        structure_cumulants(features, [5.0, 5.0])
    for order in (0, 9, -1):
        with pytest.raises(ValueError, match=r"order must lie in 1\.\.8"):
            structure_cumulants(features, [10], order=order)
    with pytest.raises(TypeError, match="order must be an integer"):
        structure_cumulants(features, [10], order=2.0)
    with pytest.raises(ValueError, match="kappa8 must be one of"):
        structure_cumulants(features, [10], kappa8="swapped")


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_nan_features_name_the_structure(kind):
    features, n_atoms = ragged(9, 8, high=20)
    bad_structure = 5
    bad_row = int(np.cumsum(n_atoms)[bad_structure - 1] + n_atoms[bad_structure] // 2)
    features[bad_row, 1] = np.nan
    data = features if kind == "numpy" else da.from_array(features, chunks=(7, 3))
    message = rf"'m0' hold NaN or infinite values in structure 5 \(first at row {bad_row}\)"
    with pytest.raises(NonFiniteFeaturesError, match=message):
        np.asarray(structure_cumulants(data, n_atoms, name="m0"))


def test_skipped_structures_are_nan_and_not_checked():
    features, n_atoms = ragged(10, 8, high=20)
    rows = np.cumsum(n_atoms) - n_atoms
    features[rows[3] : rows[3] + n_atoms[3]] = np.nan
    chunked = da.from_array(features, chunks=(11, 3))
    got = structure_cumulants(chunked, n_atoms, skipped=[3]).compute(scheduler="sync")
    assert np.isnan(got[3]).all()
    keep = np.arange(8) != 3
    assert_matches_reference(got[keep], features[np.repeat(keep, n_atoms)], n_atoms[keep])
