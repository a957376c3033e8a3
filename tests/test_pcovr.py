"""PCovR maps from the one pass, against scikit-matter's ``PCovR`` on the data in memory.

The oracle is scikit-matter 0.4.1: ``StandardFlexibleScaler`` (features
``column_wise=False``, targets ``column_wise=True``) then
``PCovR(mixing, n_components).fit(X, Y).transform(X)``, in float64.  Nothing
the tests compare with comes from fredask.  Signs are compared as they are:
fredask's sign rule must be scikit-learn's ``svd_flip``.
"""

import json
import warnings

import ase.io
import dask.array as da
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.collections import g2

from fredask.cli import main as cli_main
from fredask.maps import PCovRError, pcovr, store_pcovr
from fredask.stats.checks import NonFiniteFeaturesError
from fredask.stats.features import FeatureInputError, as_feature_set
from fredask.store import FeatureStore, StoreError, read_structures
from fredask.store.properties import property_table

#: Agreement with scikit-matter, relative to the largest coordinate (measured: ~1e-14).
RTOL = 1e-9


def skmatter_map(x, y, mixing, n_components, scaling="standard", **options):
    """scikit-matter's fitted PCovR, its projection of the rows, and its preprocessed X, Y."""
    from skmatter.decomposition import PCovR
    from skmatter.preprocessing import StandardFlexibleScaler

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    if scaling == "standard":
        x = StandardFlexibleScaler(column_wise=False).fit_transform(x)
        y = StandardFlexibleScaler(column_wise=True).fit_transform(y)
    elif scaling == "centre":
        x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    with warnings.catch_warnings():  # "does not automatically center data" (scaling="none")
        warnings.simplefilter("ignore", UserWarning)
        model = PCovR(mixing=mixing, n_components=n_components, **options).fit(x, y)
        return model, model.transform(x), x, y


def assert_same_map(ours, model, projection, x, y, rtol=RTOL):
    """Projection, eigenvalues, projectors and score of fredask equal to scikit-matter's."""
    scale = np.abs(projection).max()
    np.testing.assert_allclose(ours.projection, projection, rtol=0, atol=rtol * scale)
    top = model.singular_values_[0] ** 2
    np.testing.assert_allclose(ours.eigenvalues, model.singular_values_**2, rtol=0, atol=rtol * top)
    np.testing.assert_allclose(
        ours.explained_variance, model.explained_variance_, rtol=0, atol=rtol * top
    )
    np.testing.assert_allclose(
        ours.explained_variance_ratio, model.explained_variance_ratio_, rtol=0, atol=rtol
    )
    for name in ("pty", "pxy"):
        theirs = getattr(model, f"{name}_").reshape(getattr(ours, name).shape)
        atol = rtol * max(np.abs(theirs).max(), 1e-300)
        np.testing.assert_allclose(getattr(ours, name), theirs, rtol=0, atol=atol, err_msg=name)
    with warnings.catch_warnings():  # "does not automatically un-center data"
        warnings.simplefilter("ignore", UserWarning)
        assert ours.score == pytest.approx(model.score(x, y), abs=rtol)


@pytest.fixture(scope="module")
def data(make_features):
    """300 rows, 12 features, 3 targets (p != q)."""
    return make_features(300, 12, 3, seed=3)


