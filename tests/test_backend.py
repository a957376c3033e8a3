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


# ------------------------------------------------ LFRE and cumulants through torch


def _lfre_case(case: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, p, q = 400, 9, 5
    if case == "wide":  # p >= 1.5 k: the local fits factor the row space first
        p = 24
    x = rng.normal(size=(n, p))
    if case == "rank_deficient":
        x = x[:, :3] @ rng.normal(size=(3, p))
    if case == "duplicated":  # exact distance ties: neighbours ordered by row index
        x[200:260] = x[100:160]
    y = np.tanh(x @ rng.normal(size=(p, q))) + 0.1 * rng.normal(size=(n, q))
    dtype = np.float32 if case == "float32" else np.float64
    return x.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("case", ["float32", "float64", "rank_deficient", "duplicated", "wide"])
def test_lfre_through_torch_equals_numpy(case):
    """Neighbour search, gather and batched local fits, all in the second namespace."""
    x, y = _lfre_case(case)
    chunked = [da.from_array(a, chunks=(150, -1)) for a in (x, y)]
    k = 12 if case == "wide" else 20
    expected = fredask.pointwise_local_reconstruction_error(*chunked, k)
    got = fredask.pointwise_local_reconstruction_error(*chunked, k, device=TORCH)
    assert _relative(got, expected) < 1e-12


def test_lfre_matrix_through_torch_equals_numpy():
    rng = np.random.default_rng(4)
    latent = rng.normal(size=(600, 4))
    features = {
        name: np.tanh(latent @ rng.normal(size=(4, width))).astype(np.float32)
        for name, width in (("a", 6), ("b", 10), ("c", 3))
    }
    options = {"client": "threads", "progress": False, "n_local_points": 15}
    expected = reconstruction_matrix(features, "lfre", **options)
    got = reconstruction_matrix(features, "lfre", device=TORCH, **options)
    assert _relative(got.matrix.to_numpy(), expected.matrix.to_numpy()) < 1e-12


def test_neighbour_selection_helpers_agree_across_namespaces():
    """``smallest_indices`` / ``order_by`` (argpartition and lexsort where numpy has them)."""
    from fredask.measures.neighbours import smallest_k

    rng = np.random.default_rng(2)
    distances = rng.integers(0, 6, size=(7, 40)).astype(np.float64)  # many ties
    rows = np.arange(40, dtype=np.int64)[::-1].copy()
    want = smallest_k(distances, rows, 9, np)
    got = smallest_k(TORCH.xp.asarray(distances), TORCH.xp.asarray(rows), 9, TORCH.xp)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(to_host(a), b)


def _structures(seed: int = 0):
    rng = np.random.default_rng(seed)
    n_atoms = rng.integers(1, 9, size=60)
    values = rng.normal(size=(int(n_atoms.sum()), 4)) * 3 + 10
    return values.astype(np.float32), n_atoms


@pytest.mark.parametrize("chunks", [None, 37])
def test_cumulants_through_torch_equal_numpy(chunks):
    """Power sums, their merges across chunk edges and the cumulants, in torch."""
    from fredask.structure.cumulants import structure_cumulants

    values, n_atoms = _structures()
    data = values if chunks is None else da.from_array(values, chunks=(chunks, -1))
    options = {"order": 8, "skipped": [5]}
    expected = np.asarray(structure_cumulants(data, n_atoms, **options))
    got = np.asarray(structure_cumulants(data, n_atoms, device=TORCH, **options))
    assert np.isnan(got[5]).all() and np.isnan(expected[5]).all()
    keep = np.arange(len(n_atoms)) != 5
    scale = np.maximum(np.abs(expected[keep]), 1e-300)
    assert float(np.max(np.abs(got[keep] - expected[keep]) / scale)) < 1e-12


def test_bad_structure_is_named_through_torch():
    from fredask.structure.cumulants import structure_cumulants

    values, n_atoms = _structures()
    row = int(n_atoms[:11].sum()) + 1  # an atom of structure 11
    values[row, 2] = np.inf
    with pytest.raises(ValueError, match=rf"structure 11 \(first at row {row}\)"):
        np.asarray(structure_cumulants(values, n_atoms, device=TORCH))


def test_auto_and_gpu_ask_the_workers_of_a_distributed_client(distributed_client):
    """On a cluster the GPU must be on the workers, not in the client's process."""
    from fredask.backend import workers_see_gpus

    seen = workers_see_gpus(distributed_client)
    assert seen is gpu_available()  # the test cluster's workers share this machine
    assert workers_see_gpus("threads") is None
    if not seen:
        assert resolve_backend("auto", None, distributed_client) is NUMPY
        with pytest.raises(BackendError, match=r"cupy|CuPy|the cluster's workers"):
            resolve_backend("gpu", None, distributed_client)
