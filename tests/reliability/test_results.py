"""Results a new user can trust: requests refused before any work, the default k capped,
every matrix with its error distribution, level, split sizes and metadata, heat maps that
show values above the scale and pairs dominated by a few rows.

scikit-matter's pointwise errors are the oracle of the error distributions.
"""

import dataclasses
import json

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import skmatter.metrics as skm
from matplotlib.colors import to_rgba

from fredask import Split, stratified_split
from fredask.compare import ComparisonError, check_comparison, reconstruction_matrix
from fredask.compare.heatmap import OVER_COLOUR
from fredask.errors import FredaskError
from fredask.measures.caveats import FredaskWarning, NeighbourCapWarning
from fredask.measures.local_fit import NeighbourCountError
from fredask.stats.splits import SplitIndexError
from fredask.store.datasets import write_structure_store
from fredask.structure.compare import structure_comparisons, structure_split
from fredask.structure.stored import write_cumulants


def _unreadable(shape):
    """A Dask array whose every read fails: a refusal before any work never touches it."""

    def read():
        raise AssertionError("the data was read before the request was refused")

    return da.from_delayed(dask.delayed(read)(), shape=shape, dtype=np.float64)


def _models(n=300, seed=0):
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 5))
    out = {}
    for name, width in (("a", 6), ("b", 9), ("c", 7)):
        out[name] = np.tanh(latent @ rng.normal(size=(5, width))) + 0.05 * rng.normal(
            size=(n, width)
        )
    return out


# --- check_comparison: every request refused before any read --------------------------


def test_check_comparison_refuses_bad_requests_before_reading_anything():
    features = {"a": _unreadable((100, 40)), "b": _unreadable((100, 30))}
    split = Split(train_idx=np.arange(30), test_idx=np.arange(30, 50))
    cases = [
        (
            {"metrics": ["gfre", "gfe"], "split": split},
            ComparisonError,
            "unknown metric 'gfe'; use one of gfre, gfrd, lfre, cka, cca, procrustes, mutual_knn",
        ),
        (
            {"metrics": ["gfre", "lfre"], "split": split, "n_local_points": 50},
            NeighbourCountError,
            "n_local_points=50 exceeds the 30 train rows (pair 'a' -> 'a'); pass at most 30, "
            "or leave it out (the default min(p, q) is capped at the train rows)",
        ),
        (
            {
                "metrics": ["gfre"],
                "split": Split(train_idx=np.arange(30), test_idx=np.array([40, 41, 500])),
            },
            SplitIndexError,
            "test_idx holds 1 indices outside [0, 100), first at position 2: 500",
        ),
        (
            {"metrics": ["gfrd"], "split": Split(np.arange(30), np.arange(20, 40))},
            ValueError,
            "train_idx and test_idx overlap in 10 rows (first: 20); test rows must not be "
            "train rows",
        ),
        (
            {"metrics": ["lfre"], "split": split, "row_structures": np.zeros(99, int)},
            ComparisonError,
            "row_structures must be an integer array of shape (100,) (one structure per row), "
            "got int64 of shape (99,)",
        ),
        (
            {"metrics": ["lfre"], "split": split, "n_local_points": 7.0},
            TypeError,
            "n_local_points must be a whole number of neighbours, got 7.0 (float)",
        ),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error) as caught:
            check_comparison(features, **kwargs)
        assert isinstance(caught.value, FredaskError)
        assert str(caught.value) == message
    with pytest.raises(ComparisonError, match="either split or train_idx/test_idx"):
        check_comparison(features, ["gfre"], split, train_idx=np.arange(10))
    # the same refusals from reconstruction_matrix, which calls it first
    with pytest.raises(NeighbourCountError, match="exceeds the 30 train rows"):
        reconstruction_matrix(features, "lfre", split=split, n_local_points=31)


def test_check_comparison_resolves_the_capped_default_k():
    features = {"a": _unreadable((100, 40)), "b": _unreadable((100, 25))}
    split = Split(train_idx=np.arange(30), test_idx=np.arange(30, 50))
    request = check_comparison(features, ["gfre", "lfre"], split)
    assert request.n_local_points == {
        ("a", "a"): 30,
        ("a", "b"): 25,
        ("b", "a"): 25,
        ("b", "b"): 25,
    }
    assert request.capped == {("a", "a"): 40}
    assert check_comparison(features, "gfre", split).n_local_points is None
    # an overlapping split is the LFRE's reference example (docs/method.md, section 8)
    overlap = Split(train_idx=np.arange(0, 100, 2), test_idx=np.arange(100))
    assert check_comparison(features, ["lfre"], overlap).split is overlap


