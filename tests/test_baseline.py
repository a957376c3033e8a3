"""The random baseline: the same measure from random features of the source's width."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fredask.compare.baseline import with_random_sources
from fredask.compare.matrix import ComparisonError, reconstruction_matrix
from fredask.stats.features import as_feature_set


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 7))
    y = np.tanh(x[:, :3] @ rng.normal(size=(3, 4))) + 0.1 * rng.normal(size=(900, 4))
    return {"x": x, "y": y.astype(np.float32)}


@pytest.mark.parametrize("metric", ["gfre", "gfrd", "lfre", "cka", "cca", "mutual_knn"])
def test_baseline_is_the_measure_of_the_random_stand_ins(data, metric):
    """Each entry equals the measure computed directly from the stand-in to the target."""
    result = reconstruction_matrix(data, metric, client="sync", progress=False, baseline="random")
    augmented = with_random_sources(as_feature_set(data))
    stand_ins = {n: a.compute() for n, a in zip(augmented.names, augmented.arrays, strict=True)}
    assert stand_ins["random:x"].shape == (900, 7) and stand_ins["random:y"].dtype == np.float32
    for source in ("x", "y"):
        for target in ("x", "y"):
            inputs = {f"random:{source}": stand_ins[f"random:{source}"], target: data[target]}
            direct = reconstruction_matrix(inputs, metric, client="sync", progress=False)
            expected = direct.matrix.loc[f"random:{source}", target]
            assert result.baseline.loc[source, target] == pytest.approx(expected, rel=1e-10)


def test_chance_levels_are_what_random_features_give(data):
    gfre = reconstruction_matrix(data, "gfre", client="sync", progress=False, baseline="random")
    cka = reconstruction_matrix(data, "cka", client="sync", progress=False, baseline="random")
    # OLS from p unrelated columns: test error ~ 1 + p / n_train above the target's spread
    assert ((gfre.baseline > 0.99) & (gfre.baseline < 1.05)).all().all()
    assert (gfre.matrix.loc["x", "y"] < 0.5) and (cka.baseline < 0.05).all().all()


def test_baseline_is_saved_and_drawn(data, tmp_path):
    result = reconstruction_matrix(data, "cca", client="sync", progress=False, baseline="random")
    saved = json.loads(result.save(tmp_path)["json"].read_text())["baseline"]
    assert saved["values"]["x"]["y"] == result.baseline.loc["x", "y"]
    texts = [t.get_text() for t in result.plot().axes[0].texts]
    assert any(f"chance {result.baseline.loc['x', 'y']:.3f}" in t for t in texts)


def test_unknown_baseline_is_refused(data):
    with pytest.raises(ComparisonError, match="unknown baseline 'shuffled'"):
        reconstruction_matrix(data, "gfre", client="sync", progress=False, baseline="shuffled")


def test_cli_baseline(tmp_path):
    from fredask.cli import main
    from fredask.store.datasets import write_synthetic_store

    store = tmp_path / "s.zarr"
    write_synthetic_store(store, n_rows=400, chunk_rows=128)
    argv = ["compare", str(store), "--cluster", "threads", "--output", str(tmp_path / "out")]
    main([*argv, "--metric", "gfre", "--baseline", "random"])
    saved = json.loads((tmp_path / "out" / "gfre.json").read_text())["baseline"]
    assert saved["kind"] == "random" and saved["values"]["smooth-64"]["sharp-64"] > 0.9
    with pytest.raises(SystemExit, match="--baseline applies with the atom-level"):
        main([*argv, "--baseline", "random", "--level", "structure"])
