"""The local reconstruction error (LFRE) against scikit-matter and against known answers."""

import dask.array as da
import numpy as np
import pytest
from skmatter import metrics as skm
from skmatter.linear_model import Ridge2FoldCV
from skmatter.preprocessing import StandardFlexibleScaler

from fredask import metrics
from fredask.compare import reconstruction_matrix
from fredask.stats.splits import SKMATTER_SEED


def _default_ridge():
    return Ridge2FoldCV(
        alphas=np.geomspace(1e-9, 0.9, 20),
        alpha_type="relative",
        regularization_method="cutoff",
        random_state=SKMATTER_SEED,
        shuffle=True,
        scoring="neg_root_mean_squared_error",
    )


def reference_pointwise_lfre(X, Y, k, train_idx, test_idx, estimator=None):
    """scikit-matter's algorithm, with neighbours ordered by (distance, row index).

    The same steps as ``skmatter.metrics.pointwise_local_reconstruction_error``,
    except that exact distance ties are ordered by row index (scikit-matter's
    quicksort leaves their order arbitrary); each local fit is skmatter's own
    Ridge2FoldCV.
    """
    estimator = estimator or _default_ridge()
    x_scaler = StandardFlexibleScaler().fit(X[train_idx])
    y_scaler = StandardFlexibleScaler().fit(Y[train_idx])
    x_train, x_test = x_scaler.transform(X[train_idx]), x_scaler.transform(X[test_idx])
    y_train, y_test = y_scaler.transform(Y[train_idx]), y_scaler.transform(Y[test_idx])
    distances = (
        np.sum(x_train**2, axis=1) + np.sum(x_test**2, axis=1)[:, None] - 2 * x_test @ x_train.T
    )
    out = []
    for i in range(len(test_idx)):
        order = np.lexsort((train_idx, distances[i]))[:k]
        x_local, y_local = x_train[order], y_train[order]
        x_bar, y_bar = x_local.mean(axis=0), y_local.mean(axis=0)
        estimator.fit(x_local - x_bar, y_local - y_bar)
        prediction = y_bar + estimator.predict((x_test[i] - x_bar)[None, :])
        out.append(np.linalg.norm(y_test[i] - prediction))
    return np.array(out)


def test_spec_value_on_ch4_with_overlapping_test_rows(ch4):
    P, B = ch4
    value = metrics.local_reconstruction_error(
        P, B, 20, train_idx=np.arange(0, 162, 2), test_idx=np.arange(162), allow_overlap=True
    )
    # docs/method.md, section 8; measured 9.97e-11 relative (ill-conditioned local fits)
    assert value == pytest.approx(0.17171573166237716, rel=2e-10)


def test_ch4_split_with_exact_distance_ties(ch4, ch4_split):
    """The degenerate CH4 data has exactly tied distances; ties go by row index.

    scikit-matter's 0.17865279301109518 (docs/method.md, section 8) depends on numpy's
    arbitrary order among ties at 4 of the 40 test rows; everywhere else the
    values are scikit-matter's, and all rows equal the reference that orders
    ties by row index.
    """
    P, B = ch4
    train, test = ch4_split
    ours = metrics.pointwise_local_reconstruction_error(P, B, 12, test_idx=test, train_idx=train)
    reference = reference_pointwise_lfre(P, B, 12, train, test)
    # the local fits keep singular values near 1e-7 of the largest: 1e-8 absolute
    np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-8)
    theirs = skm.pointwise_local_reconstruction_error(P, B, 12, test_idx=test, train_idx=train)
    same = np.isclose(ours, theirs, rtol=1e-9, atol=1e-8)
    assert same.sum() == 36
    assert np.sqrt(np.mean(theirs**2)) == pytest.approx(0.17865279301109518, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("n_rows", "p", "q", "k"),
    [(300, 6, 10, 12), (300, 10, 4, 12), (200, 8, 8, 30), (120, 5, 3, 4), (90, 12, 6, 40)],
)
def test_pointwise_equals_skmatter_on_generated_data(make_features, dtype, n_rows, p, q, k):
    if dtype == np.float32 and k <= p:
        pytest.skip(
            "k centred neighbours have rank < p: scikit-matter's float32 final fit keeps "
            "rounding-noise singular values (no rcond there), float64 case covers it"
        )
    X, Y = make_features(n_rows, p, q, seed=n_rows + p, dtype=dtype)
    ours = metrics.pointwise_local_reconstruction_error(X, Y, k)
    theirs = skm.pointwise_local_reconstruction_error(X, Y, k)
    rtol = 1e-9 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * 1e-3)