def test_the_default_k_is_capped_at_the_train_rows_with_one_warning():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 40))
    y = np.tanh(x[:, :6] @ rng.normal(size=(6, 30)))
    train, test = np.arange(0, 25), np.arange(25, 120)
    with pytest.warns(NeighbourCapWarning) as caught:
        result = reconstruction_matrix(
            {"x": x, "y": y}, "lfre", train_idx=train, test_idx=test, client="sync", progress=False
        )
    assert len(caught) == 1 and issubclass(caught[0].category, FredaskWarning)
    assert str(caught[0].message) == (
        "LFRE: the default n_local_points = min(p, q) exceeds the 25 train rows for 4 pair(s) "
        "('x' -> 'x' (40), 'x' -> 'y' (30), 'y' -> 'x' (30), 'y' -> 'y' (30)); using k = 25 "
        "(every train row) for them"
    )
    expected = skm.local_reconstruction_error(x, y, 25, test_idx=test, train_idx=train)
    assert result.matrix.loc["x", "y"] == pytest.approx(expected, rel=1e-9)


# --- structure level: validated when called, the default k capped ---------------------


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """40 structures of 1..6 atoms, two models of 4 features, cumulants of order 8."""
    n_atoms = np.random.default_rng(0).integers(1, 7, size=40)
    store = write_structure_store(
        tmp_path_factory.mktemp("small") / "s.zarr",
        n_atoms,
        models=("a", "b"),
        n_features=4,
        chunk_rows=64,
    )
    for name in ("a", "b"):
        write_cumulants(store, name, order=8, client="sync")
    return store


def test_structure_comparisons_refuse_an_impossible_k_when_called(small_store):
    split = structure_split(small_store, kind="paper", n_test=20)
    with pytest.raises(NeighbourCountError) as caught:
        structure_comparisons(
            small_store, ["gfre", "lfre"], split=split, n_local_points=32, client="sync"
        )  # not only when the LFRE's turn comes
    assert str(caught.value).startswith(
        "n_local_points=32 exceeds the 20 train rows (pair 'a' -> 'a')"
    )


def test_structure_comparisons_cap_the_default_k_and_name_level_and_model(small_store):
    split = structure_split(small_store, kind="paper", n_test=20)
    with pytest.warns(FredaskWarning) as caught:
        results = dict(
            structure_comparisons(small_store, ["lfre"], split=split, client="sync", progress=False)
        )
    capped = [w for w in caught if w.category is NeighbourCapWarning]
    assert len(capped) == 2  # one per matrix: between models, between orders
    assert "exceeds the 20 train rows" in str(capped[0].message)
    models, orders = results["structure_lfre"], results["orders_a_lfre"]
    assert (models.level, models.model) == ("structure", None)
    assert (orders.level, orders.model) == ("order", "a")
    assert models.title == "LFRE, structures, 20 test / 20 train"
    assert orders.title == "LFRE, cumulant orders of a, structures, 20 test / 20 train"
    assert orders.plot().axes[0].get_title() == orders.title
    assert models.precision == "float64"


# --- the distribution of every pair's pointwise errors --------------------------------


@pytest.fixture(scope="module")
def outliers():
    """Three models; two test rows of 'b' carry a large error the others cannot reconstruct."""
    models = _models(n=400, seed=2)
    groups = np.repeat(["bulk", "surface"], 200)
    split = stratified_split(groups, n_test=200, seed=0)
    models["b"] = models["b"].copy()
    models["b"][split.test_idx[[3, 17]]] += 25.0
    structures = np.arange(400) // 4  # four rows per structure
    return models, split, structures


