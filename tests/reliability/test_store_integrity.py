"""The store never returns wrong numbers silently: sources, staging, checksums, checks.

Each case is one that once went wrong silently (issue 12): a second ingest of a
name keeping old features, a half-failed ingest mixing two files, a flipped bit
turning 0.068 into 5.4e25, an edited ``zarr.json``, a deleted chunk read as NaN.
"""

import hashlib
import os
import warnings

import numpy as np
import pytest
import zarr
from ase.build import bulk, molecule

from fredask.compare.matrix import reconstruction_matrix
from fredask.extract.base import Extractor
from fredask.extract.runner import extract
from fredask.store import FeatureStore, StoreError
from fredask.store.ingest import ingest
from fredask.store.integrity import DamagedChunkError
from fredask.store.structures import StructureTable
from fredask.structure.stored import write_cumulants

CHUNK_ROWS = 16


class TinyExtractor(Extractor):
    """Features ``seed + [Z, Z^2, ..., Z^n]`` of each atom; covers ``elements`` only."""

    name = "tiny"

    def __init__(self, n_features=3, seed=0, elements=None):
        super().__init__()
        self.n_features, self.seed, self.elements = n_features, seed, elements

    def load(self):
        pass

    def metadata(self):
        return {"model": self.name, "seed": self.seed, "n_features": self.n_features}

    def _features(self, structures):
        powers = np.arange(1, self.n_features + 1)
        return [
            (self.seed + np.asarray(a.numbers, float)[:, None] ** powers).astype(np.float32)
            for a in structures
        ]


def _structures():
    atoms = [molecule(name) for name in ("H2O", "CH4", "C6H6", "NH3", "CH3OH", "C2H6")]
    atoms += [bulk("Si", "diamond", a=5.43).repeat((2, 2, 2)), bulk("C", "diamond", a=3.57)]
    for a in atoms:
        a.info["subset"] = "bulk" if a.pbc.any() else "molecule"
    return atoms


@pytest.fixture
def table():
    return StructureTable.from_atoms(_structures(), source_file="built")


@pytest.fixture
def store(tmp_path, table):
    store = FeatureStore.create(tmp_path / "s.zarr", table, chunk_rows=CHUNK_ROWS)
    rng = np.random.default_rng(0)
    for name, width in (("a", 5), ("b", 3)):
        store.add_features(name, rng.normal(size=(table.n_atoms_total, width)), {"model": name})
    return store