def test_rank_deficient_neighbourhoods_and_user_indices(make_features):
    X, Y = make_features(240, 8, 5, seed=3, rank_deficient=True)
    rng = np.random.default_rng(4)
    test = rng.choice(240, 50, replace=False)
    train = rng.permutation(np.setdiff1d(np.arange(240), test))
    for k in (6, 20):  # k below and above the neighbourhoods' rank (4)
        ours = metrics.pointwise_local_reconstruction_error(X, Y, k, test_idx=test, train_idx=train)
        theirs = skm.pointwise_local_reconstruction_error(X, Y, k, test_idx=test, train_idx=train)
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-12)


def test_tikhonov_estimator_and_self_reconstruction(make_features):
    X, Y = make_features(200, 6, 6, seed=5)
    estimator = Ridge2FoldCV(
        alphas=np.geomspace(1e-6, 1e2, 9),
        alpha_type="absolute",
        regularization_method="tikhonov",
        random_state=SKMATTER_SEED,
    )
    ours = metrics.pointwise_local_reconstruction_error(X, Y, 15, estimator=estimator)
    theirs = skm.pointwise_local_reconstruction_error(X, Y, 15, estimator=estimator)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9)
    self_ours = metrics.local_reconstruction_error(X, X, 15)
    self_theirs = skm.local_reconstruction_error(X, X, 15)
    assert 0 < self_ours < 1e-6
    assert self_ours == pytest.approx(self_theirs, rel=1e-3, abs=1e-12)


def test_chunked_inputs_equal_in_memory(make_features):
    X, Y = make_features(300, 7, 5, seed=6)
    expected = metrics.pointwise_local_reconstruction_error(X, Y, 10)
    for rows in (7, 64):
        chunked = da.from_array(X, chunks=(rows, -1)), da.from_array(Y, chunks=(rows, -1))
        got = metrics.pointwise_local_reconstruction_error(*chunked, 10)
        np.testing.assert_allclose(got, expected, rtol=1e-11)


def test_matrix_uses_min_p_q_neighbours_and_equals_pairwise(make_features):
    X, Y = make_features(250, 6, 9, seed=7)
    Z = np.sin(X[:, :4]) + 0.1 * Y[:, :4]
    models = {"x": X, "y": Y, "z": Z}
    result = reconstruction_matrix(models, "lfre", client="threads", progress=False)
    for source, a in models.items():
        for target, b in models.items():
            k = min(a.shape[1], b.shape[1])
            expected = metrics.local_reconstruction_error(a, b, k)
            assert result.matrix.loc[source, target] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_local_points": 1}, ValueError, "at least 2"),
        ({"n_local_points": 200}, ValueError, "exceeds the 150 train rows"),
        ({"train_idx": np.arange(200), "test_idx": np.arange(150, 300)}, ValueError, "overlap"),
    ],
)
def test_bad_input(make_features, kwargs, error, match):
    X, Y = make_features(300, 4, 3, seed=8)
    with pytest.raises(error, match=match):
        metrics.local_reconstruction_error(X, Y, **kwargs)


def test_nan_in_a_train_row_is_named(make_features):
    X, Y = make_features(300, 4, 3, seed=9)
    X = X.copy()
    train = np.arange(0, 150)
    X[17, 2] = np.nan
    with pytest.raises(ValueError, match=r"'X' hold NaN or infinite values in rows \[17\]"):
        metrics.local_reconstruction_error(X, Y, 5, train_idx=train)


N_BIG = 1_000_000


@pytest.fixture(scope="module")
def big_smooth():
    """10^6 train rows of a 2-D source and a smooth non-linear 3-D target."""
    rng = da.random.default_rng(11)
    x = rng.uniform(-1, 1, size=(N_BIG, 2), chunks=(131_072, 2))
    y = da.stack([da.sin(3 * x[:, 0]), da.cos(2 * x[:, 1]), x[:, 0] * x[:, 1]], axis=1)
    return x, y


