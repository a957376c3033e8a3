"""The array backend of a pass: which array module the chunk kernels compute with.

Every chunk kernel takes an array module ``xp`` and uses only names of the
Python array API standard on it (``xp.concat``, ``xp.nonzero``,
``xp.linalg.vector_norm``, ...), plus the few helpers below for what the
standard leaves out or what one library does much faster.  This module is the
one place that

* decides the module of a pass (:func:`resolve_backend`): from an explicit
  ``device=`` (``"cpu"``, ``"gpu"``, ``"auto"``, or an :class:`ArrayBackend`),
  from the type of the input chunks (a Dask array whose ``_meta`` is a CuPy
  array), or, for ``"auto"``, from whether CuPy sees a GPU;
* moves chunks to the device (:func:`to_device`: ``xp.asarray`` of the host
  block, one copy per chunk on a GPU, none on numpy) and small results back
  (:func:`to_host`), so reductions move small matrices, never chunks.

Three namespaces are known: ``numpy`` (numpy itself, array-API compatible
since 2.0), ``cupy`` and ``torch`` (through ``array_api_compat``).  ``torch``
on the CPU is how CI runs the same kernels through a second, non-numpy
namespace without a GPU.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from fredask.errors import FredaskError

#: Array modules a pass can compute with.
NAMESPACES = ("numpy", "cupy", "torch")
#: What ``device=`` may say (or an :class:`ArrayBackend`).
DEVICES = ("cpu", "gpu", "auto")


class BackendError(FredaskError, ValueError):
    """A device or array namespace that is unknown or not available here."""


@dataclass(frozen=True)
class ArrayBackend:
    """An array namespace for the chunk kernels of a pass.

    Parameters
    ----------
    name : {"numpy", "cupy", "torch"}
        ``numpy`` on the host; ``cupy`` on a GPU; ``torch`` (CPU tensors by
        default) as a second namespace that runs everywhere.
    """

    name: str = "numpy"

    def __post_init__(self):
        if self.name not in NAMESPACES:
            raise BackendError(f"array namespace must be one of {NAMESPACES}, got {self.name!r}")

    @property
    def xp(self):
        """The array module (importing it on first use)."""
        return namespace(self.name)

    @property
    def on_host(self) -> bool:
        """Whether the kernels compute on numpy arrays."""
        return self.name == "numpy"


NUMPY = ArrayBackend("numpy")


def namespace(name: str):
    """The array module called ``name`` (``numpy``, ``cupy`` or ``torch``).

    Raises
    ------
    BackendError
        For an unknown name, or a library that is not installed.
    """
    if name == "numpy":
        return np
    if name not in NAMESPACES:
        raise BackendError(f"array namespace must be one of {NAMESPACES}, got {name!r}")
    try:
        importlib.import_module(name)
        return importlib.import_module(f"array_api_compat.{name}")
    except ImportError as error:
        extra = " (pip install 'fredask[gpu]')" if name == "cupy" else ""
        raise BackendError(f"array namespace {name!r} is not installed{extra}: {error}") from None


def gpu_available() -> bool:
    """Whether CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, no device: all mean "no GPU"
        return False


def _chunk_namespace(arrays) -> str | None:
    """``"cupy"`` when some Dask input holds CuPy chunks (its ``_meta``), else None."""
    for array in arrays or ():
        meta = getattr(array, "_meta", None)
        if meta is not None and type(meta).__module__.startswith("cupy"):
            return "cupy"
    return None


def workers_see_gpus(scheduler) -> bool | None:
    """Whether every worker of a distributed client sees a GPU; None for local schedulers.

    Asked of the workers themselves (``Client.run``), since on a cluster the
    client (a login node, a notebook) often has no GPU while its workers
    (``dask-cuda-worker``, a ``LocalCUDACluster``, the ``*-gpu`` profiles) do.
    """
    if scheduler is None or isinstance(scheduler, str) or not hasattr(scheduler, "run"):
        return None
    try:
        seen = scheduler.run(gpu_available)
    except Exception:  # a closed or unreachable client: say nothing, check locally
        return None
    return bool(seen) and all(seen.values())


