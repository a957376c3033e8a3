"""Shared fixtures: reference data, generated features, input containers, skmatter oracle.

Everything scikit-matter computes here is the oracle fredask is compared with; no value
in the tests comes from fredask itself.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

#: The seed scikit-matter uses for its default split and for Ridge2FoldCV's folds.
SKMATTER_SEED = 0x5F3759DF
#: The relative alpha grid of scikit-matter's reconstruction measures.
DEFAULT_ALPHAS = np.geomspace(1e-9, 0.9, 20)


@pytest.fixture(scope="session")
def ch4():
    """scikit-matter's degenerate CH4 manifold: (power spectrum P, bispectrum B)."""
    from skmatter.datasets import load_degenerate_CH4_manifold

    data = load_degenerate_CH4_manifold().data
    power = np.asarray(data.SOAP_power_spectrum)
    bispectrum = np.asarray(data.SOAP_bispectrum)
    assert power.shape == (162, 12)
    assert bispectrum.shape == (162, 12)
    return power, bispectrum


@pytest.fixture(scope="session")
def ch4_split():
    """docs/method.md, section 8 split: 40 random test rows, train = the sorted complement."""
    test_idx = np.random.default_rng(0).choice(162, 40, replace=False)
    train_idx = np.setdiff1d(np.arange(162), test_idx)
    return train_idx, test_idx


def _make_features(
    n_rows,
    n_source,
    n_target,
    *,
    seed=0,
    dtype=np.float64,
    rank_deficient=False,
    duplicated=False,
    noise=0.05,
    scales=(0.3, 3.0),
):
    """Mean-shifted, anisotropic source X and a non-linear function of it as target Y.

    Parameters
    ----------
    rank_deficient : bool
        The last ``p // 2`` columns of X are linear combinations of the others.
    duplicated : bool
        The second half of the rows is a copy of the first half.
    scales : (float, float)
        Smallest and largest column spread of X (geometric steps between).
    """
    rng = np.random.default_rng(seed)
    n_base = (n_rows + 1) // 2 if duplicated else n_rows
    scales = np.geomspace(*scales, n_source)
    offset = rng.uniform(-2.0, 8.0, n_source)
    latent = rng.normal(size=(n_base, n_source))
    source = latent * scales + offset
    if rank_deficient:
        n_free = n_source - n_source // 2
        mixing = rng.normal(size=(n_free, n_source - n_free))
        source[:, n_free:] = source[:, :n_free] @ mixing
    projection = latent @ rng.normal(size=(n_source, n_target)) / np.sqrt(n_source)
    target = (
        np.tanh(projection)
        + 0.3 * projection**2
        + 0.1 * np.sin(3.0 * latent[:, :1])
        + noise * rng.normal(size=(n_base, n_target))
        + rng.uniform(-1.0, 1.0, n_target)
    )
    if duplicated:
        source = np.concatenate([source, source])[:n_rows]
        target = np.concatenate([target, target])[:n_rows]
    return source.astype(dtype), target.astype(dtype)


@pytest.fixture(scope="session")
def make_features():
    """Factory of generated (X, Y); see ``_make_features``."""
    return _make_features


@pytest.fixture
def as_input(tmp_path):
    """Convert a numpy array to one of the input containers fredask accepts.

    ``as_input(kind, array, name, chunk_rows)`` with kind "numpy", "dask", "zarr",
    "xarray" (numpy-backed) or "xarray-dask".
    """

    def convert(kind, array, name="x", chunk_rows=None):
        chunk_rows = chunk_rows or array.shape[0]
        if kind == "numpy":
            return array
        if kind == "dask":
            return da.from_array(array, chunks=(chunk_rows, array.shape[1]))
        if kind == "zarr":
            import zarr

            stored = zarr.create_array(
                store=tmp_path / f"{name}.zarr",
                shape=array.shape,
                chunks=(chunk_rows, array.shape[1]),
                dtype=array.dtype,
            )
            stored[:] = array
            return stored
        if kind in ("xarray", "xarray-dask"):
            import xarray as xr

            data = array if kind == "xarray" else da.from_array(array, chunks=(chunk_rows, -1))
            return xr.DataArray(data, dims=("atom", f"{name}_feature"))
        raise ValueError(f"unknown input kind {kind!r}")

    return convert


def _default_estimator():
    from skmatter.linear_model import Ridge2FoldCV

    return Ridge2FoldCV(
        alphas=DEFAULT_ALPHAS,
        alpha_type="relative",
        regularization_method="cutoff",
        random_state=SKMATTER_SEED,
        shuffle=True,
        scoring="neg_root_mean_squared_error",
        n_jobs=1,
    )


def _skmatter_measures(X, Y, train_idx=None, test_idx=None, scaler=None, estimator=None):
    """scikit-matter's four global measures, each with freshly built scaler/estimator.

    ``scaler`` and ``estimator`` are factories (callables) or None; the distortion is
    only computed where scikit-matter can (``p <= q``).
    """
    import skmatter.metrics as skm

    def kwargs():
        return {
            "train_idx": train_idx,
            "test_idx": test_idx,
            "scaler": None if scaler is None else scaler(),
            "estimator": None if estimator is None else estimator(),
        }

    out = {
        "gfre": float(skm.global_reconstruction_error(X, Y, **kwargs())),
        "pointwise_gfre": skm.pointwise_global_reconstruction_error(X, Y, **kwargs()),
    }
    if X.shape[1] <= Y.shape[1]:
        out["gfrd"] = float(skm.global_reconstruction_distortion(X, Y, **kwargs()))
        out["pointwise_gfrd"] = skm.pointwise_global_reconstruction_distortion(X, Y, **kwargs())
    return out


@pytest.fixture(scope="session")
def skmatter_measures():
    """scikit-matter's GFRE, GFRD and their pointwise variants (the oracle)."""
    return _skmatter_measures


@pytest.fixture(scope="session")
def default_estimator():
    """Factory of scikit-matter's default Ridge2FoldCV for the reconstruction measures."""
    return _default_estimator


@pytest.fixture
def distributed_client():
    """A client of a LocalCluster of two single-threaded worker processes (closed after)."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client