@pytest.mark.parametrize("metric", ["gfre", "gfrd", "lfre"])
def test_each_pair_carries_its_pointwise_error_distribution(outliers, metric):
    models, split, structures = outliers
    result = reconstruction_matrix(
        models,
        metric,
        split=split,
        n_local_points=12,
        row_structures=structures,
        client="sync",
        progress=False,
    )
    kwargs = {"train_idx": split.train_idx, "test_idx": split.test_idx}
    oracle = {
        "gfre": lambda x, y: skm.pointwise_global_reconstruction_error(x, y, **kwargs),
        "gfrd": lambda x, y: skm.pointwise_global_reconstruction_distortion(x, y, **kwargs),
        "lfre": lambda x, y: skm.pointwise_local_reconstruction_error(x, y, 12, **kwargs),
    }[metric]
    source, target = "a", "b"  # p <= q: scikit-matter's distortion is defined
    errors = oracle(models[source], models[target])
    summary = result.errors.loc[(source, target)]
    assert summary["value"] == result.matrix.loc[source, target]
    assert summary["value"] == pytest.approx(np.sqrt(np.mean(errors**2)), rel=1e-8)
    assert summary["median"] == pytest.approx(np.median(errors), rel=1e-8)
    assert summary["p90"] == pytest.approx(np.percentile(errors, 90), rel=1e-8)
    assert summary["p99"] == pytest.approx(np.percentile(errors, 99), rel=1e-8)
    top = np.sort(errors**2)[::-1][:2]  # 1% of 200 test rows
    assert summary["top1_share"] == pytest.approx(top.sum() / np.sum(errors**2), rel=1e-8)
    worst = split.test_idx[np.argsort(-errors)[:5]]
    assert summary["worst_rows"] == tuple(worst)
    assert summary["worst_structures"] == tuple(worst // 4)
    np.testing.assert_allclose(summary["worst_errors"], np.sort(errors)[::-1][:5], rtol=1e-8)
    if metric != "gfrd":  # the two outlier rows dominate the errors of b, not those of a, c
        assert set(summary["worst_rows"][:2]) == set(split.test_idx[[3, 17]])
        assert summary["dominated"] and summary["top1_share"] > 0.5
        assert not result.errors.loc[("c", "a"), "dominated"]
        assert result.dominated.loc["a", "b"] and not result.dominated.loc["a", "c"]


# --- saved results: the JSON layout, the summaries' CSV, metadata ---------------------


def test_saved_json_carries_the_context_and_the_papers_schema(outliers, tmp_path):
    models, split, structures = outliers
    result = reconstruction_matrix(
        models, "gfre", split=split, row_structures=structures, client="sync", progress=False
    )
    assert result.metadata == {} and result.level == "atom"
    result = dataclasses.replace(
        result, metadata={"seed": 0, "split": "paper", "skipped_structures": [7, 9]}
    )
    paths = result.save(tmp_path, "atoms_gfre")
    data = json.loads(paths["json"].read_text())
    assert list(data) == [
        "metric",
        "level",
        "model",
        "method",
        "precision",
        "n_train",
        "n_test",
        "fredask_version",
        "metadata",
        "errors",
        "dominated",
        "bootstrap",
        "baseline",
        "paper",
    ]
    assert (data["metric"], data["level"], data["method"], data["precision"]) == (
        "gfre",
        "atom",
        "qr",
        "float64",
    )
    assert (data["n_train"], data["n_test"]) == (200, 200)
    assert data["fredask_version"] == __import__("fredask").__version__
    assert data["metadata"] == {"seed": 0, "split": "paper", "skipped_structures": [7, 9]}
    assert data["paper"] == result.to_dict()
    assert ["a", "b"] in data["dominated"] and ["c", "a"] not in data["dominated"]
    entry = data["errors"]["a"]["b"]
    assert entry["dominated"] is True and entry["value"] == result.matrix.loc["a", "b"]
    assert entry["worst_rows"] == list(result.errors.loc[("a", "b"), "worst_rows"])
    table = pd.read_csv(paths["errors"])
    pairs = list(table[["source", "target"]].itertuples(index=False, name=None))
    assert pairs == [(s, t) for s in "abc" for t in "abc"]
    row = table.set_index(["source", "target"]).loc[("a", "b")]
    assert row["median"] == pytest.approx(result.errors.loc[("a", "b"), "median"], rel=1e-12)
    assert row["worst_rows"] == ";".join(map(str, entry["worst_rows"]))
    assert {p.name for p in tmp_path.iterdir()} == {
        "atoms_gfre.json",
        "atoms_gfre.csv",
        "atoms_gfre_errors.csv",
        "atoms_gfre.png",
        "atoms_gfre_split.npz",
    }


# --- heat maps: values above the scale, dominated pairs, titles -----------------------


def test_heatmap_shows_values_above_the_scale_and_marks_dominated_pairs(outliers):
    models, split, _ = outliers
    result = reconstruction_matrix(models, "lfre", split=split, client="sync", progress=False)
    assert result.matrix.loc["a", "b"] > 1  # the outliers push it above the scale
    figure = result.plot()
    ax, _ = figure.axes
    image = ax.images[0]
    assert image.get_clim() == (0.0, 1.0)
    assert image.to_rgba(result.matrix.loc["a", "b"]) == to_rgba(OVER_COLOUR)
    assert image.colorbar.extend == "max"
    texts = {t.get_text(): t for t in ax.texts}
    cell = texts[f"{result.matrix.loc['a', 'b']:.3f}\u2020"]
    assert cell.get_fontweight() == "bold"
    assert f"{result.matrix.loc['c', 'a']:.3f}" in texts  # not dominated: no dagger
    assert "\u2020 the top 1% of test rows carry over 50% of the squared error" in (ax.get_xlabel())
    assert ax.get_title() == "LFRE, atoms, 200 test / 200 train"
    clean = reconstruction_matrix(_models(), "gfre", client="sync", progress=False)
    clean_ax = clean.plot().axes[0]
    assert clean_ax.images[0].colorbar.extend == "neither"
    assert "\u2020" not in clean_ax.get_xlabel()
    assert clean_ax.get_title() == "GFRE, atoms, 150 test / 150 train"


def test_pairs_dominated_by_a_few_rows_are_named_and_round_off_is_not():
    from fredask.cli.compare import dominated_lines

    rng = np.random.default_rng(7)
    X = rng.normal(size=(400, 4))
    Y = np.tanh(X @ rng.normal(size=(4, 3)))
    split = Split(np.arange(0, 400, 2), np.arange(1, 400, 2))
    Y[201] *= 1e4  # one extreme atom, a test row
    result = reconstruction_matrix({"x": X, "y": Y}, "gfre", split=split, client="sync")
    assert result.dominated.loc["x", "y"] and not result.dominated.loc["y", "y"]
    lines = dominated_lines(result)
    assert any(
        line.startswith("note: GFRE x -> y = ") and "worst at rows [201" in line for line in lines
    )
    assert not any("y -> y" in line or "x -> x" in line for line in lines)
