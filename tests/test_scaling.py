"""Scaling studies: synthetic stores, store prefixes, speed-up arithmetic, ``fredask bench``."""

import numpy as np
import pandas as pd
import pytest
import zarr
from ase.collections import g2

from fredask.bench import Grid, read_csv, run_study, store_inputs, synthetic_store, with_scaling
from fredask.bench.data import synthetic_inputs
from fredask.bench.stages import lfre_rows
from fredask.cli import main as cli_main
from fredask.store import FeatureStore
from fredask.store.structures import StructureTable


def test_synthetic_store_is_written_by_chunks_and_reused(tmp_path):
    path = synthetic_store(tmp_path, 5000, n_models=3, n_features=16, chunk_rows=2048, seed=1)
    group = zarr.open_group(path, mode="r")
    arrays = [group[f"features/m{m}"] for m in range(3)]
    assert [a.shape for a in arrays] == [(5000, 16)] * 3
    assert {a.chunks for a in arrays} == {(2048, 16)}
    assert {a.dtype for a in arrays} == {np.dtype("float32")}
    values = arrays[2][:]
    assert np.isfinite(values).all() and values.std() > 0.1
    written = (path / "zarr.json").stat().st_mtime_ns
    assert synthetic_store(tmp_path, 5000, 3, 16, 2048, seed=1) == path
    assert (path / "zarr.json").stat().st_mtime_ns == written
    other = synthetic_store(tmp_path, 5000, 3, 16, 2048, seed=2)
    assert not np.array_equal(zarr.open_group(other)["features/m2"][:], values)
    inputs = synthetic_inputs(path, structure_atoms=16)
    assert inputs.n_atoms == 5000 and inputs.structure_sizes[-1] == 5000 % 16
    assert inputs.nbytes == 3 * 5000 * 16 * 4


def test_store_prefix_keeps_whole_structures_and_first_columns(tmp_path):
    atoms = [g2[name] for name in ("H2O", "CH4", "C6H6", "NH3", "CH3OH")]
    table = StructureTable.from_atoms(atoms)
    store = FeatureStore.create(tmp_path / "s.zarr", table, chunk_rows=8)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        store.add_features(name, rng.normal(size=(store.n_atoms, 6)), {"model": name})
    inputs = store_inputs(store.path, n_atoms=10, n_features=4, chunk_rows=4)
    # H2O (3) + CH4 (5) end at row 8; C6H6 (12) would end at 20
    assert inputs.n_atoms == 8
    assert list(inputs.structure_sizes) == [3, 5]
    assert {k: v.shape for k, v in inputs.features.items()} == {"a": (8, 4), "b": (8, 4)}
    assert inputs.features["a"].chunks[0] == (4, 4)
    np.testing.assert_array_equal(inputs.features["b"].compute(), store.features("b")[:8, :4])
    with pytest.raises(ValueError, match="not 7"):
        store_inputs(store.path, n_features=7)


def test_speedup_and_efficiency_are_against_the_fewest_workers():
    rows = [
        # stage, N, F, chunk, workers, seconds, floor
        ("gfre", 1000, 8, 100, 1, 10.0, 4.0),
        ("gfre", 1000, 8, 100, 2, 8.0, 2.5),
        ("gfre", 1000, 8, 100, 4, 4.0, 2.0),
        ("gfre", 2000, 8, 100, 2, 10.0, 5.0),
        ("gfre", 2000, 8, 100, 4, 4.0, 5.0),
    ]
    columns = ["stage", "n_atoms", "n_features", "chunk_rows", "workers", "seconds", "floor_s"]
    table = with_scaling(pd.DataFrame(rows, columns=columns))
    np.testing.assert_allclose(table["speedup"], [1.0, 1.25, 2.5, 1.0, 2.5])
    np.testing.assert_allclose(table["efficiency"], [1.0, 0.625, 0.625, 1.0, 1.25])
    np.testing.assert_allclose(table["floor_speedup"], [1.0, 1.6, 2.0, 1.0, 1.0])
    np.testing.assert_allclose(table["us_per_atom_worker"], [1e4, 16e3, 16e3, 1e4, 8e3])


def test_lfre_rows_are_a_seeded_tenth_at_most():
    test_idx, train_idx = lfre_rows(5000, 1000)
    assert test_idx.size == 500 and train_idx.size == 4500
    assert np.array_equal(np.union1d(test_idx, train_idx), np.arange(5000))
    assert np.array_equal(lfre_rows(5000, 1000)[0], test_idx)


def test_grid_checks_its_stage():
    with pytest.raises(ValueError, match="stage must be one of"):
        Grid("gemm")
    assert Grid("extraction", atoms=[10, 5], chunk_rows=[4]).points() == [(5, 0, 4), (10, 0, 4)]


def test_cli_bench_writes_csv_markdown_and_plots(tmp_path, capsys):
    output = tmp_path / "out"
    grid = "--atoms 4e3 8000 --features 16 --chunk-rows 2048 --workers 1 2 --models 3".split()
    paths = ["--data-dir", str(tmp_path / "data"), "--output", str(output)]
    cli_main(["bench", *grid, *paths, "--name", "small"])
    results = read_csv(output / "small.csv")
    assert len(results) == 4
    assert set(results["workers"]) == {1, 2} and set(results["n_atoms"]) == {4000, 8000}
    for column in ("seconds", "floor_s", "read_floor_s", "gemm_floor_s", "peak_worker_rss_mib"):
        assert (results[column] > 0).all(), column
    ratio = results["seconds"] / results["floor_s"]
    np.testing.assert_allclose(results["ratio_to_floor"], ratio, rtol=1e-5)  # CSV: 6 digits
    floor = results.read_floor_s + results.gemm_floor_s
    np.testing.assert_allclose(results["floor_s"], floor, rtol=1e-5)
    assert (results["value"].between(0.05, 1.0)).all()  # mean off-diagonal GFRE
    assert results["machine"].nunique() == 1 and "cores" in results["machine"][0]
    assert {"speedup", "efficiency", "load_before", "load_after"} <= set(results.columns)
    two = results[results["workers"] == 2]["worker_peaks_mib"]
    assert all(len(str(peaks).split()) == 2 for peaks in two)  # one peak per worker
    for name in ("small.md", "small_strong.png", "small_weak.png"):
        assert (output / name).stat().st_size > 1000, name
    assert "| gfre | 8,000 | 3 x 16 | 2,048 | 2 |" in capsys.readouterr().out


@pytest.mark.parametrize("stage", ["lfre", "cumulants"])
def test_lfre_and_cumulant_stages_run_with_their_floors(tmp_path, stage):
    if stage == "cumulants":
        pytest.importorskip("fredask.structure.cumulants")
    grid = Grid(
        stage, atoms=[6000], features=[8], chunk_rows=[2048], workers=[1], n_models=2,
        data_dir=str(tmp_path),
    )  # fmt: skip
    [row] = run_study(grid, quiet=True).to_dict("records")
    assert row["n_atoms"] == 6000 and row["n_models"] == 2 and row["workers"] == 1
    assert row["seconds"] > 0 and row["read_floor_s"] > 0
    assert (row["gemm_floor_s"] > 0) == (stage == "lfre")
    assert np.isfinite(row["value"]) and row["value"] != 0
