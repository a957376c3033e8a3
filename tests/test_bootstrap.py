"""Bootstrap intervals over structures: the resamples, their calibration, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fredask.compare.matrix import ComparisonError, reconstruction_matrix
from fredask.measures.bootstrap import (
    MAX_GROUPS,
    Bootstrap,
    BootstrapError,
    draw_weights,
    intervals,
    resample_means,
    resampling_groups,
)


def clustered(rng, n_structures, atoms, tau=1.0, noise=0.7, p=4, q=3):
    """Rows whose features and noise share a per-structure part; the true GFRE in closed form.

    ``x = u_s + v_i`` (``u_s ~ N(0, tau^2 I)``, ``v_i ~ N(0, I)``) and
    ``y = x A + e_s + f_i`` with the noise split evenly between structure and
    row, so atoms of one structure are correlated.  The best linear map is
    ``A`` and its residual is the noise, so with the global scaler the
    population GFRE is ``sqrt(q noise^2 / ((1 + tau^2) ||A||_F^2 + q noise^2))``.
    """
    structures = np.repeat(np.arange(n_structures), atoms)
    a = np.linspace(-1.0, 1.0, p * q).reshape(p, q)
    u = tau * rng.normal(size=(n_structures, p))
    x = u[structures] + rng.normal(size=(structures.size, p))
    shared = noise / np.sqrt(2) * rng.normal(size=(n_structures, q))
    y = x @ a + shared[structures] + noise / np.sqrt(2) * rng.normal(size=(structures.size, q))
    true = np.sqrt(q * noise**2 / ((1 + tau**2) * np.sum(a**2) + q * noise**2))
    return {"x": x, "y": y}, structures, true


def test_resamples_equal_repeated_rows():
    """A resample's mean is that of the test rows with each structure repeated as drawn."""
    rng = np.random.default_rng(1)
    units = rng.integers(0, 37, size=500)
    units = np.unique(units, return_inverse=True)[1]
    values = {("a", "b"): rng.random(500), ("b", "a"): rng.random(500) * 3}
    n_units = units.max() + 1
    weights = draw_weights(n_units, Bootstrap(20, random_state=7))
    found = resample_means(values, units, weights)
    assert weights.shape == (20, n_units) and (weights.sum(axis=1) == n_units).all()
    for b, w in enumerate(weights.astype(int)):
        drawn = np.repeat(np.arange(n_units), w)
        rows = np.concatenate([np.flatnonzero(units == u) for u in drawn])
        for pair, per_row in values.items():
            assert found[pair][b] == pytest.approx(per_row[rows].mean(), rel=1e-12)


def test_rms_interval_brackets_the_value_and_repeats():
    data, structures, _ = clustered(np.random.default_rng(2), 60, 8)
    result = reconstruction_matrix(
        data, "gfre", client="sync", progress=False, row_structures=structures, bootstrap=100
    )
    again = reconstruction_matrix(
        data, "gfre", client="sync", progress=False, row_structures=structures, bootstrap=100
    )
    low, high = result.intervals.low, result.intervals.high
    value = result.matrix
    assert low.loc["x", "y"] < value.loc["x", "y"] < high.loc["x", "y"]
    assert low.loc["y", "x"] < value.loc["y", "x"] < high.loc["y", "x"]
    assert low.equals(again.intervals.low) and high.equals(again.intervals.high)


