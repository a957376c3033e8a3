"""Structure-level features in the store, the structure split, structure-level comparisons, CLI.

Oracles: the cumulants of ``structure_cumulants`` on in-memory features (themselves tested
against scipy in test_cumulants.py) and scikit-matter's global_reconstruction_error on them.
"""

import json

import numpy as np
import pytest

from fredask.cli import main as cli_main
from fredask.store import FeatureStore, StoreError
from fredask.store.datasets import write_structure_store
from fredask.structure.compare import order_descriptors, structure_comparisons, structure_split
from fredask.structure.cumulants import structure_cumulants
from fredask.structure.stored import (
    STRUCTURE_CHUNK_ROWS,
    cumulant_names,
    stored_cumulants,
    write_cumulants,
)

N_FEATURES = 4


@pytest.fixture
def store(tmp_path):
    """240 structures of 1..30 atoms, two models, row chunks of 64 atoms."""
    n_atoms = np.random.default_rng(0).integers(1, 31, size=240)
    return write_structure_store(
        tmp_path / "s.zarr", n_atoms, models=("a", "b"), n_features=N_FEATURES, chunk_rows=64
    )


def in_memory(store, name, **options):
    features = store.features(name)[:]
    return structure_cumulants(features, store.structures()["n_atoms"].to_numpy(), **options)


def test_written_cumulants_equal_in_memory_ones(store):
    array = write_cumulants(store, "a", order=6, kappa8="paper", client="threads")
    assert array.path == "structure_features/a/cumulants"
    assert array.shape == (240, 6 * N_FEATURES)
    assert array.chunks == (STRUCTURE_CHUNK_ROWS, 6 * N_FEATURES)
    np.testing.assert_allclose(array[:], in_memory(store, "a", order=6), rtol=1e-12, atol=1e-14)
    attrs = dict(array.attrs)
    assert attrs["order"] == 6 and attrs["kappa8"] == "paper" and attrs["root_scale"] is True
    assert attrs["source"] == "features/a" and attrs["n_features"] == N_FEATURES
    assert attrs["source_attributes"]["model"] == "synthetic:a"
    assert attrs["complete"] is True
    reopened = FeatureStore.open(store.path)
    assert cumulant_names(reopened) == ["a"]
    line = "structure_features/a/cumulants: orders 1..6 (paper kappa_8) of 4 features, complete"
    assert line in reopened.info()
    assert stored_cumulants(reopened)["a"].shape == (240, 6 * N_FEATURES)


def test_written_on_distributed_workers(store, distributed_client):
    import distributed

    with distributed.get_task_stream(distributed_client) as stream:
        array = write_cumulants(store, "b", client=distributed_client)
    assert {task["worker"] for task in stream.data}  # the work ran on the workers
    np.testing.assert_allclose(array[:], in_memory(store, "b"), rtol=1e-12, atol=1e-14)


def test_stored_cumulants_are_reused_and_not_silently_replaced(store):
    first = write_cumulants(store, "b", order=3, root_scale=False, client="sync")
    created = first.attrs["created"]
    again = write_cumulants(store, "b", order=3, root_scale=False, client="sync")
    assert again.attrs["created"] == created
    with pytest.raises(StoreError, match=r"exist with .*'order': 3.*overwrite"):
        write_cumulants(store, "b", order=8, client="sync")
    replaced = write_cumulants(store, "b", order=8, client="sync", overwrite=True)
    np.testing.assert_allclose(replaced[:], in_memory(store, "b"), rtol=1e-12, atol=1e-14)
    replaced[:5] = 0.0  # overwrite=True computes again even with the same settings
    again = write_cumulants(store, "b", order=8, client="sync", overwrite=True)
    np.testing.assert_allclose(again[:], in_memory(store, "b"), rtol=1e-12, atol=1e-14)
    assert stored_cumulants(store, order=2)["b"].shape == (240, 2 * N_FEATURES)
    with pytest.raises(StoreError, match="go up to order 8, 9 requested"):
        stored_cumulants(store, order=9)


def test_skipped_structures_are_nan_rows_and_left_out_of_splits(store):
    n_atoms = store.structures()["n_atoms"].to_numpy()
    offset = store.structures()["offset"].to_numpy()
    features = store.features("a")
    for s in (5, 100):
        features[offset[s] : offset[s] + n_atoms[s]] = np.nan
    features.attrs["skipped"] = [{"structure": 5}, {"structure": 100}]
    values = write_cumulants(store, "a", order=2, client="threads")[:]
    assert np.isnan(values[[5, 100]]).all()
    assert np.isfinite(np.delete(values, [5, 100], axis=0)).all()
    split = structure_split(store, ["a", "b"], kind="paper", n_test=60)
    used = np.concatenate([split.train_idx, split.test_idx])
    assert not np.isin([5, 100], used).any() and used.size == 238
    features.attrs["skipped"] = []
    # tasks run in any order: either bad structure may be the one reported
    with pytest.raises(ValueError, match=r"'a' hold NaN or infinite values in structure (5|100) "):
        write_cumulants(store, "a", order=3, client="sync", overwrite=True)