@pytest.mark.parametrize("scaling", ["standard", "centre", "none"])
@pytest.mark.parametrize("mixing", [0.0, 0.5, 1.0])
def test_equals_skmatter(data, mixing, scaling):
    x, y = data
    ours = pcovr(x, y, mixing, 2, scaling=scaling, client="sync")
    model, projection, xs, ys = skmatter_map(x, y, mixing, 2, scaling)
    assert_same_map(ours, model, projection, xs, ys)
    np.testing.assert_allclose(ours.ptx, model.ptx_, rtol=0, atol=RTOL * np.abs(model.ptx_).max())
    weights = model.regressor_.coef_.T
    np.testing.assert_allclose(
        ours.regression_weights, weights, rtol=0, atol=RTOL * np.abs(weights).max()
    )
    np.testing.assert_allclose(ours.transform(x), ours.projection, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mixing", [0.0, 0.5, 1.0])
def test_gram_statistics_equal_skmatter(data, mixing):
    x, y = data
    ours = pcovr(x, y, mixing, 3, method="gram", client="sync")
    assert_same_map(ours, *skmatter_map(x, y, mixing, 3), rtol=1e-8)


def test_one_target_given_as_a_vector(data):
    """q = 1: at mixing 0 the map has one direction (Yhat); the second is zero in both."""
    x, y = data
    for mixing in (0.0, 0.3, 1.0):
        ours = pcovr(x, y[:, 0], mixing, 2, client="sync")
        model, projection, xs, ys = skmatter_map(x, y[:, 0], mixing, 2)
        assert_same_map(ours, model, projection, xs, ys)
    assert np.all(ours.pty.shape == (2, 1))
    zero = pcovr(x, y[:, 0], 0.0, 2, client="sync")
    assert np.all(zero.projection[:, 1] == 0.0) and zero.eigenvalues[1] < 1e-12


@pytest.mark.parametrize("mixing", [0.0, 0.5, 1.0])
def test_rank_deficient_features(make_features, mixing):
    x, y = make_features(300, 12, 2, seed=5, rank_deficient=True)  # rank 6
    model, projection, xs, ys = skmatter_map(x, y, mixing, 4)
    noise = np.sort(np.linalg.eigvalsh(xs.T @ xs))[:6]
    assert np.abs(noise).max() < 1e-12  # the premise: scikit-matter drops the null space too
    assert_same_map(pcovr(x, y, mixing, 4, client="sync"), model, projection, xs, ys)
    full = pcovr(x, y, mixing, 12, client="sync")  # beyond the rank: zero coordinates
    assert np.all(full.projection[:, 6:] == 0.0) and np.all(full.eigenvalues[6:] == 0.0)
    np.testing.assert_allclose(
        full.projection[:, :4], projection, rtol=0, atol=RTOL * np.abs(projection).max()
    )


def test_fewer_rows_than_features_is_the_feature_space_form(make_features):
    """n < p: scikit-matter's space="feature"; its default (sample space) up to signs."""
    x, y = make_features(40, 60, 1, seed=9)
    ours = pcovr(x, y, 0.5, 3, client="sync")
    assert_same_map(ours, *skmatter_map(x, y, 0.5, 3, space="feature"))
    _, sample, _, _ = skmatter_map(x, y, 0.5, 3)
    np.testing.assert_allclose(np.abs(ours.projection), np.abs(sample), rtol=0, atol=1e-9)


def test_float32_features_are_taken_as_exact(data):
    x, y = data
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    ours = pcovr(x32, y32, 0.5, 2, client="sync")
    assert_same_map(ours, *skmatter_map(x32.astype(np.float64), y32.astype(np.float64), 0.5, 2))


def test_huge_and_tiny_magnitudes_give_the_same_standard_map(data):
    """Features near 2**700 and targets near 2**-600: exact powers of two, the same map."""
    x, y = data
    plain = pcovr(x, y, 0.5, 2, client="sync")
    extreme = pcovr(x * 2.0**700, y * 2.0**-600, 0.5, 2, client="sync")
    np.testing.assert_array_equal(extreme.projection, plain.projection)
    with pytest.raises(PCovRError, match=r"beyond 2\*\*256, .* use scaling='standard'"):
        pcovr(x * 2.0**700, y, scaling="centre", client="sync")


@pytest.mark.parametrize("kind", ["numpy", "dask", "zarr", "xarray-dask"])
def test_input_containers_and_chunks_agree(data, as_input, kind):
    x, y = data
    features = as_input(kind, x, "x", chunk_rows=37)  # 9 chunks, the last one short
    target = da.from_array(y, chunks=(50, 3)) if kind == "dask" else y
    ours = pcovr(features, target, 0.5, 2, client="threads")
    assert_same_map(ours, *skmatter_map(x, y, 0.5, 2))


def test_feature_set_input_names_its_model(data):
    x, y = data
    features = as_feature_set({"a": x, "b": x[:, ::-1] ** 2})
    ours = pcovr(features, y, 0.5, 2, model="b", client="sync")
    assert_same_map(ours, *skmatter_map(x[:, ::-1] ** 2, y, 0.5, 2))
    with pytest.raises(PCovRError, match=r"name the model to map .*\('a', 'b'\)"):
        pcovr(features, y, client="sync")
    with pytest.raises(PCovRError, match="no features named 'c'"):
        pcovr(features, y, model="c", client="sync")


def test_many_rows_and_chunks_equal_the_full_solver(make_features):
    """1200 rows in 24 chunks (a merge tree of depth 2): scikit-matter's exact solver.

    Above 500 rows scikit-matter's default is a randomized SVD of C~; fredask
    always decomposes it exactly.
    """
    x, y = make_features(1200, 20, 2, seed=7)
    ours = pcovr(da.from_array(x, chunks=(50, 20)), y, 0.5, 3, client="threads")
    assert_same_map(ours, *skmatter_map(x, y, 0.5, 3, svd_solver="full"))


def test_each_chunk_is_read_once_per_pass(data):
    """One pass for the statistics, one for the projection: two reads of every chunk."""
    x, y = data

    class Counted:
        def __init__(self, values):
            self.values, self.reads = values, []
            self.shape, self.dtype, self.ndim = values.shape, values.dtype, values.ndim

        def __getitem__(self, key):
            if key[0].stop > key[0].start:  # not Dask's empty probe of the dtype
                self.reads.append(key[0].start)
            return self.values[key]

    counted = Counted(x)
    pcovr(da.from_array(counted, chunks=(60, 12), asarray=False), y, 0.5, 2, client="sync")
    starts = sorted(counted.reads)
    assert starts == sorted(list(range(0, 300, 60)) * 2)


def test_fitted_rows_and_out_of_sample_projection(data):
    """``rows=``: fitted on a subset (NaN elsewhere is not read), every row projected."""
    from skmatter.preprocessing import StandardFlexibleScaler

    x, y = data
    rows = np.arange(0, 300, 3)
    y_missing = y.copy()
    y_missing[1::3] = np.nan
    ours = pcovr(x, y_missing, 0.5, 2, rows=rows, client="sync")
    model, _, _, _ = skmatter_map(x[rows], y[rows], 0.5, 2)
    x_scaler = StandardFlexibleScaler(column_wise=False).fit(x[rows])
    everywhere = model.transform(x_scaler.transform(x))
    np.testing.assert_allclose(
        ours.projection, everywhere, rtol=0, atol=RTOL * np.abs(everywhere).max()
    )
    assert ours.n_fitted == rows.size


def test_skmatter_ch4_power_spectrum_against_bispectrum(ch4):
    """The degenerate CH4 manifold: P (rank ~5 of 12) mapped against the bispectrum."""
    power, bispectrum = ch4
    varying = bispectrum.var(axis=0) > 1e-12  # StandardFlexibleScaler refuses the others
    for mixing in (0.0, 0.5, 1.0):
        ours = pcovr(power, bispectrum[:, varying], mixing, 2, client="sync")
        assert_same_map(ours, *skmatter_map(power, bispectrum[:, varying], mixing, 2), rtol=1e-8)
        ours = pcovr(power, bispectrum, mixing, 2, scaling="centre", client="sync")
        model = skmatter_map(power, bispectrum, mixing, 2, "centre")
        assert_same_map(ours, *model, rtol=1e-8)


@pytest.mark.parametrize("mixing", [-0.1, 1.5, float("nan"), "0.5"])
def test_mixing_outside_the_unit_interval_is_refused(data, mixing):
    x, y = data
    with pytest.raises(PCovRError, match=r"^mixing must lie in \[0, 1\], got") as raised:
        pcovr(x, y, mixing, client="sync")
    assert "\n" not in str(raised.value)


def test_bad_requests_are_one_line(data):
    x, y = data
    cases = [
        ({"n_components": 0}, PCovRError, "n_components must be a positive integer"),
        ({"n_components": 2.0}, PCovRError, "n_components must be a positive integer"),
        ({"n_components": 13}, PCovRError, r"at most min\(rows, features\) = min\(300, 12\)"),
        ({"rows": [4]}, PCovRError, "at least 2 fitted rows"),
        ({"n_components": 3, "rows": [0, 1]}, PCovRError, r"min\(2, 12\) = 2"),
        ({"scaling": "unit"}, PCovRError, "scaling must be one of"),
    ]
    for options, error, message in cases:
        with pytest.raises(error, match=message) as raised:
            pcovr(x, y, **{"client": "sync", **options})
        assert "\n" not in str(raised.value)
    with pytest.raises(FeatureInputError, match="row counts differ"):
        pcovr(x, y[:-1], client="sync")
    with pytest.raises(PCovRError, match="column 1 of the target 'energy' is constant"):
        pcovr(x, np.c_[y[:, 0], np.full(300, 2.5)], names=("m", "energy"), client="sync")
    with pytest.raises(PCovRError, match="the features are constant"):
        pcovr(np.ones((300, 4)), y, scaling="centre", client="sync")
    bad = y.copy()
    bad[17, 1] = np.nan
    with pytest.raises(NonFiniteFeaturesError, match=r"'energy' hold NaN .* rows \[17\]"):
        pcovr(x, bad, names=("m", "energy"), client="sync")


# -- properties in the store -------------------------------------------------------------
def test_properties_read_with_the_structures():
    water, methane, ammonia = g2["H2O"], g2["CH4"], g2["NH3"]
    water.info.update(band_gap=7, name="water", flag=True, subset="mol")
    water.calc = SinglePointCalculator(water, energy=-14.5)
    methane.info.update(energy=-24.0, energy_per_atom=-5.0)  # given: kept
    ammonia.calc = SinglePointCalculator(ammonia, energy=-19.0, forces=np.zeros((4, 3)))
    ammonia.info["energy"] = 99.0  # the calculator's value wins
    names, values = property_table([water, methane, ammonia])
    assert names.tolist() == ["band_gap", "energy", "energy_per_atom"]
    expected = [[7.0, -14.5, -14.5 / 3], [np.nan, -24.0, -5.0], [np.nan, -19.0, -19.0 / 4]]
    np.testing.assert_array_equal(values, expected)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """A store of 40 g2 molecules with energies, from an extxyz file, and two models.

    Model "a" is float32 and the energy is a sum of a linear function of its
    features; one structure has no energy (NaN).
    """
    folder = tmp_path_factory.mktemp("pcovr")
    atoms = [g2[name] for name in list(g2.names)[:40]]
    n_atoms = sum(len(a) for a in atoms)
    rng = np.random.default_rng(11)
    latent = rng.normal(size=(n_atoms, 5))
    a = np.tanh(latent @ rng.normal(size=(5, 10))) + 0.1 * rng.normal(size=(n_atoms, 10))
    b = np.tanh(latent @ rng.normal(size=(5, 14)))
    weights, start = rng.normal(size=10), 0
    for i, structure in enumerate(atoms):
        energy = float((a[start : start + len(structure)] @ weights).sum())
        start += len(structure)
        structure.info["subset"] = "mol"
        if i != 7:
            structure.calc = SinglePointCalculator(structure, energy=energy)
    ase.io.write(folder / "molecules.xyz", atoms, format="extxyz")
    table = read_structures([folder / "molecules.xyz"])
    store = FeatureStore.create(folder / "s.zarr", table, chunk_rows=64)
    store.add_features("a", a.astype(np.float32), {"model": "a"}, table.fingerprint)
    store.add_features("b", b, {"model": "b"}, table.fingerprint)
    return folder / "s.zarr"


def test_store_records_energy_and_energy_per_atom(store_path):
    store = FeatureStore.open(store_path)
    assert store.property_names() == ["energy", "energy_per_atom"]
    energy, per_atom = (
        store.structure_property("energy"),
        store.structure_property("energy_per_atom"),
    )
    n_atoms = store.n_atoms_per_structure()
    assert np.isnan(energy[7]) and np.isnan(per_atom[7])
    np.testing.assert_allclose(per_atom, energy / n_atoms, rtol=1e-15)
    assert "properties: energy, energy_per_atom" in store.info()
    assert list(store.structures().columns[-2:]) == ["energy", "energy_per_atom"]
    assert store.verify() == []
    table = store.structure_table()  # the table round trip keeps them
    assert table.property_names.tolist() == ["energy", "energy_per_atom"]
    np.testing.assert_array_equal(table.properties[:, 0], energy)
    assert table.atoms(0).info["energy"] == energy[0] and "energy" not in table.atoms(7).info
    with pytest.raises(
        StoreError,
        match=r"no property 'band_gap'; the store records energy, "
        r"energy_per_atom$",
    ):
        store.structure_property("band_gap")


def test_store_without_properties_says_so(tmp_path):
    table = read_structures([_xyz(tmp_path, [g2["H2O"], g2["CH4"]])])
    store = FeatureStore.create(tmp_path / "plain.zarr", table)
    assert FeatureStore.open(store.path).property_names() == []
    with pytest.raises(StoreError, match=r"no property 'energy'; the store records none \("):
        store.structure_property("energy")


def test_a_lost_property_array_is_named_by_the_checks(tmp_path):
    import shutil

    water = g2["H2O"]
    water.calc = SinglePointCalculator(water, energy=-14.0)
    table = read_structures([_xyz(tmp_path, [water, g2["CH4"]])])
    store = FeatureStore.create(tmp_path / "s.zarr", table)
    assert store.check() == []
    shutil.rmtree(tmp_path / "s.zarr" / "structures" / "property_names")
    reopened = FeatureStore.open(tmp_path / "s.zarr")
    assert any("structures/property_names: missing" in line for line in reopened.check())


def _xyz(folder, atoms):
    ase.io.write(folder / "plain.xyz", atoms, format="extxyz")
    return folder / "plain.xyz"


def test_store_map_at_atom_level_equals_skmatter(store_path):
    store = FeatureStore.open(store_path)
    result, inputs = store_pcovr(store, "a", "energy_per_atom", client="sync")
    per_row = np.repeat(store.structure_property("energy_per_atom"), store.n_atoms_per_structure())
    rows = np.flatnonzero(np.isfinite(per_row))
    np.testing.assert_array_equal(inputs.rows, rows)
    features = store.features("a")[:].astype(np.float64)
    model, projection, xs, ys = skmatter_map(features[rows], per_row[rows], 0.5, 2)
    fitted = result.projection[rows]
    np.testing.assert_allclose(fitted, projection, rtol=0, atol=RTOL * np.abs(projection).max())
    np.testing.assert_allclose(result.eigenvalues, model.singular_values_**2, rtol=RTOL)
    assert result.score == pytest.approx(model.score(xs, ys), abs=RTOL)
    assert np.isfinite(result.projection).all()  # the structure without energy is projected too


def test_cli_pcovr_writes_the_map_and_plot(store_path, tmp_path, capsys):
    out = tmp_path / "out"
    cli_main(
        [
            "pcovr",
            str(store_path),
            "--property",
            "energy_per_atom",
            "--model",
            "a",
            "--out",
            str(out),
            "--cluster",
            "threads",
        ]
    )
    stem = out / "pcovr_a_energy_per_atom"
    for suffix in (".json", ".npz", ".png"):
        assert stem.with_suffix(suffix).is_file()
    assert "wrote" in capsys.readouterr().out
    summary = json.loads(stem.with_suffix(".json").read_text())
    assert summary["mixing"] == 0.5 and summary["metadata"]["property"] == "energy_per_atom"
    saved = np.load(stem.with_suffix(".npz"))
    store = FeatureStore.open(store_path)
    features = store.features("a")[:].astype(np.float64)
    rows = saved["rows"]
    model, projection, _, _ = skmatter_map(features[rows], saved["values"][rows], 0.5, 2)
    np.testing.assert_allclose(
        saved["projection"][rows], projection, rtol=0, atol=RTOL * np.abs(projection).max()
    )
    assert summary["eigenvalues"] == pytest.approx((model.singular_values_**2).tolist(), rel=1e-9)
    assert saved["projection"].shape == (store.n_atoms, 2)


def test_cli_pcovr_at_structure_level_maps_the_cumulants(store_path, tmp_path):
    from skmatter.preprocessing import StandardFlexibleScaler

    out = tmp_path / "out"
    cli_main(
        [
            "pcovr",
            str(store_path),
            "--property",
            "energy",
            "--level",
            "structure",
            "--order",
            "2",
            "--model",
            "b",
            "--mixing",
            "0.3",
            "--output",
            str(out),
            "--cluster",
            "threads",
        ]
    )
    saved = np.load(out / "pcovr_structure_b_energy.npz")
    store = FeatureStore.open(store_path)
    cumulants = store.structure_features("b", "cumulants")[:][:, : 2 * 14]
    rows = saved["rows"]
    assert rows.tolist() == [s for s in range(40) if s != 7]
    model, projection, _, _ = skmatter_map(cumulants[rows], saved["values"][rows], 0.3, 2)
    np.testing.assert_allclose(
        saved["projection"][rows], projection, rtol=0, atol=RTOL * np.abs(projection).max()
    )
    scaler = StandardFlexibleScaler(column_wise=False).fit(cumulants[rows])
    unfitted = model.transform(scaler.transform(cumulants[7:8]))[0]
    np.testing.assert_allclose(
        saved["projection"][7], unfitted, rtol=0, atol=RTOL * np.abs(projection).max()
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--property", "band_gap"],
            "no property 'band_gap'; the store records energy, energy_per_atom",
        ),
        (["--property", "energy", "--mixing", "1.5"], r"--mixing 1.5: must lie in \[0, 1\]"),
        (["--property", "energy", "--mixing", "-0.5"], r"--mixing -0.5: must lie in \[0, 1\]"),
        (
            ["--property", "energy", "--n-components", "11", "--model", "a"],
            "--n-components 11: 'a' has 10 features at atom level",
        ),
        (["--property", "energy", "--n-components", "0"], "--n-components 0: must be a positive"),
        (
            ["--property", "energy", "--level", "structure", "--n-components", "40"],
            "--n-components 40: property 'energy' is known for 39 structures only",
        ),
        (["--property", "energy", "--order", "2"], "--order applies with --level structure only"),
        (["--property", "energy", "--model", "c"], "--model c: no such complete features"),
    ],
)
def test_cli_bad_requests_are_one_line(store_path, tmp_path, options, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match=message) as raised:
        cli_main(["pcovr", str(store_path), *options, "--output", str(out), "--cluster", "threads"])
    assert str(raised.value).startswith("fredask pcovr: ") and "\n" not in str(raised.value)
    assert not out.exists()