def resolve_backend(
    device: str | ArrayBackend = "cpu", arrays=None, scheduler=None
) -> ArrayBackend:
    """The array backend of a pass.

    Parameters
    ----------
    device : {"cpu", "gpu", "auto"} or ArrayBackend
        ``"cpu"``: numpy; ``"gpu"``: CuPy (an error without a GPU where the
        kernels run); ``"auto"``: CuPy when the input chunks are CuPy arrays
        or the GPU is there, else numpy.  An :class:`ArrayBackend` is used
        as it is.
    arrays : sequence of arrays, optional
        The pass's inputs; Dask arrays of CuPy chunks choose CuPy under
        ``"auto"`` and are refused under ``"cpu"``.
    scheduler : distributed.Client or str, optional
        Where the kernels run: with a distributed client the GPU must be on
        its workers (:func:`workers_see_gpus`), otherwise in this process.

    Returns
    -------
    ArrayBackend
    """
    if isinstance(device, ArrayBackend):
        return device
    if device not in DEVICES:
        raise BackendError(f"device must be one of {DEVICES} or an ArrayBackend, got {device!r}")
    chunks = _chunk_namespace(arrays)
    if device == "cpu":
        if chunks is not None:
            raise BackendError("the features are CuPy arrays; pass device='gpu' or 'auto'")
        return NUMPY
    remote = workers_see_gpus(scheduler)
    where = "the cluster's workers" if remote is not None else "this process"
    has_gpu = gpu_available() if remote is None else remote
    if device == "gpu" or chunks is not None or has_gpu:
        namespace("cupy")
        if not has_gpu:
            raise BackendError(f"device='gpu' but CuPy sees no CUDA device in {where}")
        return ArrayBackend("cupy")
    return NUMPY


def to_device(block, xp):
    """A host block as an array of ``xp`` (no copy for numpy, one copy to a GPU)."""
    return xp.asarray(block)