def coverage(units_of, repetitions=200, n_resamples=200, tau=1.0):
    """Share of repetitions whose 90% interval of GFRE(x -> y) holds the true value."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(repetitions):
        data, structures, true = clustered(rng, 120, 10, tau=tau)
        result = reconstruction_matrix(
            data,
            "gfre",
            client="sync",
            progress=False,
            row_structures=units_of(structures),
            bootstrap=Bootstrap(n_resamples, random_state=int(rng.integers(2**31))),
        )
        hits += result.intervals.low.loc["x", "y"] <= true <= result.intervals.high.loc["x", "y"]
    return hits / repetitions


def test_coverage_over_structures_is_nominal():
    """Nominal 90% covers the true GFRE in 85-95% of 200 repetitions."""
    assert 0.85 <= coverage(lambda s: s) <= 0.95


def test_coverage_over_atoms_is_too_low_for_correlated_atoms():
    """Resampling atoms as if independent gives too narrow intervals: the unit is the structure."""
    assert coverage(lambda s: np.arange(s.size), repetitions=60, tau=2.0) < 0.7


def test_mutual_knn_interval_is_of_the_mean_share():
    data, structures, _ = clustered(np.random.default_rng(4), 40, 6)
    result = reconstruction_matrix(
        data, "mutual_knn", client="sync", progress=False, row_structures=structures, bootstrap=50
    )
    assert result.errors is None
    low, high = result.intervals.low.loc["x", "y"], result.intervals.high.loc["x", "y"]
    assert 0 <= low <= result.matrix.loc["x", "y"] <= high <= 1


def test_groups_are_structures_or_random_groups_of_whole_structures():
    structures = np.array([0, 0, 1, 1, 9, 9])
    assert resampling_groups(6, structures, MAX_GROUPS, 0).tolist() == [0, 0, 1, 1, 2, 2]
    assert resampling_groups(4, None, MAX_GROUPS, 0).tolist() == [0, 1, 2, 3]
    many = np.repeat(np.arange(1000), 3)
    groups = resampling_groups(many.size, many, 64, 0)
    assert groups.max() == 63 and set(np.bincount(groups)) <= {45, 48}  # 15 or 16 structures
    for structure in range(1000):  # every structure lies in one group
        assert np.unique(groups[many == structure]).size == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric": "cka", "bootstrap": 10, "debiased": True}, "debiased CKA is not resampled"),
        ({"metric": "gfre", "bootstrap": 0}, "at least 1 resample"),
        ({"metric": "gfre", "bootstrap": 2.5}, "whole number"),
        ({"metric": "gfre", "bootstrap": 10, "row_structures": np.zeros(40, int)}, "1 structure"),
    ],
)
def test_bad_bootstrap_is_refused_before_any_work(kwargs, message):
    rng = np.random.default_rng(5)
    data = {"x": rng.normal(size=(40, 3)), "y": rng.normal(size=(40, 2))}
    with pytest.raises((ComparisonError, BootstrapError), match=message):
        reconstruction_matrix(data, client="sync", progress=False, **kwargs)


def test_confidence_outside_the_unit_interval_is_refused():
    with pytest.raises(BootstrapError, match="confidence must be in"):
        Bootstrap(5, confidence=1.0)


def test_interval_of_rms_is_root_of_mean_interval():
    rng = np.random.default_rng(6)
    units = np.repeat(np.arange(30), 3)
    errors = {("a", "b"): rng.random(90)}
    weights = draw_weights(30, Bootstrap(64))
    low, high = intervals(errors, units, weights, 0.8)[("a", "b")]
    means = resample_means({("a", "b"): errors[("a", "b")] ** 2}, units, weights)[("a", "b")]
    assert (low, high) == pytest.approx(tuple(np.quantile(np.sqrt(means), [0.1, 0.9])), rel=1e-12)


def test_saved_matrix_and_heat_map_carry_the_intervals(tmp_path):
    data, structures, _ = clustered(np.random.default_rng(8), 30, 5)
    result = reconstruction_matrix(
        data, "gfrd", client="sync", progress=False, row_structures=structures, bootstrap=20
    )
    paths = result.save(tmp_path)
    saved = json.loads(paths["json"].read_text())["bootstrap"]
    assert saved["n_resamples"] == 20 and saved["unit"] == "structure"
    assert saved["low"]["x"]["y"] == result.intervals.low.loc["x", "y"]
    texts = [t.get_text() for t in result.plot().axes[0].texts]
    low, high = result.intervals.low.loc["x", "y"], result.intervals.high.loc["x", "y"]
    assert any(f"[{low:.3f}, {high:.3f}]" in t for t in texts)


def test_cli_bootstrap_writes_intervals_and_refuses_what_it_cannot_resample(tmp_path, capsys):
    from fredask.cli import main
    from fredask.store.datasets import write_synthetic_store

    store = tmp_path / "s.zarr"
    write_synthetic_store(store, n_rows=600, chunk_rows=256)
    argv = ["compare", str(store), "--cluster", "threads", "--output", str(tmp_path / "out")]
    main([*argv, "--metric", "gfre", "lfre", "--bootstrap", "30", "--confidence", "0.8"])
    for metric in ("gfre", "lfre"):
        saved = json.loads((tmp_path / "out" / f"{metric}.json").read_text())["bootstrap"]
        assert saved["n_resamples"] == 30 and saved["confidence"] == 0.8
        assert saved["low"]["smooth-64"]["sharp-64"] < saved["high"]["smooth-64"]["sharp-64"]
    for extra, message in [
        (["--metric", "cka", "--bootstrap", "5", "--debiased"], "debiased CKA is not resampled"),
        (["--confidence", "0.8"], "--confidence applies with --bootstrap only"),
        (["--bootstrap", "0"], "at least 1 resample"),
        (["--bootstrap", "5", "--reference", "smooth-64"], "--bootstrap applies with the all"),
    ]:
        with pytest.raises(SystemExit, match=message):
            main([*argv, *extra])


def clustered_cka(rng, n_structures, atoms, tau=1.0, noise=0.7, p=4, q=3):
    """:func:`clustered` rows and their population CKA, in closed form.

    ``Cov(x) = (1 + tau^2) I``, ``Cov(x, y) = (1 + tau^2) A`` and
    ``Cov(y) = (1 + tau^2) A^T A + noise^2 I``.
    """
    data, structures, _ = clustered(rng, n_structures, atoms, tau, noise, p, q)
    a = np.linspace(-1.0, 1.0, p * q).reshape(p, q)
    cross = np.linalg.norm((1 + tau**2) * a) ** 2
    own = np.linalg.norm((1 + tau**2) * np.eye(p)) * np.linalg.norm(
        (1 + tau**2) * a.T @ a + noise**2 * np.eye(q)
    )
    return data, structures, cross / own


def test_similarity_resamples_equal_the_measure_of_repeated_rows():
    """A resample's merged scatter gives the CKA / CCA / Procrustes of the repeated test rows."""
    from fredask.measures.bootstrap import group_test_moments, resample_scatters
    from fredask.measures.similarity import similarities_of
    from fredask.stats.features import as_feature_set
    from fredask.stats.splits import resolve_split

    data, structures, _ = clustered(np.random.default_rng(9), 25, 6)
    features = as_feature_set(data)
    split = resolve_split(structures.size)
    groups = resampling_groups(structures.size, structures, 64, 0)
    parts = group_test_moments(features, split, groups, "qr", "sync", _numpy_backend(), False)
    weights = draw_weights(len(parts), Bootstrap(3, random_state=4))
    test = np.sort(split.test_idx)
    for w, moments in zip(weights, resample_scatters(parts, weights, "qr"), strict=True):
        rows = np.concatenate([np.repeat(test[groups[test] == g], int(k)) for g, k in enumerate(w)])
        x, y = (data[m][rows] - data[m][rows].mean(axis=0) for m in ("x", "y"))
        norms = np.linalg.norm(x) * np.linalg.norm(y)
        cka = np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))
        procrustes = 2 - 2 * np.linalg.svd(x.T @ y, compute_uv=False).sum() / norms
        for metric, direct in [("cka", cka), ("procrustes", procrustes)]:
            found = similarities_of(features, moments, [("x", "y")], metric, "gram")
            assert found[("x", "y")].value == pytest.approx(direct, rel=1e-9)