def test_cli_property_file_per_atom_or_per_structure(store_path, tmp_path):
    store = FeatureStore.open(store_path)
    per_atom = store.features("a")[:, 0].astype(np.float64)
    np.save(tmp_path / "charge.npy", per_atom)
    np.savetxt(tmp_path / "short.txt", per_atom[:-1])
    out = tmp_path / "out"
    cli_main(
        [
            "pcovr",
            str(store_path),
            "--property-file",
            str(tmp_path / "charge.npy"),
            "--model",
            "b",
            "--output",
            str(out),
            "--cluster",
            "threads",
        ]
    )
    saved = np.load(out / "pcovr_b_charge.npz")
    np.testing.assert_array_equal(saved["values"], per_atom)
    _, projection, _, _ = skmatter_map(store.features("b")[:], per_atom, 0.5, 2)
    np.testing.assert_allclose(
        saved["projection"], projection, rtol=0, atol=RTOL * np.abs(projection).max()
    )
    with pytest.raises(
        SystemExit,
        match=r"short.txt has shape \(\d+,\); expected one value per "
        r"structure \(40\) or one per atom",
    ):
        cli_main(
            [
                "pcovr",
                str(store_path),
                "--property-file",
                str(tmp_path / "short.txt"),
                "--output",
                str(out),
                "--cluster",
                "threads",
            ]
        )
