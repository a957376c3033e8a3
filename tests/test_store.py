"""The feature store: round trips, xarray, fingerprints, format checks, locking."""

import numpy as np
import pytest
import xarray as xr
import zarr
from ase.build import bulk
from ase.collections import g2, s22

from fredask.stats.features import from_zarr_in_tasks
from fredask.store import FORMAT_VERSION, FeatureStore, StoreError
from fredask.store.structures import StructureFileError, StructureTable, read_structures


@pytest.fixture(scope="module")
def structures():
    atoms = [g2[name] for name in ("H2O", "CH4", "C6H6", "NH3")] + list(s22)[:3]
    atoms.append(bulk("Si", "diamond", a=5.43).repeat((2, 2, 2)))
    for i, a in enumerate(atoms):
        a.info["subset"] = "bulk" if a.pbc.any() else ("dimer" if i >= 4 else "molecule")
    return atoms


@pytest.fixture
def table(structures):
    return StructureTable.from_atoms(structures, source_file="collections")


@pytest.fixture
def store(tmp_path, table):
    return FeatureStore.create(tmp_path / "s.zarr", table, chunk_rows=16)


def test_structure_table_round_trip(store, table, structures):
    reopened = FeatureStore.open(store.path).structure_table()
    for field in table.__dataclass_fields__:
        original, back = getattr(table, field), getattr(reopened, field)
        assert back.dtype.kind == original.dtype.kind, field
        np.testing.assert_array_equal(back, original, err_msg=field)
    for i, atoms in enumerate(structures):
        rebuilt = reopened.atoms(i)
        assert rebuilt == atoms  # numbers, positions, cell, pbc
        assert rebuilt.info["subset"] == atoms.info["subset"]
    assert list(store.structures()["subset"]) == [a.info["subset"] for a in structures]
    assert store.atom_subsets().shape == (table.n_atoms_total,)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_features_round_trip_keeps_values_and_dtype(store, table, dtype):
    values = np.random.default_rng(0).normal(size=(table.n_atoms_total, 7)).astype(dtype)
    store.add_features("m", values, {"model": "test", "package": "numpy"}, table.fingerprint)
    reopened = FeatureStore.open(store.path)
    back = reopened.features("m")[:]
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, values)
    assert reopened.feature_names() == ["m"]
    assert reopened.features("m").attrs["model"] == "test"
    assert reopened.features("m").chunks == (16, 7)


def test_xarray_opens_structures_and_features(store, table):
    values = np.ones((table.n_atoms_total, 3), dtype=np.float32)
    store.add_features("a", values, {"model": "a"})
    features = xr.open_zarr(store.path, group="features", consolidated=False)
    assert features["a"].dims == ("atom", "a_feature")
    np.testing.assert_array_equal(features["a"].values, values)
    table_ds = xr.open_zarr(store.path, group="structures", consolidated=False)
    assert table_ds["n_atoms"].dims == ("structure",)
    assert table_ds["positions"].dims == ("atom", "xyz")
    np.testing.assert_array_equal(table_ds["n_atoms"].values, table.n_atoms)


def test_fingerprint_mismatch_is_refused(store, structures, table):
    moved = [a.copy() for a in structures]
    moved[5].positions[0, 0] += 1e-9
    other = StructureTable.from_atoms(moved)
    values = np.zeros((table.n_atoms_total, 2))
    with pytest.raises(StoreError, match="first at structure 5"):
        store.add_features("m", values, {"model": "m"}, other.fingerprint)
    reordered = StructureTable.from_atoms(structures[1:] + structures[:1])
    with pytest.raises(StoreError, match="first at structure 0"):
        store.check_fingerprints(reordered.fingerprint)
    assert store.feature_names(complete_only=False) == []


def test_wrong_shape_and_nan_features_leave_nothing_behind(store, table):
    with pytest.raises(StoreError, match="the store holds 64 atoms"):
        store.add_features("m", np.zeros((10, 2)), {"model": "m"})
    values = np.zeros((table.n_atoms_total, 2))
    values[40, 1] = np.nan
    with pytest.raises(StoreError, match=r"NaN or infinite values \(row 40\)"):
        store.add_features("bad", values, {"model": "bad"})
    assert store.feature_names(complete_only=False) == []  # the partial write is deleted
    assert "features/" not in store.info()
    with pytest.raises(StoreError, match="no features named"):
        store.feature_arrays(["bad"])


