"""Bad inputs fail early with an error that names the offending array or index."""

from __future__ import annotations

import re

import dask.array as da
import numpy as np
import pytest
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.preprocessing import StandardScaler
from skmatter.linear_model import Ridge2FoldCV
from skmatter.preprocessing import StandardFlexibleScaler

import fredask
from fredask import metrics

N_ROWS = 60

ALL_MEASURES = {
    "gfre": metrics.global_reconstruction_error,
    "gfrd": metrics.global_reconstruction_distortion,
    "pointwise_gfre": metrics.pointwise_global_reconstruction_error,
    "pointwise_gfrd": metrics.pointwise_global_reconstruction_distortion,
}


@pytest.fixture
def features(make_features):
    return make_features(N_ROWS, 4, 3, seed=41)


@pytest.fixture(params=list(ALL_MEASURES))
def measure(request):
    return ALL_MEASURES[request.param]


def test_row_count_mismatch(features, measure):
    X, Y = features
    with pytest.raises(ValueError, match=r"row counts differ: 'X' has 60, 'Y' has 59"):
        measure(X, Y[:-1])


@pytest.mark.parametrize("method", ["qr", "gram"])
@pytest.mark.parametrize("chunk_rows", [None, 10, 25])
def test_nan_in_x_names_x_and_global_rows(features, measure, method, chunk_rows):
    X, Y = features
    X = X.copy()
    X[[47, 49], 1] = np.nan  # rows 47 and 49 share a chunk, at local rows 7, 9 or 22, 24
    if chunk_rows:
        X, Y = da.from_array(X, chunks=(chunk_rows, -1)), da.from_array(Y, chunks=(chunk_rows, -1))
    with pytest.raises(ValueError, match=re.escape("features 'X' hold NaN") + r".*rows \[47, 49\]"):
        measure(X, Y, method=method)


def test_nan_rows_listed_are_the_first_ones(features):
    X, Y = features
    X = X.copy()
    X[41:49, 0] = np.nan
    chunked = da.from_array(X, chunks=(20, -1)), da.from_array(Y, chunks=(20, -1))
    for inputs in ((X, Y), chunked):
        with pytest.raises(ValueError, match=r"'X'.*rows \[41, 42, 43, 44, 45\] and more"):
            metrics.global_reconstruction_error(*inputs)


