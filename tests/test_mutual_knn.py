"""Mutual k-NN agreement: against a brute-force neighbour search in memory."""

import dask.array as da
import numpy as np
import pytest

from fredask.compare import reconstruction_matrix
from fredask.measures.mutual_knn import mutual_neighbours, shared_fraction
from fredask.stats.features import as_feature_set
from fredask.stats.splits import Split


def brute_neighbours(values, split, k):
    """The k nearest train rows of every test row, by (distance, row index)."""
    values = np.asarray(values, dtype=np.float64)
    train, test = np.sort(split.train_idx), split.test_idx
    distances = ((values[test][:, None, :] - values[train][None, :, :]) ** 2).sum(axis=2)
    order = np.lexsort((np.broadcast_to(train, distances.shape), distances), axis=1)
    return train[order[:, :k]]


def brute_agreement(x, y, split, k):
    nx, ny = brute_neighbours(x, split, k), brute_neighbours(y, split, k)
    return np.array([len(set(a) & set(b)) / k for a, b in zip(nx, ny, strict=True)])


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(9)
    latent = rng.normal(size=(400, 3))
    a = latent @ rng.normal(size=(3, 5)) + 0.05 * rng.normal(size=(400, 5))
    b = (np.tanh(latent @ rng.normal(size=(3, 8))) * 40.0 + 7.0).astype(np.float32)
    c = rng.normal(size=(400, 2))
    c[200:220] = c[100:120]  # duplicated rows: exact ties, broken by row index
    return {"a": a, "b": b, "c": c}


@pytest.fixture(scope="module")
def split():
    rng = np.random.default_rng(1)
    test = rng.choice(400, 60, replace=False)
    return Split(train_idx=np.setdiff1d(np.arange(400), test), test_idx=test)


@pytest.mark.parametrize("k", [1, 7, 25])
def test_agreement_equals_brute_force(models, split, k):
    features = as_feature_set({n: da.from_array(v, chunks=(96, -1)) for n, v in models.items()})
    pairs = [(s, t) for s in models for t in models]
    found = mutual_neighbours(features, split, pairs, k, scheduler="threads")
    for source, target in pairs:
        expected = brute_agreement(models[source], models[target], split, k)
        np.testing.assert_array_equal(found[(source, target)], expected)
    assert np.all(found[("a", "a")] == 1.0)


def test_matrix_is_the_mean_agreement(models, split):
    result = reconstruction_matrix(
        models, "mutual_knn", split=split, n_local_points=12, client="sync", progress=False
    )
    for source in models:
        for target in models:
            expected = brute_agreement(models[source], models[target], split, 12).mean()
            assert result.matrix.loc[source, target] == pytest.approx(expected, abs=1e-15)
    default = reconstruction_matrix(models, "mutual_knn", split=split, progress=False)
    expected = brute_agreement(models["a"], models["b"], split, 10).mean()
    assert default.matrix.loc["a", "b"] == pytest.approx(expected, abs=1e-15)


def test_shared_fraction_counts_common_entries():
    x = np.array([[1, 2, 3], [4, 5, 6]])
    y = np.array([[3, 9, 1], [7, 8, 0]])
    np.testing.assert_allclose(shared_fraction(x, y), [2 / 3, 0.0])


def test_bad_k_is_one_line(models, split):
    features = as_feature_set(models)
    with pytest.raises(ValueError, match=r"k must be a whole number from 1 to the 340 train rows"):
        mutual_neighbours(features, split, [("a", "b")], 341)
    with pytest.raises(ValueError, match="one whole n_local_points for all pairs"):
        reconstruction_matrix(models, "mutual_knn", n_local_points=lambda p, q: 3, progress=False)


def test_cli_mutual_knn(tmp_path):
    import json

    from fredask.cli import main
    from fredask.store.datasets import write_synthetic_store

    store = tmp_path / "s.zarr"
    write_synthetic_store(store, n_rows=600, chunk_rows=256)
    out = tmp_path / "out"
    main(["compare", str(store), "--cluster", "threads", "--output", str(out),
          "--metric", "mutual_knn", "--n-local-points", "5"])  # fmt: skip
    saved = json.loads((out / "mutual_knn.json").read_text())
    assert saved["paper"]["noisy-32"]["noisy-32"]["A_to_B"] == 1.0