def test_not_a_store_and_newer_format_are_refused(tmp_path, store):
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreError, match="not a fredask store"):
        FeatureStore.open(tmp_path / "plain.zarr")
    with pytest.raises(StoreError, match="no such store"):
        FeatureStore.open(tmp_path / "missing.zarr")
    group = zarr.open_group(store.path, mode="a")
    group.attrs["fredask"] = {**group.attrs["fredask"], "format_version": FORMAT_VERSION + 1}
    with pytest.raises(StoreError, match="newer than this fredask understands"):
        FeatureStore.open(store.path)


def test_existing_store_is_not_overwritten_silently(store, table):
    with pytest.raises(StoreError, match="exists"):
        FeatureStore.create(store.path, table)


def test_second_writer_is_refused(store):
    with store.writing("m"):
        with pytest.raises(StoreError, match="another process is writing features 'm'"):
            with FeatureStore.open(store.path, mode="a").writing("m"):
                pass
    with store.writing("m"):  # released
        pass


def test_read_structures_errors_name_the_file(tmp_path):
    with pytest.raises(StructureFileError, match=r"missing\.xyz: no such file"):
        read_structures([tmp_path / "missing.xyz"])
    (tmp_path / "empty.xyz").write_text("")
    with pytest.raises(StructureFileError, match=r"empty\.xyz"):
        read_structures([tmp_path / "empty.xyz"])
    (tmp_path / "bad.xyz").write_text("3\nnot a comment line\nH 0 0\n")
    with pytest.raises(StructureFileError, match=r"bad\.xyz: cannot read"):
        read_structures([tmp_path / "bad.xyz"])


def test_read_structures_from_extxyz(tmp_path, structures):
    import ase.io

    ase.io.write(tmp_path / "all.xyz", structures, format="extxyz")
    table = read_structures([tmp_path / "all.xyz"])
    assert table.n_structures == len(structures)
    assert list(table.subset) == [a.info["subset"] for a in structures]
    assert list(table.source_index) == list(range(len(structures)))
    np.testing.assert_array_equal(
        table.fingerprint, StructureTable.from_atoms(structures).fingerprint
    )


def test_structures_overlapping_a_row_range(table):
    for start, stop in [(0, 16), (16, 32), (3, 4), (40, 64)]:
        found = table.structures_overlapping(start, stop)
        expected = [
            s
            for s in range(table.n_structures)
            if table.offset[s] < stop and table.offset[s] + table.n_atoms[s] > start
        ]
        assert list(found) == expected


def test_structures_in_rows_reads_the_overlapping_structures(store, table, structures):
    for start, stop in [(0, 16), (16, 32), (3, 4), (40, 64), (0, 64)]:
        found = store.structures_in_rows(start, stop)
        indices = list(table.structures_overlapping(start, stop))
        assert [a.info["structure_index"] for a in found] == indices
        for atoms, index in zip(found, indices, strict=True):
            assert atoms == structures[index]
            assert atoms.info["subset"] == structures[index].info["subset"]


@pytest.mark.parametrize(
    ("rows", "storage_rows", "task_bytes", "expected"),
    [
        (10000, 100, 400 * 8 * 3, 400),  # 4 storage chunks fit the task bytes
        (1000, 100, 10**9, 200),  # 10 chunks: 2 per task, for at least 4 tasks
        (1000, 100, 1, 100),  # a task holds at least one storage chunk
        (250, 100, 10**9, 100),  # fewer chunks than min_tasks: one each
    ],
)
def test_zarr_is_read_in_tasks_of_whole_storage_chunks(
    tmp_path, rows, storage_rows, task_bytes, expected
):
    values = np.arange(rows * 3, dtype=np.float64).reshape(rows, 3)
    stored = zarr.create_array(
        tmp_path / "x.zarr", shape=values.shape, chunks=(storage_rows, 3), dtype=values.dtype
    )
    stored[:] = values
    lazy = from_zarr_in_tasks(stored, task_bytes=task_bytes)
    assert lazy.chunks[0][0] == expected
    assert all(c % storage_rows == 0 for c in lazy.chunks[0][:-1])
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), values)