def test_exact_linear_target_at_one_million_rows(big_smooth):
    x, _ = big_smooth
    y = x @ np.array([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]])
    test = np.arange(0, N_BIG, N_BIG // 200)
    value = metrics.local_reconstruction_error(x, y, 8, test_idx=test)
    assert value < 1e-8


def test_smooth_target_error_falls_as_neighbourhoods_shrink(big_smooth):
    """With 10^6 train rows, k neighbours span a radius ~ sqrt(k / N): a smooth
    target is locally linear, so the error must fall as k shrinks."""
    x, y = big_smooth
    test = np.arange(0, N_BIG, N_BIG // 200)
    errors = [metrics.local_reconstruction_error(x, y, k, test_idx=test) for k in (400, 50, 8)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05 * errors[0]


@pytest.mark.parametrize("measure", ["local", "global"])
def test_float64_precision_treats_float32_features_as_exact(make_features, measure):
    from fredask import RidgeSettings

    X, Y = make_features(200, 8, 6, seed=12, dtype=np.float32)
    exact = RidgeSettings(precision="float64")
    if measure == "local":
        got = metrics.local_reconstruction_error(X, Y, 9, estimator=exact)
        expected = skm.local_reconstruction_error(X.astype(float), Y.astype(float), 9)
    else:
        got = metrics.global_reconstruction_error(X, Y, estimator=exact)
        expected = skm.global_reconstruction_error(X.astype(float), Y.astype(float))
    assert got == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="precision must be"):
        RidgeSettings(precision="float16")


def test_smallest_k_orders_exact_ties_by_row_index():
    from fredask.measures.neighbours import merge_neighbours, smallest_k

    rng = np.random.default_rng(13)
    for _ in range(100):
        m, k = int(rng.integers(5, 60)), int(rng.integers(1, 40))
        distances = rng.integers(0, 6, size=(7, m)).astype(float)  # many exact ties
        rows = rng.permutation(1000)[:m]
        got_d, got_r = smallest_k(distances, rows, k, np)
        halves = [
            smallest_k(distances[:, s], rows[s], k, np)
            for s in (slice(0, m // 2), slice(m // 2, m))
        ]
        merged_d, merged_r = merge_neighbours(halves, k, np)
        np.testing.assert_array_equal(merged_d, got_d)
        for i in range(7):
            expected = sorted(zip(distances[i], rows, strict=True))[:k]
            assert list(got_d[i]) == [d for d, _ in expected]
            assert list(got_r[i]) == [r for _, r in expected]
            assert list(merged_r[i]) == [r for _, r in expected]


@pytest.mark.parametrize("block_rows", [3, 16, 4096])
def test_streamed_search_equals_brute_force_with_ties(monkeypatch, block_rows):
    """Blocks, chunks, pruning by the k-th distance and the tree merge give the
    brute-force (distance, row index) order, also with many exact ties."""
    from fredask.measures import neighbours
    from fredask.stats.features import as_feature_set
    from fredask.stats.splits import Split, row_labels

    monkeypatch.setattr(neighbours, "BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(7)
    n, p, k = 301, 3, 17
    x = rng.integers(0, 3, size=(n, p)).astype(np.float64)  # few distinct rows: ties
    features = as_feature_set({"x": da.from_array(x, chunks=(23, p))})
    split = Split(train_idx=rng.permutation(n)[:250], test_idx=np.arange(250, 260))
    labels = row_labels(n, split)
    train = np.sort(split.train_idx)
    test = x[split.test_idx]
    centre, scale = np.zeros(p), np.ones(p)
    distances, rows = neighbours.nearest_train_rows(
        features, labels, "x", test, centre, scale, k, "sync"
    )
    for i, t in enumerate(test):
        d = (x[train] ** 2).sum(axis=1) + (t**2).sum() - 2 * x[train] @ t
        order = np.lexsort((train, d))[:k]
        np.testing.assert_array_equal(rows[i], train[order])
        np.testing.assert_array_equal(distances[i], d[order])


def test_fit_blocks_are_sized_from_memory():
    from fredask.measures.local_fit import FIT_BLOCK_ROWS, fit_block_rows

    assert fit_block_rows(20, 10, 10, 2**30) == FIT_BLOCK_ROWS
    # k = p = q = 2048: 64 MiB of neighbour blocks per row, 8x that held at the peak,
    # a quarter of 11 GiB -> 5 rows (128 rows needed 65 GB)
    assert fit_block_rows(2048, 2048, 2048, 11 * 2**30) == 5
    assert fit_block_rows(4096, 4096, 4096, 2**30) == 1  # never fewer than one


@pytest.mark.parametrize("memory", [None, 1])
def test_memory_sized_fit_blocks_give_skmatters_errors(make_features, memory):
    from fredask.measures.local_fit import local_errors
    from fredask.stats.features import as_feature_set
    from fredask.stats.splits import resolve_split

    X, Y = make_features(240, 7, 5, seed=11)
    features = as_feature_set({"x": X, "y": Y})
    split = resolve_split(240)
    # memory=1: one test row per task (120 tasks); None: the task memory of "sync"
    errors = local_errors(features, split, [("x", "y")], 6, scheduler="sync", fit_memory=memory)
    expected = skm.pointwise_local_reconstruction_error(
        X, Y, 6, train_idx=split.train_idx, test_idx=split.test_idx
    )
    np.testing.assert_allclose(errors[("x", "y")], expected, rtol=1e-10, atol=1e-12)


def test_targets_sharing_a_source_factorisation_get_their_own_errors(make_features):
    from fredask.measures.local_fit import local_fit_errors
    from fredask.solvers.settings import RidgeSettings

    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 12, 5))
    ys = [rng.normal(size=(6, 12, q)) for q in (3, 7)]
    x_test = rng.normal(size=(6, 5))
    y_tests = [rng.normal(size=(6, q)) for q in (3, 7)]
    ridge, eps = RidgeSettings(), np.finfo(np.float64).eps
    shared = local_fit_errors(x, ys, x_test, y_tests, ridge, eps)
    for y, y_test, errors in zip(ys, y_tests, shared, strict=True):
        np.testing.assert_array_equal(errors, local_fit_errors(x, y, x_test, y_test, ridge, eps))
    assert not np.allclose(shared[0], shared[1][: shared[0].size])


@pytest.mark.parametrize("duplicated", [False, True])
def test_row_space_reduction_changes_nothing_but_rounding(monkeypatch, duplicated):
    """Fits on the neighbourhoods' row-space coordinates (p >= 1.5 k) equal the plain fits."""
    import fredask.measures.local_fit as local_fit
    from fredask.solvers.settings import RidgeSettings

    rng = np.random.default_rng(4)
    latent = rng.normal(size=(8, 17, 4))
    x = np.tanh(latent @ rng.normal(size=(4, 40)) + 0.01 * rng.normal(size=(8, 17, 40)))
    if duplicated:  # rank-deficient neighbourhoods: repeated rows
        x[:, 8:12] = x[:, 0:4]
    y = np.tanh(latent @ rng.normal(size=(4, 6))) + 0.1 * rng.normal(size=(8, 17, 6))
    x, x_test, y, y_test = x[:, :16], x[:, 16], y[:, :16], y[:, 16]
    ridge, eps = RidgeSettings(), np.finfo(np.float64).eps
    xc = x - x.mean(axis=1, keepdims=True)
    coordinates, _ = local_fit.row_space(xc, x_test[:, None, :])
    assert coordinates.shape == (8, 16, 16)
    np.testing.assert_allclose(
        np.linalg.svd(coordinates, compute_uv=False),
        np.linalg.svd(xc, compute_uv=False),
        rtol=1e-10,
        atol=1e-13,
    )
    reduced = local_fit.local_fit_errors(x, y, x_test, y_test, ridge, eps)
    monkeypatch.setattr(local_fit, "ROW_SPACE_RATIO", np.inf)
    plain = local_fit.local_fit_errors(x, y, x_test, y_test, ridge, eps)
    np.testing.assert_allclose(reduced, plain, rtol=1e-9)


def test_local_fits_show_a_meter_of_the_work_and_give_the_same_errors(
    make_features, capsys, monkeypatch
):
    from fredask.measures.local_fit import local_errors
    from fredask.stats.features import as_feature_set
    from fredask.stats.splits import resolve_split

    monkeypatch.setenv("FREDASK_PROGRESS_INTERVAL", "0")
    X, Y = make_features(200, 7, 5, seed=12)
    features = as_feature_set({"x": X, "y": Y})
    split = resolve_split(200)
    pairs = [("x", "y"), ("y", "x")]
    quiet = local_errors(features, split, pairs, 6, scheduler="threads", fit_memory=1)
    capsys.readouterr()
    shown = local_errors(
        features, split, pairs, 6, scheduler="threads", progress=True, fit_memory=1
    )
    for pair in pairs:
        np.testing.assert_array_equal(shown[pair], quiet[pair])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("local")]
    assert lines[-1].startswith("local fits: 100% of the work") and lines[-1].endswith("(done)")
