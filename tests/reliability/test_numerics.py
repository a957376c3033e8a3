"""Numerics at the edges: whole neighbour counts, huge magnitudes, Gram failures, precision.

scikit-matter is the oracle: huge features are compared with scikit-matter on the same
data divided by the exact power of two (where its own arithmetic does not overflow),
float32 features with scikit-matter on their float64 values.
"""

import dask
import dask.array as da
import numpy as np
import pytest
import skmatter.metrics as skm

from fredask import RidgeSettings, ScalerSettings, metrics
from fredask.compare import reconstruction_matrix
from fredask.errors import FredaskError
from fredask.measures.caveats import FredaskWarning, UnderdeterminedFitWarning
from fredask.measures.global_fit import SolverError
from fredask.measures.local_fit import NeighbourCountError
from fredask.stats.scaler import FeatureScaleError

#: Features near 1e153: their squares (summed over rows) overflow float64.
HUGE = 2**510


def _pair(n=200, p=12, q=17, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * np.geomspace(0.5, 2.0, p) + 2.0
    y = np.tanh(x @ rng.normal(size=(p, q)) / np.sqrt(p)) + 0.05 * rng.normal(size=(n, q))
    return x, y


def _unreadable(shape):
    """A Dask array whose every read fails: a refusal before any work never touches it."""

    def read():
        raise AssertionError("the data was read before the request was refused")

    return da.from_delayed(dask.delayed(read)(), shape=shape, dtype=np.float64)


# --- n_local_points must be a whole number >= 2 -------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"), [(5.5, "5.5 (float)"), (True, "True (bool)"), ("5", "'5' (str)")]
)
@pytest.mark.parametrize(
    "call",
    [
        lambda x, y, k: metrics.local_reconstruction_error(x, y, k, client="sync"),
        lambda x, y, k: metrics.pointwise_local_reconstruction_error(x, y, k, client="sync"),
        lambda x, y, k: reconstruction_matrix(
            {"x": x, "y": y}, "lfre", n_local_points=k, client="sync", progress=False
        ),
    ],
    ids=["lfre", "pointwise_lfre", "matrix"],
)
def test_a_non_integer_neighbour_count_is_refused_before_any_read(call, value, shown):
    x, y = _unreadable((100, 4)), _unreadable((100, 3))
    with pytest.raises(NeighbourCountError) as caught:
        call(x, y, value)
    message = str(caught.value)
    assert message == f"n_local_points must be a whole number of neighbours, got {shown}"
    assert isinstance(caught.value, FredaskError) and isinstance(caught.value, TypeError)
    assert "\n" not in message


@pytest.mark.parametrize("value", [0, -3, 1])
def test_a_neighbour_count_below_two_is_refused(value):
    x, y = _unreadable((100, 4)), _unreadable((100, 3))
    with pytest.raises(NeighbourCountError, match=rf"at least 2 .* got {value}$"):
        metrics.local_reconstruction_error(x, y, value, client="sync")
    with pytest.raises(ValueError, match=rf"at least 2 .* got {value}$"):
        reconstruction_matrix({"x": x}, "lfre", n_local_points=value, client="sync")


def test_numpy_integers_are_whole_numbers():
    x, y = _pair(n=160, p=6, q=5, seed=1)
    expected = skm.local_reconstruction_error(x, y, 9)
    for k in (np.int64(9), np.int32(9), np.uint8(9)):
        got = metrics.local_reconstruction_error(x, y, k, client="sync")
        assert got == pytest.approx(expected, rel=1e-10)


# --- huge magnitudes: rescaled by an exact power of two before squaring ---------------


@pytest.mark.parametrize("method", ["qr", "gram"])
def test_huge_features_give_scikit_matters_numbers_on_the_unscaled_data(method):
    x, y = _pair()
    rel = 1e-10 if method == "qr" else 1e-6
    for scale_x, scale_y in ((HUGE, 1.0), (HUGE, 2**500), (1.0, 2**600)):
        big_x, big_y = x * scale_x, y * scale_y
        with np.errstate(over="ignore"):  # their squares overflow
            assert not np.isfinite(np.sum(big_x**2) + np.sum(big_y**2))
        got = metrics.global_reconstruction_error(big_x, big_y, method=method, client="sync")
        assert got == pytest.approx(skm.global_reconstruction_error(x, y), rel=rel)
        got = metrics.global_reconstruction_distortion(big_x, big_y, method=method, client="sync")
        assert got == pytest.approx(skm.global_reconstruction_distortion(x, y), rel=rel)
    got = metrics.pointwise_global_reconstruction_error(x * HUGE, y * HUGE, client="sync")
    np.testing.assert_allclose(got, skm.pointwise_global_reconstruction_error(x, y), rtol=1e-9)


def test_huge_chunked_features_and_the_lfre_match_scikit_matter():
    x, y = _pair(n=240, p=8, q=6, seed=2)
    # chunks with different peak magnitudes get different powers of two, merged exactly
    x[:60] *= 8.0
    big_x = da.from_array(x * HUGE, chunks=(50, -1))
    big_y = da.from_array(y * 2**700, chunks=(50, -1))
    got = metrics.global_reconstruction_error(big_x, big_y, client="sync")
    assert got == pytest.approx(skm.global_reconstruction_error(x, y), rel=1e-9)
    got = metrics.local_reconstruction_error(big_x, big_y, 12, client="sync")
    assert got == pytest.approx(skm.local_reconstruction_error(x, y, 12), rel=1e-9)
    matrix = reconstruction_matrix(
        {"x": big_x, "y": big_y}, "gfre", client="sync", progress=False
    ).matrix
    assert matrix.loc["y", "x"] == pytest.approx(skm.global_reconstruction_error(y, x), rel=1e-9)