def tree_hash(path) -> str:
    """A hash of every file name and content under ``path``."""
    digest = hashlib.blake2b()
    for folder, dirs, files in sorted(os.walk(path)):
        dirs.sort()
        for name in sorted(files):
            file = os.path.join(folder, name)
            digest.update(os.path.relpath(file, path).encode())
            with open(file, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def _flip_bit(path, offset=-8):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def _npy(tmp_path, name, values):
    path = tmp_path / f"{name}.npy"
    np.save(path, values)
    return path


# -- provenance: the same name again --------------------------------------------------
def test_ingest_of_another_file_under_an_existing_name_is_refused(tmp_path, table):
    rng = np.random.default_rng(1)
    first = _npy(tmp_path, "first", rng.normal(size=(table.n_atoms_total, 4)))
    second = _npy(tmp_path, "second", rng.normal(size=(table.n_atoms_total, 4)))
    store = ingest(tmp_path / "s.zarr", table, {"m": first})
    before = tree_hash(store.path)
    with pytest.raises(StoreError) as refused:
        ingest(store.path, table, {"m": second})
    message = str(refused.value)
    assert "features 'm' exist from file" in message and str(first) in message
    assert str(second) in message and "overwrite" in message
    assert tree_hash(store.path) == before
    kept = FeatureStore.open(store.path).features("m")[:]
    np.testing.assert_array_equal(kept, np.load(first))
    ingest(store.path, table, {"m": second}, overwrite=True)
    replaced = FeatureStore.open(store.path).features("m")
    np.testing.assert_array_equal(replaced[:], np.load(second))
    assert replaced.attrs["source"]["file"] == str(second)


def test_ingest_of_the_same_file_again_is_kept(tmp_path, table, caplog):
    path = _npy(tmp_path, "m", np.random.default_rng(2).normal(size=(table.n_atoms_total, 4)))
    store = ingest(tmp_path / "s.zarr", table, {"m": path})
    before = tree_hash(store.path)
    with caplog.at_level("INFO", logger="fredask"):
        ingest(store.path, table, {"m": path})
    assert "features 'm' already hold file" in caplog.text and "kept" in caplog.text
    assert tree_hash(store.path) == before


def test_failed_ingest_leaves_nothing_and_the_next_one_is_whole(tmp_path, table):
    rng = np.random.default_rng(3)
    bad_values = rng.normal(size=(table.n_atoms_total, 4))
    bad_values[-3, 2] = np.nan  # a late row: after the first chunks are written
    bad = _npy(tmp_path, "bad", bad_values)
    good = _npy(tmp_path, "good", rng.normal(size=(table.n_atoms_total, 4)))
    with pytest.raises(
        StoreError, match=rf"NaN or infinite values \(row {table.n_atoms_total - 3}\)"
    ):
        ingest(tmp_path / "s.zarr", table, {"m": bad})
    assert not (tmp_path / "s.zarr").exists()  # the store this call created is gone
    store = ingest(tmp_path / "s.zarr", table, {"m": good})
    np.testing.assert_array_equal(store.features("m")[:], np.load(good))
    assert store.features("m").attrs["source_file"] == str(good)
    # into an existing store: the failed name leaves no trace either
    before = tree_hash(store.path)
    with pytest.raises(StoreError, match="NaN"):
        ingest(store.path, table, {"n": bad})
    assert tree_hash(store.path) == before


def test_ingest_into_a_folder_that_is_not_a_store_writes_nothing(tmp_path, table):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    path = _npy(tmp_path, "m", np.zeros((table.n_atoms_total, 2)) + 1.0)
    with pytest.raises(StoreError, match="not a fredask store"):
        ingest(folder, table, {"m": path})
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_a_resumed_extraction_continues_only_the_same_source(tmp_path, table):
    store = FeatureStore.create(tmp_path / "s.zarr", table, chunk_rows=CHUNK_ROWS)
    extractor = TinyExtractor(n_features=4, seed=0)
    metadata = extractor.metadata()
    store.create_features(extractor.name, 4, "float32", metadata)  # an interrupted run
    store.write_chunk(extractor.name, 0, np.ones((CHUNK_ROWS, 4), dtype="float32"))
    other = TinyExtractor(n_features=4, seed=1)
    with pytest.raises(StoreError, match="an unfinished write of features"):
        extract(store, other, client="sync", progress=False)
    report = extract(store, other, client="sync", progress=False, overwrite=True)
    assert report.chunks_computed == store.n_chunks  # started again, nothing mixed
    again = extract(store, other, client="sync", progress=False)
    assert again.chunks_computed == 0


def test_overwrite_keeps_the_old_features_until_the_new_ones_are_complete(store, table):
    old = store.features("a")[:]
    new = np.random.default_rng(4).normal(size=old.shape)
    store.create_features("a", old.shape[1], old.dtype, {"model": "a2"}, overwrite=True)
    store.write_chunk("a", 0, new[:CHUNK_ROWS])
    np.testing.assert_array_equal(FeatureStore.open(store.path).features("a")[:], old)
    assert "a replacement of features/a is being written" in store.info()
    for index in store.pending_chunks("a"):
        start, stop = store.chunk_bounds(index)
        store.write_chunk("a", index, new[start:stop])
    store.finish_features("a")
    np.testing.assert_array_equal(FeatureStore.open(store.path).features("a")[:], new)
    assert not (store.path / "staging" / "features" / "a").exists()


# -- integrity: damaged chunks ----------------------------------------------------------
def test_a_flipped_bit_in_a_features_chunk_is_found_by_verify_and_by_compare(store):
    assert store.verify() == []
    chunk = store.path / "features" / "a" / "c" / "1" / "0"
    _flip_bit(chunk)
    problems = FeatureStore.open(store.path).verify()
    assert problems == [f"{chunk}: damaged chunk of features/a (checksum mismatch)"]
    arrays = FeatureStore.open(store.path).feature_arrays()
    with pytest.raises(DamagedChunkError, match=rf"{chunk}: damaged chunk of features/a"):
        reconstruction_matrix(arrays, "gfre", client="sync", progress=False)


@pytest.mark.parametrize("array", ["structures/positions", "structures/n_atoms", "cumulants"])
def test_a_flipped_bit_in_a_table_or_cumulant_chunk_is_found(store, array):
    if array == "cumulants":
        for name in "ab":
            write_cumulants(store, name, order=2, client="sync")
        array = "structure_features/a/cumulants"
    chunk = store.path / array / "c" / "0"
    chunk = chunk / "0" if chunk.is_dir() else chunk
    _flip_bit(chunk)
    problems = FeatureStore.open(store.path).verify()
    assert problems and problems[0].startswith(f"{chunk}: damaged chunk of {array}")
    opened = FeatureStore.open(store.path)
    with pytest.raises(DamagedChunkError, match=rf"{chunk}: damaged chunk of {array}"):
        if array.startswith("structure_features"):
            from fredask.structure.compare import structure_comparisons, structure_split

            split = structure_split(opened, ["a", "b"], n_test=4)
            results = structure_comparisons(
                opened, ["gfre"], names=["a", "b"], split=split, order_model="", client="sync"
            )
            [result for _, result in results]
        else:  # the next comparison of atom features
            reconstruction_matrix(opened.feature_arrays(), "gfre", client="sync")


def test_a_deleted_chunk_file_is_damage_not_nan_features(store):
    chunk = store.path / "features" / "b" / "c" / "2" / "0"
    chunk.unlink()
    opened = FeatureStore.open(store.path)
    assert f"DAMAGED ({chunk}: chunk file of features/b is missing)" in opened.info()
    with pytest.raises(StoreError, match=rf"{chunk}: chunk file of features/b is missing"):
        opened.feature_arrays()
    assert f"{chunk}: chunk file of features/b is missing" in opened.verify()
    with pytest.raises(DamagedChunkError, match="is missing"):  # read past the check
        reconstruction_matrix(
            {n: opened.features(n) for n in "ab"}, "gfre", client="sync", progress=False
        )


def test_an_edited_feature_shape_is_found_before_any_read(store):
    metadata = zarr.open_array(store.path / "features" / "a", mode="r").metadata.to_dict()
    import json

    path = store.path / "features" / "a" / "zarr.json"
    edited = json.loads(path.read_text())
    edited["shape"][1] = 3
    edited["chunk_grid"]["configuration"]["chunk_shape"][1] = 3
    path.write_text(json.dumps(edited))
    assert metadata["shape"][1] == 5
    with pytest.raises(
        StoreError, match=r"features/a/zarr.json: shape \(\d+, 3\), but the features"
    ):
        FeatureStore.open(store.path).feature_arrays()


def test_a_store_of_format_1_is_refused_with_what_to_do(store):
    group = zarr.open_group(store.path, mode="a", use_consolidated=False)
    group.attrs["fredask"] = {**group.attrs["fredask"], "format_version": 1}
    with pytest.raises(StoreError, match="store format 1 has no chunk checksums"):
        FeatureStore.open(store.path)


def test_a_store_missing_its_structures_is_named_as_such(store):
    import shutil

    shutil.rmtree(store.path / "structures")
    with pytest.raises(StoreError, match="damaged store, its structures/ group is missing"):
        FeatureStore.open(store.path)


# -- readers: xarray and zarr without warnings -----------------------------------------
def test_xarray_and_zarr_listings_open_the_store_without_warnings(store):
    import xarray as xr

    with store.writing("a"):  # a lock held: still no foreign file in the hierarchy
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            features = xr.open_zarr(store.path, group="features")
            table = xr.open_zarr(store.path, group="structures")
            zarr.open_group(store.path, mode="r").tree()
    assert features["a"].shape == (store.n_atoms, 5)
    assert table["n_atoms"].shape == (store.n_structures,)


def test_info_lists_the_skipped_structures(tmp_path, table):
    store = FeatureStore.create(tmp_path / "s.zarr", table, chunk_rows=CHUNK_ROWS)
    extractor = TinyExtractor(n_features=3, elements=frozenset({1, 6, 7, 8}))
    report = extract(store, extractor, client="sync", progress=False, skip_errors=True)
    assert [s["structure"] for s in report.skipped] == [6]  # Si
    info = store.info()
    assert "1 structures skipped" in info
    assert "skipped structure 6: " in info and "Si" in info


def test_an_ingest_of_several_names_refuses_before_writing_the_first(tmp_path, table):
    rng = np.random.default_rng(5)
    one = _npy(tmp_path, "one", rng.normal(size=(table.n_atoms_total, 2)))
    two = _npy(tmp_path, "two", rng.normal(size=(table.n_atoms_total, 2)))
    store = ingest(tmp_path / "s.zarr", table, {"m": one})
    before = tree_hash(store.path)
    with pytest.raises(StoreError, match="features 'm' exist from file"):
        ingest(store.path, table, {"new": two, "m": two})
    assert tree_hash(store.path) == before


def test_extraction_progress_in_a_log_is_plain_lines(tmp_path, table, capsys, monkeypatch):
    monkeypatch.setenv("FREDASK_PROGRESS_INTERVAL", "0")
    store = FeatureStore.create(tmp_path / "s.zarr", table, chunk_rows=CHUNK_ROWS)
    extract(store, TinyExtractor(), client="sync", progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) == store.n_chunks + 1  # one per chunk (interval 0), one at the end
    assert lines[-1].startswith(f"tiny: {store.n_atoms} of {store.n_atoms} atoms (100%), ")


def test_verify_names_nan_rows_outside_skipped_structures_only(tmp_path, table, store):
    extractor = TinyExtractor(n_features=3, elements=frozenset({1, 6, 7, 8}))
    skipping = FeatureStore.create(tmp_path / "k.zarr", table, chunk_rows=CHUNK_ROWS)
    extract(skipping, extractor, client="sync", progress=False, skip_errors=True)
    assert skipping.verify() == []  # the skipped Si crystal's NaN rows are expected
    # a NaN written into a complete array, checksum and all (a writer's bug)
    array = zarr.open_array(store.path / "features" / "b", mode="a")
    array[CHUNK_ROWS + 3, 1] = np.nan
    assert FeatureStore.open(store.path).verify() == [
        f"{store.path}/features/b: rows [{CHUNK_ROWS + 3}] (of 1 in chunk 1) hold NaN or "
        "infinite values outside skipped structures"
    ]


def test_ingest_into_an_empty_folder_makes_a_store_there(tmp_path, table):
    folder = tmp_path / "S.zarr"
    folder.mkdir()
    bad_values = np.ones((table.n_atoms_total, 2))
    bad_values[-1, 0] = np.inf
    with pytest.raises(StoreError, match="NaN or infinite"):
        ingest(folder, table, {"m": _npy(tmp_path, "bad", bad_values)})
    assert folder.is_dir() and not any(folder.iterdir())  # as it was: empty
    good = _npy(tmp_path, "good", np.ones((table.n_atoms_total, 2)))
    assert ingest(folder, table, {"m": good}).feature_names() == ["m"]