def test_structure_split_is_stratified_by_subset(store):
    subsets = store.structures()["subset"].to_numpy()
    split = structure_split(store, kind="paper", n_test=60, seed=0)
    assert split.test_idx.size == 60 and split.train_idx.size == 180
    for label in np.unique(subsets):
        share = np.mean(subsets == label)
        assert np.sum(subsets[split.test_idx] == label) == pytest.approx(60 * share, abs=1)
    again = structure_split(store, kind="paper", n_test=60, seed=0)
    np.testing.assert_array_equal(split.test_idx, again.test_idx)


def test_order_descriptors_are_leading_blocks():
    cumulants = np.arange(2 * 12).reshape(2, 12)
    views = order_descriptors(cumulants, 4)
    assert list(views) == ["order 1", "order 2", "order 3"]
    np.testing.assert_array_equal(views["order 2"], cumulants[:, :8])
    with pytest.raises(ValueError, match="not whole blocks"):
        order_descriptors(cumulants, 5)
    with pytest.raises(ValueError, match=r"orders \[4\] outside 1..3"):
        order_descriptors(cumulants, 4, orders=[1, 4])


def test_structure_comparisons_match_skmatter(store, default_estimator):
    from skmatter.metrics import global_reconstruction_error

    for name in ("a", "b"):
        write_cumulants(store, name, order=4, client="threads")
    split = structure_split(store, kind="paper", n_test=60)
    results = dict(
        structure_comparisons(store, ["gfre"], split=split, client="threads", progress=False)
    )
    assert list(results) == ["structure_gfre", "orders_a_gfre"]
    cumulants = {name: in_memory(store, name, order=4) for name in ("a", "b")}
    for source, target in (("a", "b"), ("b", "a")):
        expected = global_reconstruction_error(
            cumulants[source],
            cumulants[target],
            train_idx=split.train_idx,
            test_idx=split.test_idx,
            estimator=default_estimator(),
        )
        got = results["structure_gfre"].matrix.loc[source, target]
        assert got == pytest.approx(expected, rel=1e-8)
    orders = results["orders_a_gfre"].matrix
    assert list(orders.index) == ["order 1", "order 2", "order 3", "order 4"]
    # a higher order holds the lower ones: reconstructing down is exact, up is not
    assert orders.loc["order 4", "order 1"] < 1e-6
    assert orders.loc["order 1", "order 4"] > 0.05
    descriptors = order_descriptors(cumulants["a"], N_FEATURES)
    expected = global_reconstruction_error(
        descriptors["order 2"],
        descriptors["order 3"],
        train_idx=split.train_idx,
        test_idx=split.test_idx,
        estimator=default_estimator(),
    )
    assert orders.loc["order 2", "order 3"] == pytest.approx(expected, rel=1e-8)


def test_cli_cumulants_and_structure_level_compare(store, tmp_path, capsys):
    cli_main(["cumulants", str(store.path), "--order", "3", "--model", "a", "--cluster", "sync"])
    assert "a: cumulants 1..3 (textbook kappa_8) of 4 features, 240 structures" in (
        capsys.readouterr().out
    )
    output = tmp_path / "results"
    # --order 2 of stored order-3 cumulants; "b" has none yet and is computed (order 8)
    cli_main(
        [
            "compare", str(store.path), "--level", "structure", "--n-test", "60",
            "--order", "2", "--cluster", "threads", "--output", str(output),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert "b: no cumulants in the store yet" in out
    assert FeatureStore.open(store.path).group["structure_features/b/cumulants"].attrs["order"] == 8
    for stem in ("structure_gfre", "structure_lfre", "orders_a_gfre", "orders_a_lfre"):
        assert (output / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        saved = np.load(output / f"{stem}_split.npz")
        assert saved["test_idx"].size == 60
    data = json.loads((output / "orders_a_gfre.json").read_text())
    assert set(data["paper"]) == {"order 1", "order 2"}
    assert (data["level"], data["model"], data["n_test"]) == ("order", "a", 60)
    with pytest.raises(SystemExit, match=r"order must lie in 1\.\.8"):
        cli_main(["cumulants", str(store.path), "--order", "9", "--cluster", "sync"])