def to_host(value) -> np.ndarray:
    """A numpy array of a numpy, CuPy or torch array (small results, not chunks)."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "get") and type(value).__module__.startswith("cupy"):
        return value.get()
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def smallest_indices(a, k: int, xp):
    """Indices of the ``k`` smallest entries of each row of ``a`` (2-D), in any order.

    The array API standard has no partial selection: numpy and CuPy have
    ``argpartition`` (linear in the row length, where a sort is not), torch
    has ``topk``; any other module sorts.
    """
    if hasattr(xp, "argpartition"):
        return xp.argpartition(a, k - 1, axis=1)[:, :k]
    if hasattr(xp, "topk"):
        return xp.topk(a, k, dim=1, largest=False, sorted=False).indices
    return xp.argsort(a, axis=1, stable=True)[:, :k]


def order_by(primary, secondary, xp):
    """The order of each row of ``primary`` (2-D), ties broken by ``secondary``.

    numpy's ``lexsort`` sorts along an axis; CuPy's takes 1-D keys only and
    the standard has no lexsort, so other modules sort twice, stably: by
    the secondary key, then by the primary key in that order.
    """
    if xp is np:
        return np.lexsort((secondary, primary), axis=-1)
    by_second = xp.argsort(secondary, axis=1, stable=True)
    gathered = xp.take_along_axis(primary, by_second, axis=1)
    return xp.take_along_axis(by_second, xp.argsort(gathered, axis=1, stable=True), axis=1)


def segment_sums(x, starts, lengths, out, xp) -> None:
    """``out[:, i] = x[:, starts[i] : starts[i] + lengths[i]].sum(axis=1)``.

    The array API standard has no segment reduction.  numpy and CuPy reduce
    in place with ``add.reduceat`` (CuPy before it had one: ``cupyx.scatter_add``),
    torch with ``index_add_``; any other module
    sums segment by segment.  (An indicator-matrix GEMM would be one call,
    but it mixes a non-finite value into every segment, and the callers name
    the structure that holds one.)

    Parameters
    ----------
    x : array, shape (d, n)
    starts, lengths : arrays of int, shape (k,)
        Contiguous segments covering the ``n`` columns, in order.
    out : array, shape (d, k)
    """
    if type(x).__module__.startswith("cupy"):  # the ufunc itself, not a compat wrapper
        import cupy

        if hasattr(cupy.add, "reduceat"):
            cupy.add.reduceat(x, starts, axis=1, out=out)
        else:  # older CuPy: add.at's counterpart
            import cupyx

            out[...] = 0
            host = to_host(lengths)
            segment_of = cupy.asarray(np.repeat(np.arange(host.size), host))
            cupyx.scatter_add(out, (slice(None), segment_of), x)
        return
    reduceat = getattr(getattr(xp, "add", None), "reduceat", None)
    if reduceat is not None:
        reduceat(x, starts, axis=1, out=out)
        return
    if hasattr(out, "index_add_"):
        segment_of = xp.repeat(xp.arange(lengths.shape[0]), lengths)
        out[...] = 0
        out.index_add_(1, segment_of, x)
        return
    for i, (start, length) in enumerate(zip(to_host(starts), to_host(lengths), strict=True)):
        out[:, i] = xp.sum(x[:, int(start) : int(start + length)], axis=1)


def empty_columns(shape: tuple[int, int], xp):
    """An empty float64 matrix laid out column by column where the module allows it.

    Column-major (Fortran) order lets LAPACK factor a numpy block in place;
    other modules get their default layout.
    """
    if xp is np:
        return np.empty(shape, dtype=np.float64, order="F")
    return xp.empty(shape, dtype=xp.float64)


def r_factor(a, xp):
    """The R factor of the rows of ``a`` (which may be overwritten).

    On numpy, LAPACK ``dgeqrf`` on the column-major buffer with the optimal
    workspace: ``numpy.linalg.qr`` copies its input to Fortran order and back,
    which made it 1.5 to 2 times slower on the tall blocks of a pass.  Other
    modules use their own ``linalg.qr`` in its R-only mode (the array API
    standard has no such mode, but CuPy and torch do).
    """
    if xp is np:
        a = np.asfortranarray(a)
        lwork, _ = lapack.dgeqrf_lwork(*a.shape)
        qr, _, _, info = lapack.dgeqrf(a, lwork=int(lwork), overwrite_a=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"dgeqrf failed with info={info}")
        return np.triu(qr[: min(a.shape)])
    r = xp.linalg.qr(a, mode="r")
    return r[1] if isinstance(r, tuple) else r


def svd(a, xp, full_matrices: bool = False):
    """``xp.linalg.svd(a)`` (stacked or not), falling back to LAPACK's ``gesvd`` on numpy.

    numpy's SVD is LAPACK's divide-and-conquer ``gesdd``, which now and then
    reports "SVD did not converge" on an ordinary finite matrix (seen on the
    64 x 64 Procrustes cross-product of a 4-model comparison whose factors
    differed from a working run by rounding only).  The QR-iteration driver
    ``gesvd`` (scipy) computes the same decomposition and does not share
    that failure; it is tried, matrix by matrix, only where ``gesdd`` failed.
    Non-finite input still raises.
    """
    try:
        return xp.linalg.svd(a, full_matrices=full_matrices)
    except np.linalg.LinAlgError:
        if xp is not np or not np.all(np.isfinite(a)):
            raise
    import scipy.linalg

    def one(m):
        return scipy.linalg.svd(
            m, full_matrices=full_matrices, lapack_driver="gesvd", check_finite=False
        )

    if a.ndim == 2:
        return one(a)
    flat = a.reshape(-1, *a.shape[-2:])
    parts = [one(m) for m in flat]
    return tuple(
        np.stack([part[i] for part in parts]).reshape(*a.shape[:-2], *parts[0][i].shape)
        for i in range(3)
    )