@pytest.mark.parametrize("bad_value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("chunk_rows", [None, 6])
def test_non_finite_y_names_y(features, measure, bad_value, chunk_rows):
    X, Y = features
    Y = Y.copy()
    Y[13, 2] = bad_value
    if chunk_rows:
        X, Y = da.from_array(X, chunks=(chunk_rows, -1)), da.from_array(Y, chunks=(chunk_rows, -1))
    with pytest.raises(
        ValueError, match=re.escape("features 'Y' hold NaN or infinite") + r".*\[13\]"
    ):
        measure(X, Y)


@pytest.mark.parametrize("method", ["qr", "gram"])
def test_constant_y_has_zero_total_variance(features, measure, method):
    X, _ = features
    constant = np.full((N_ROWS, 3), 2.5)
    with pytest.raises(ValueError, match=r"features 'Y' have zero total variance"):
        measure(X, constant, method=method)


def test_constant_x_has_zero_total_variance(features):
    _, Y = features
    with pytest.raises(ValueError, match=r"features 'X' have zero total variance"):
        metrics.global_reconstruction_error(np.ones((N_ROWS, 2)), Y)


def test_constant_column_with_column_wise_scaling(features):
    X, Y = features
    X = np.c_[X, np.full(N_ROWS, 4.0)]
    for scaler in (
        StandardFlexibleScaler(column_wise=True),
        fredask.ScalerSettings(column_wise=True),
    ):
        with pytest.raises(ValueError, match=r"features 'X'.*zero variance.*column 4"):
            metrics.global_reconstruction_error(X, Y, scaler=scaler)


@pytest.mark.parametrize(
    ("indices", "error", "message"),
    [
        ({"test_idx": []}, ValueError, r"test_idx is empty"),
        ({"test_idx": np.array([], dtype=np.int64)}, ValueError, r"test_idx is empty"),
        ({"train_idx": np.array([], dtype=np.int64)}, ValueError, r"train_idx is empty"),
        ({"train_idx": np.arange(N_ROWS)}, ValueError, r"no test rows"),
        ({"test_idx": [3, 60]}, IndexError, r"test_idx .*outside \[0, 60\).*60"),
        ({"test_idx": [3, 1000, 4]}, IndexError, r"test_idx .*outside \[0, 60\).*1000"),
        ({"train_idx": [3, -61, 5]}, IndexError, r"train_idx .*outside \[0, 60\).*-61"),
        (
            {"train_idx": [3, 4, 5, 6], "test_idx": [1, 2, 3]},
            ValueError,
            r"train_idx and test_idx overlap .*first: 3",
        ),
        ({"test_idx": [1, 2, 2]}, ValueError, r"test_idx repeats rows .*2"),
        ({"train_idx": [7, 8, 9, 7]}, ValueError, r"train_idx repeats rows .*7"),
        ({"test_idx": [1, 2, -58]}, ValueError, r"test_idx repeats rows .*2"),
        ({"test_idx": [1.0, 2.0]}, TypeError, r"test_idx must hold integer"),
        ({"train_idx": [5], "test_idx": [1, 2]}, ValueError, r"at least 2 train rows"),
        ({"test_idx": np.ones(N_ROWS - 1, dtype=bool)}, ValueError, r"test_idx is a boolean mask"),
    ],
    ids=[
        "empty_test_list",
        "empty_test_array",
        "empty_train",
        "no_test_left",
        "test_out_of_range",
        "test_far_out_of_range",
        "train_negative_out_of_range",
        "overlap",
        "repeated_test",
        "repeated_train",
        "repeated_via_negative",
        "float_indices",
        "one_train_row",
        "mask_wrong_length",
    ],
)
def test_bad_indices(features, measure, indices, error, message):
    X, Y = features
    with pytest.raises(error, match=message):
        measure(X, Y, **indices)


@pytest.mark.parametrize(
    "make_estimator",
    [
        lambda: fredask.RidgeSettings(alphas=[0.5, 1.0]),
        lambda: Ridge2FoldCV(alphas=[1.0], alpha_type="relative"),
        lambda: Ridge2FoldCV(alphas=np.geomspace(1e-9, 1.0, 20), alpha_type="relative"),
    ],
    ids=["settings", "ridge2foldcv", "paper_grid"],
)
def test_relative_alpha_one_is_an_error(features, make_estimator):
    X, Y = features
    with pytest.raises(ValueError, match=r"relative alphas must lie in \[0, 1\).*1\.0"):
        metrics.global_reconstruction_error(X, Y, estimator=make_estimator())


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"alpha_type": "rel"}, r"alpha type 'rel'"),
        ({"regularization_method": "lasso"}, r"regularization method 'lasso'"),
        ({"scoring": "r2"}, r"scoring 'r2' is not supported"),
        ({"alphas": [-1.0], "alpha_type": "absolute"}, r"alphas must be finite and >= 0"),
        ({"alphas": [np.nan], "alpha_type": "absolute"}, r"alphas must be finite"),
        ({"alphas": []}, r"alphas must be a non-empty"),
    ],
)
def test_bad_ridge_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        fredask.RidgeSettings(**settings)


def test_ridge2foldcv_with_custom_cv_is_rejected(features):
    X, Y = features
    with pytest.raises(ValueError, match=r"custom cv"):
        metrics.global_reconstruction_error(X, Y, estimator=Ridge2FoldCV(cv=3))


def test_random_state_without_shuffle_is_rejected_like_kfold(features):
    X, Y = features
    estimator = Ridge2FoldCV(alphas=[0.1], shuffle=False, random_state=1)
    with pytest.raises(ValueError, match=r"shuffle is False"):
        metrics.global_reconstruction_error(X, Y, estimator=estimator)


def test_dask_row_chunks_that_do_not_line_up(features, measure):
    X, Y = features
    X, Y = da.from_array(X, chunks=(10, -1)), da.from_array(Y, chunks=(15, -1))
    with pytest.raises(
        ValueError, match=r"row chunks of 'X' and 'Y' do not line up: chunk 0 ends at row 10"
    ):
        measure(X, Y)


