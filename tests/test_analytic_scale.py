"""At a scale scikit-matter cannot reach: 10^6 chunked rows against closed forms.

For rows x ~ N(0, I_p) and Y = X A + E with E ~ N(0, s^2 I_q) independent, the
best linear map is A and, after scikit-matter's scaling (one scalar per
matrix), the squared error per test row is ||e||^2 / (||A||_F^2 + q s^2).  So

    GFRE^2 = q s^2 / (||A||_F^2 + q s^2) * (1 + O(p / n_train)),

up to the sampling noise of the test mean, of relative size sqrt(2 / (q n_test)).
"""

import dask.array as da
import numpy as np
import pytest
import zarr

from fredask import metrics
from fredask.compare import reconstruction_matrix

N_ROWS = 1_000_000
P, Q, NOISE = 16, 8, 0.5
CHUNK = 65_536


def _gaussian_pair(seed: int, noise: float):
    """Dask arrays X (N x P) and Y = X A + noise, generated chunk by chunk."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(P, Q))
    x = da.random.default_rng(seed + 1).standard_normal((N_ROWS, P), chunks=(CHUNK, P))
    e = da.random.default_rng(seed + 2).standard_normal((N_ROWS, Q), chunks=(CHUNK, Q))
    return x, x @ a + noise * e, a


def _expected_gfre(a: np.ndarray, noise: float) -> float:
    return float(np.sqrt(Q * noise**2 / ((a**2).sum() + Q * noise**2)))


@pytest.mark.parametrize("method", ["qr", "gram"])
def test_gfre_matches_closed_form_at_one_million_rows(method):
    x, y, a = _gaussian_pair(0, NOISE)
    expected = _expected_gfre(a, NOISE)
    gfre = metrics.global_reconstruction_error(x, y, method=method)
    n_test = N_ROWS // 2
    tolerance = 5 * np.sqrt(2 / (Q * n_test)) + 2 * P / N_ROWS
    assert gfre == pytest.approx(expected, rel=tolerance)


def test_exact_linear_target_has_vanishing_error():
    x, y, _ = _gaussian_pair(3, 0.0)
    assert metrics.global_reconstruction_error(x, y) < 1e-10


def test_reverse_direction_and_zarr_store(tmp_path):
    """Y -> X through a Zarr store: X = Y B + residual with a known covariance.

    For jointly Gaussian (x, y) the best map from y loses exactly the
    conditional covariance  S = I - A (A^T A + s^2 I)^-1 A^T  of x given y, so
    GFRE^2 = tr(S) / tr(I_p) = tr(S) / P.
    """
    x, y, a = _gaussian_pair(5, NOISE)
    group = zarr.open_group(tmp_path / "features.zarr", mode="w")
    stores = {}
    for name, arr in {"x": x, "y": y}.items():
        target = group.create_array(name, shape=arr.shape, chunks=(CHUNK, arr.shape[1]), dtype="f8")
        da.store(arr, target, lock=False)
        stores[name] = target
    conditional = np.eye(P) - a @ np.linalg.solve(a.T @ a + NOISE**2 * np.eye(Q), a.T)
    expected = float(np.sqrt(np.trace(conditional) / P))
    result = reconstruction_matrix(stores, "gfre", client="threads", progress=False)
    tolerance = 5 * np.sqrt(2 / (P * N_ROWS // 2)) + 2 * Q / N_ROWS
    assert result.matrix.loc["y", "x"] == pytest.approx(expected, rel=5 * tolerance)
    assert result.matrix.loc["x", "y"] == pytest.approx(_expected_gfre(a, NOISE), rel=5 * tolerance)