def test_tiny_features_are_constant_for_the_scaler_as_in_scikit_matter():
    x, y = _pair(seed=3)
    with pytest.raises(FeatureScaleError, match=r"^features 'X' have zero total variance"):
        metrics.global_reconstruction_error(x * 2.0**-600, y, client="sync")
    with pytest.raises(ValueError, match="zero variance"):  # scikit-matter agrees
        skm.global_reconstruction_error(x * 2.0**-600, y)
    exact = ScalerSettings(atol=0.0)  # without the floor, the tiny values are fitted exactly
    got = metrics.global_reconstruction_error(x * 2.0**-600, y, scaler=exact, client="sync")
    assert got == pytest.approx(skm.global_reconstruction_error(x, y), rel=1e-10)


def test_huge_features_without_the_scalers_spread_are_refused_naming_the_model():
    x, y = _pair(seed=4)
    with pytest.raises(FeatureScaleError) as caught:
        metrics.global_reconstruction_error(
            x * HUGE, y, scaler=ScalerSettings(with_std=False), client="sync"
        )
    power = int(np.frexp(np.abs(x).max())[1]) + 510
    assert str(caught.value) == (
        f"features 'X' reach magnitudes near 2**{power}, whose squares leave float64's "
        "range, and without the scaler's spread (with_std=False) rescaling them would "
        "change the errors; multiply them by a power of two"
    )


def test_a_spread_beyond_float64_is_refused_naming_the_model():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 100)) * 2.0**1021  # finite, but sqrt(sum of variances) is not
    y = rng.normal(size=(200, 3))
    with pytest.raises(FeatureScaleError, match=r"^features 'Y' are too large for float64"):
        metrics.global_reconstruction_error(y, x, client="sync")


def test_a_gram_eigensolver_failure_names_the_pair_and_advises_qr(monkeypatch):
    # LAPACK's non-convergence is not reachable with finite, rescaled inputs: simulate it
    # where numpy raises it, the eigendecomposition of the Gram statistics
    def no_convergence(*args, **kwargs):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    x, y = _pair(seed=6)
    monkeypatch.setattr(np.linalg, "eigh", no_convergence)
    with pytest.raises(SolverError) as caught:
        metrics.global_reconstruction_error(x, y, method="gram", client="sync")
    assert str(caught.value) == (
        "method='gram': the eigensolver failed on the statistics of 'X' -> 'Y' "
        "(Eigenvalues did not converge); use method='qr', the exact path"
    )
    with pytest.raises(SolverError, match=r"'a' -> 'a' and 3 other pairs .*method='qr'"):
        reconstruction_matrix(
            {"a": x, "b": y}, "gfre", method="gram", client="sync", progress=False
        )
    # the exact path does not use it
    got = metrics.global_reconstruction_error(x, y, client="sync")
    assert got == pytest.approx(skm.global_reconstruction_error(x, y), rel=1e-12)


# --- fewer train rows than features ---------------------------------------------------


def test_fewer_train_rows_than_features_warns_once_naming_the_models():
    x, y = _pair(n=40, p=30, q=8, seed=7)
    with pytest.warns(UnderdeterminedFitWarning) as caught:
        reconstruction_matrix({"wide": x, "narrow": y}, "gfre", client="sync", progress=False)
    assert len(caught) == 1 and issubclass(caught[0].category, FredaskWarning)
    assert str(caught[0].message).startswith(
        "fewer train rows (20) than source features ('wide' has 30):"
    )
    assert caught[0].filename == __file__  # attributed to the caller, not to fredask


# --- float32: the matrix fits exactly by default, the drop-ins keep scikit-matter's rule


def _near_duplicates(seed=4):
    """float32 crystal-like data: every environment five times, perturbed at 1e-7."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(60, 8)) + 3
    x = np.repeat(base, 5, axis=0) * (1 + 1e-7 * rng.normal(size=(300, 8)))
    y = np.repeat(np.tanh(base @ rng.normal(size=(8, 6))), 5, axis=0)
    y = y + 1e-7 * rng.normal(size=(300, 6))
    return x.astype(np.float32), y.astype(np.float32)


def test_float32_matrix_fits_are_float64_exact_by_default():
    x, y = _near_duplicates()
    exact = skm.local_reconstruction_error(x.astype(float), y.astype(float), 10)
    result = reconstruction_matrix(
        {"x": x, "y": y}, "lfre", n_local_points=10, client="sync", progress=False
    )
    assert result.precision == "float64"
    assert result.matrix.loc["x", "y"] == pytest.approx(exact, rel=1e-9)
    # the drop-in keeps scikit-matter's float32 rule, which misleads here (as does skmatter)
    rule = metrics.local_reconstruction_error(x, y, 10, client="sync")
    assert rule > 5 * exact and skm.local_reconstruction_error(x, y, 10) > 2 * exact
    assert rule == metrics.local_reconstruction_error(
        x, y, 10, estimator=RidgeSettings(precision="input"), client="sync"
    )
    chosen = reconstruction_matrix(
        {"x": x, "y": y},
        "lfre",
        n_local_points=10,
        estimator=RidgeSettings(),
        client="sync",
        progress=False,
    )
    assert chosen.precision == "input"
    assert chosen.matrix.loc["x", "y"] == pytest.approx(rule, rel=1e-12)