def _numpy_backend():
    from fredask.backend import NUMPY

    return NUMPY


def test_cka_interval_coverage_is_nominal():
    """Nominal 90% covers the population CKA in 85-95% of 100 repetitions."""
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(100):
        data, structures, true = clustered_cka(rng, 60, 20)
        result = reconstruction_matrix(
            data,
            "cka",
            client="sync",
            progress=False,
            row_structures=structures,
            bootstrap=Bootstrap(100, random_state=int(rng.integers(2**31))),
        )
        hits += result.intervals.low.loc["x", "y"] <= true <= result.intervals.high.loc["x", "y"]
    assert 0.85 <= hits / 100 <= 0.95


def test_similarity_interval_brackets_its_value_and_is_saved(tmp_path):
    data, structures, _ = clustered(np.random.default_rng(10), 40, 5)
    for metric in ("cka", "cca", "procrustes"):
        result = reconstruction_matrix(
            data, metric, client="sync", progress=False, row_structures=structures, bootstrap=40
        )
        alone = reconstruction_matrix(data, metric, client="sync", progress=False)
        assert result.matrix.loc["x", "y"] == pytest.approx(alone.matrix.loc["x", "y"], rel=1e-9)
        low, high = result.intervals.low.loc["x", "y"], result.intervals.high.loc["x", "y"]
        assert low <= result.matrix.loc["x", "y"] <= high
        saved = json.loads(result.save(tmp_path, metric)["json"].read_text())["bootstrap"]
        assert saved["high"]["x"]["y"] == high
