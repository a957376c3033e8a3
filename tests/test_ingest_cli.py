"""Ingest of existing feature files, and the store commands of the CLI."""

import json

import ase.io
import h5py
import numpy as np
import pytest
from ase.collections import g2

from fredask import metrics
from fredask.cli import main as cli_main
from fredask.stats.splits import stratified_split
from fredask.store import FeatureStore, StoreError
from fredask.store.ingest import ingest, load_feature_file
from fredask.store.structures import read_structures

NAMES = ("H2O", "CH4", "C6H6", "NH3", "C2H6", "CH3OH", "C4H4O", "C5H5N", "CO2", "HCOOH")


@pytest.fixture
def structure_file(tmp_path):
    atoms = [g2[name] for name in NAMES]
    for i, a in enumerate(atoms):
        a.info["subset"] = ("odd", "even")[i % 2]
    path = tmp_path / "molecules.xyz"
    ase.io.write(path, atoms, format="extxyz")
    return path


@pytest.fixture
def n_atoms(structure_file):
    return read_structures([structure_file]).n_atoms_total


def _values(n_atoms, width, seed, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=(n_atoms, width)).astype(dtype)


def test_ingest_each_format(tmp_path, structure_file, n_atoms):
    import torch

    arrays = {name: _values(n_atoms, 3 + i, i) for i, name in enumerate("abcd")}
    np.save(tmp_path / "a.npy", arrays["a"])
    np.savez(tmp_path / "b.npz", features=arrays["b"], energies=np.zeros(3))
    torch.save({"atom_features": torch.from_numpy(arrays["c"])}, tmp_path / "c.pt")
    with h5py.File(tmp_path / "d.h5", "w") as handle:
        handle["group/features"] = arrays["d"]
    files = {
        "a": tmp_path / "a.npy",
        "b": tmp_path / "b.npz",
        "c": tmp_path / "c.pt",
        "d": tmp_path / "d.h5",
    }
    keys = {"a": None, "b": "features", "c": "atom_features", "d": "group/features"}
    table = read_structures([structure_file])
    for name, path in files.items():
        store = ingest(tmp_path / "s.zarr", table, {name: path}, key=keys[name])
    store = FeatureStore.open(tmp_path / "s.zarr")
    assert store.feature_names() == list("abcd")
    for name, values in arrays.items():
        back = store.features(name)[:]
        assert back.dtype == values.dtype
        np.testing.assert_array_equal(back, values)
        assert store.features(name).attrs["source_file"] == str(files[name])


def test_several_arrays_need_a_key(tmp_path, n_atoms):
    np.savez(tmp_path / "two.npz", x=np.zeros((n_atoms, 2)), y=np.zeros((n_atoms, 2)))
    with pytest.raises(StoreError, match=r"holds several arrays \['x', 'y'\]"):
        load_feature_file(tmp_path / "two.npz")
    with pytest.raises(StoreError, match="no array named 'z'"):
        load_feature_file(tmp_path / "two.npz", key="z")
    with pytest.raises(StoreError, match="unknown feature file type"):
        (tmp_path / "x.csv").write_text("1,2")
        load_feature_file(tmp_path / "x.csv")


def test_wrong_row_count_names_the_file(tmp_path, structure_file, n_atoms):
    np.save(tmp_path / "short.npy", np.zeros((n_atoms - 1, 4)))
    table = read_structures([structure_file])
    with pytest.raises(StoreError, match=rf"short\.npy: features of shape \({n_atoms - 1}, 4\)"):
        ingest(tmp_path / "s.zarr", table, {"m": tmp_path / "short.npy"})
    assert not (tmp_path / "s.zarr").exists()  # a refused ingest leaves no store behind


def test_ingest_refuses_other_structures(tmp_path, structure_file, n_atoms):
    np.save(tmp_path / "a.npy", _values(n_atoms, 3, 0))
    ingest(tmp_path / "s.zarr", read_structures([structure_file]), {"a": tmp_path / "a.npy"})
    shuffled = [ase.io.read(structure_file, index=i) for i in range(len(NAMES))][::-1]
    ase.io.write(tmp_path / "reversed.xyz", shuffled, format="extxyz")
    with pytest.raises(StoreError, match="not the same structures in the same order"):
        ingest(
            tmp_path / "s.zarr",
            read_structures([tmp_path / "reversed.xyz"]),
            {"b": tmp_path / "a.npy"},
        )


def test_cli_ingest_info_compare_with_paper_split(tmp_path, structure_file, n_atoms, capsys):
    latent = _values(n_atoms, 4, 9, np.float64)
    np.save(tmp_path / "a.npy", np.tanh(latent @ _values(4, 6, 1, np.float64)))
    np.save(tmp_path / "b.npy", np.tanh(latent @ _values(4, 5, 2, np.float64)) + 1)
    store = tmp_path / "s.zarr"
    cli_main(
        [
            "ingest",
            str(structure_file),
            "--store",
            str(store),
            "--features",
            f"a={tmp_path / 'a.npy'}",
            f"b={tmp_path / 'b.npy'}",
        ]
    )
    cli_main(["info", str(store)])
    out = capsys.readouterr().out
    assert f"{len(NAMES)} structures, {n_atoms} atoms" in out
    assert "features/a: 6 x float64" in out and "features/b: 5 x float64" in out
    cli_main(
        [
            "compare",
            str(store),
            "--split",
            "paper",
            "--n-test",
            "20",
            "--scheduler",
            "sync",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    result = json.loads((tmp_path / "out" / "gfre.json").read_text())
    opened = FeatureStore.open(store)
    split = stratified_split(opened.atom_subsets(), n_test=20, seed=0)
    expected = metrics.global_reconstruction_error(
        np.load(tmp_path / "a.npy"),
        np.load(tmp_path / "b.npy"),
        test_idx=split.test_idx,
        train_idx=split.train_idx,
    )
    assert result["paper"]["b"]["a"]["A_to_B"] == pytest.approx(expected, rel=1e-12)
    saved = np.load(tmp_path / "out" / "gfre_split.npz")
    np.testing.assert_array_equal(saved["test_idx"], split.test_idx)


def test_cli_info_on_a_plain_group_is_a_clear_error(tmp_path):
    import zarr

    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(SystemExit, match=r"^fredask info: .*not a fredask store"):
        cli_main(["info", str(tmp_path / "plain.zarr")])


def test_cli_extract_with_a_real_model(tmp_path, structure_file, capsys):
    pytest.importorskip("chgnet")
    store = tmp_path / "s.zarr"
    cli_main(
        [
            "extract",
            str(structure_file),
            "--model",
            "chgnet:0.3.0",
            "--store",
            str(store),
            "--scheduler",
            "sync",
        ]
    )
    out = capsys.readouterr().out
    assert "chgnet-0.3.0: 1 of 1 chunks computed" in out
    opened = FeatureStore.open(store)
    values = opened.features("chgnet-0.3.0")[:]
    assert values.shape == (opened.n_atoms, 64) and np.isfinite(values).all()
    # the same command again finds nothing to do
    cli_main(
        [
            "extract",
            str(structure_file),
            "--model",
            "chgnet:0.3.0",
            "--store",
            str(store),
            "--scheduler",
            "sync",
        ]
    )
    assert "chgnet-0.3.0: 0 of 1 chunks computed" in capsys.readouterr().out
