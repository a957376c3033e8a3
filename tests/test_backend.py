"""The array-backend seam: a second array namespace (torch on the CPU) through whole passes.

The GPU path is the numpy code run on another array module; these tests run it
on torch CPU tensors (through ``array_api_compat``), so CI, which has no GPU,
exercises every line the device path uses and requires the numpy results.
"""

import dask.array as da
import numpy as np
import pytest

import fredask
from fredask.backend import (
    NUMPY,
    ArrayBackend,
    BackendError,
    gpu_available,
    r_factor,
    resolve_backend,
    to_host,
)
from fredask.compare import reconstruction_matrix
from fredask.stats.features import as_feature_set
from fredask.stats.passes import statistics_kernel
from fredask.stats.splits import FOLD1, FOLD2, TEST, UNUSED

torch = pytest.importorskip("torch")
TORCH = ArrayBackend("torch")


def _data(dtype, n=2400, p=11, q=6, rank=None, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    if rank is not None:  # rank-deficient source: columns repeat a few directions
        x = x[:, :rank] @ rng.normal(size=(rank, p))
    y = np.tanh(x @ rng.normal(size=(p, q))) + 0.2 * rng.normal(size=(n, q))
    return x.astype(dtype), y.astype(dtype)


def _relative(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


# rank-deficient in float64 only: rounded to float32, a rank-3 source has singular values
# at float32 noise, next to the cutoff, where any two summation orders may truncate apart
@pytest.mark.parametrize(
    ("dtype", "rank"), [(np.float32, None), (np.float64, None), (np.float64, 3)]
)
@pytest.mark.parametrize("method", ["qr", "gram"])
def test_gfre_pass_through_torch_equals_numpy(dtype, method, rank):
    x, y = _data(dtype, rank=rank)
    chunked = [da.from_array(a, chunks=(500, -1)) for a in (x, y)]
    expected = fredask.global_reconstruction_error(*chunked, method=method)
    got = fredask.global_reconstruction_error(*chunked, method=method, device=TORCH)
    assert got == pytest.approx(expected, rel=1e-12)
    # and the distortion and the pointwise errors (the second pass)
    expected = fredask.pointwise_global_reconstruction_error(*chunked, method=method)
    got = fredask.pointwise_global_reconstruction_error(*chunked, method=method, device=TORCH)
    assert _relative(got, expected) < 1e-12
    expected = fredask.global_reconstruction_distortion(*chunked, method=method)
    got = fredask.global_reconstruction_distortion(*chunked, method=method, device=TORCH)
    assert got == pytest.approx(expected, rel=1e-12)


def test_all_pairs_matrix_through_torch_equals_numpy():
    rng = np.random.default_rng(3)
    latent = rng.normal(size=(3000, 5))
    features = {
        name: np.tanh(latent @ rng.normal(size=(5, width))).astype(np.float32)
        for name, width in (("a", 8), ("b", 13), ("c", 4))
    }
    expected = reconstruction_matrix(features, "gfre", client="threads", progress=False)
    got = reconstruction_matrix(features, "gfre", client="threads", progress=False, device=TORCH)
    assert _relative(got.matrix.to_numpy(), expected.matrix.to_numpy()) < 1e-12


def test_the_kernels_compute_in_the_namespace_they_are_given():
    x, y = _data(np.float64, n=200)
    labels = np.repeat(np.array([FOLD1, FOLD2, TEST, UNUSED], dtype=np.int8), 50)
    features = as_feature_set({"x": x, "y": y})
    moments = statistics_kernel(
        labels, x, y, names=features.names, offset=0, method="qr", xp=TORCH.xp
    )
    assert all(isinstance(m.scatter, torch.Tensor) for m in moments)
    reference = statistics_kernel(labels, x, y, names=features.names, offset=0, method="qr", xp=np)
    for m, r in zip(moments, reference, strict=True):
        assert m.count == r.count
        np.testing.assert_allclose(to_host(m.mean), r.mean, rtol=1e-13)
        # R factors agree up to the signs of their rows: compare R^T R
        np.testing.assert_allclose(
            to_host(m.scatter.T @ m.scatter), r.scatter.T @ r.scatter, rtol=1e-11, atol=1e-11
        )


def test_r_factor_of_every_namespace_spans_the_same_scatter():
    a = np.random.default_rng(1).normal(size=(40, 7))
    for xp in (np, TORCH.xp):
        r = to_host(r_factor(xp.asarray(a.copy()), xp))
        assert r.shape == (7, 7)
        assert np.allclose(np.tril(r, -1), 0)
        np.testing.assert_allclose(r.T @ r, a.T @ a, rtol=1e-12, atol=1e-12)


def test_resolve_backend():
    assert resolve_backend("cpu") is NUMPY
    assert resolve_backend(TORCH) is TORCH
    if not gpu_available():
        assert resolve_backend("auto") is NUMPY
        with pytest.raises(BackendError, match=r"CuPy|cupy|CUDA"):
            resolve_backend("gpu")
    with pytest.raises(BackendError, match="device must be one of"):
        resolve_backend("tpu")
    with pytest.raises(BackendError, match="array namespace must be one of"):
        ArrayBackend("jax")


def test_nan_features_are_named_through_the_second_namespace():
    x, y = _data(np.float64, n=600)
    x[417, 2] = np.nan
    with pytest.raises(ValueError, match=r"features .X. hold NaN or infinite values in rows \[417"):
        fredask.global_reconstruction_error(x, y, device=TORCH)


@pytest.mark.skipif(not gpu_available(), reason="needs a CUDA GPU and CuPy")
def test_gfre_on_the_gpu_equals_numpy():  # pragma: no cover - needs a GPU
    x, y = _data(np.float64)
    chunked = [da.from_array(a, chunks=(500, -1)) for a in (x, y)]
    expected = fredask.global_reconstruction_error(*chunked)
    got = fredask.global_reconstruction_error(*chunked, device="gpu")
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("shape", [(9, 6), (3, 7, 5)])
def test_svd_falls_back_to_gesvd_where_gesdd_does_not_converge(monkeypatch, shape):
    """numpy's gesdd now and then fails on finite matrices; ``backend.svd`` then uses gesvd."""
    from fredask import backend

    a = np.random.default_rng(0).normal(size=shape)
    want = np.linalg.svd(a, full_matrices=False)

    def gesdd_fails(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(np.linalg, "svd", gesdd_fails)
    u, s, vt = backend.svd(a, np)
    np.testing.assert_allclose(s, want[1], rtol=1e-12)
    np.testing.assert_allclose((u * s[..., None, :]) @ vt, a, atol=1e-12)
    with pytest.raises(np.linalg.LinAlgError):  # non-finite input still raises
        backend.svd(np.full(shape, np.nan), np)