def test_dask_row_chunks_differing_later(features):
    X, Y = features
    X = da.from_array(X, chunks=((20, 20, 20), (4,)))
    Y = da.from_array(Y, chunks=((20, 25, 15), (3,)))
    with pytest.raises(ValueError, match=r"'X' and 'Y' do not line up: chunk 1 ends at row 40"):
        metrics.global_reconstruction_error(X, Y)


@pytest.mark.parametrize(
    ("which", "shape_change"),
    [
        ("X", lambda a: a[:, 0]),
        ("Y", lambda a: a[:, :, None]),
        ("X", lambda a: a[:, :, None]),
        ("Y", lambda a: a[:, 0]),
    ],
    ids=["X_1d", "Y_3d", "X_3d", "Y_1d"],
)
def test_non_2d_input(features, measure, which, shape_change):
    X, Y = features
    if which == "X":
        X = shape_change(X)
    else:
        Y = shape_change(Y)
    with pytest.raises(ValueError, match=rf"features '{which}' must be 2-D"):
        measure(X, Y)


def test_non_2d_dask_input(features):
    X, Y = features
    with pytest.raises(ValueError, match=r"features 'Y' must be 2-D"):
        metrics.global_reconstruction_error(da.from_array(X), da.from_array(Y[:, 0]))


@pytest.mark.parametrize(
    ("convert", "message"),
    [
        (lambda a: a.astype(str), r"features 'X' have dtype <U"),
        (lambda a: a.astype(complex), r"features 'X' have dtype complex128"),
        (lambda a: a[:, :0], r"features 'X' are empty"),
    ],
    ids=["strings", "complex", "no_columns"],
)
def test_non_numeric_or_empty_input(features, convert, message):
    X, Y = features
    with pytest.raises((TypeError, ValueError), match=message):
        metrics.global_reconstruction_error(convert(X), Y)


@pytest.mark.parametrize("estimator", [Ridge(), RidgeCV(), "ridge", 0.1], ids=repr)
def test_unsupported_estimator(features, measure, estimator):
    X, Y = features
    with pytest.raises(TypeError, match=r"estimator must be skmatter\.linear_model\.Ridge2FoldCV"):
        measure(X, Y, estimator=estimator)


@pytest.mark.parametrize("scaler", [StandardScaler(), "standard", 1.0], ids=repr)
def test_unsupported_scaler(features, measure, scaler):
    X, Y = features
    with pytest.raises(
        TypeError, match=r"scaler must be skmatter\.preprocessing\.StandardFlexibleScaler"
    ):
        measure(X, Y, scaler=scaler)


@pytest.mark.parametrize("method", ["svd", "QR", "", None])
def test_unknown_method(features, measure, method):
    X, Y = features
    with pytest.raises(ValueError, match=r"method must be one of \('qr', 'gram'\)"):
        measure(X, Y, method=method)


def test_unknown_scheduler_name(features):
    X, Y = features
    known = r"unknown cluster profile 'processes'; known profiles: local"
    with pytest.raises(ValueError, match=known):
        metrics.global_reconstruction_error(X, Y, client="processes")


def test_too_few_rows(features):
    X, Y = features
    with pytest.raises(ValueError, match=r"at least 2 rows"):
        metrics.global_reconstruction_error(X[:1], Y[:1])


@pytest.mark.parametrize("chunk_rows", [None, 10])
def test_nan_in_rows_that_are_neither_train_nor_test_is_ignored(features, chunk_rows):
    """Only rows the computation reads are checked, whatever the chunking."""
    X, Y = features
    train, test = np.arange(0, 20), np.arange(20, 30)
    expected = metrics.global_reconstruction_error(X, Y, test_idx=test, train_idx=train)
    X = X.copy()
    X[35:52] = np.nan
    if chunk_rows:
        X, Y = da.from_array(X, chunks=(chunk_rows, -1)), da.from_array(Y, chunks=(chunk_rows, -1))
    value = metrics.global_reconstruction_error(X, Y, test_idx=test, train_idx=train)
    assert value == pytest.approx(expected, rel=1e-13)
