"""The GPU check's device side: what stands for the GPU, arrays and kernels timed on it
directly (the floors: the host-to-device copy, the Gram and distance GEMMs), its
description and its cluster."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from fredask.backend import ArrayBackend
from fredask.bench.measure import Timing, timed
from fredask.cluster.local import local_client


@dataclass(frozen=True)
class DeviceSide:
    """What stands for the GPU.

    Attributes
    ----------
    label : str
    device : str or ArrayBackend
        fredask's ``device=``.
    kernels : {"cupy", "torch"}
        The module the floors time directly.
    generator : {"cupy", "numpy"}
        Where the synthetic data is drawn (then held in host memory).
    extraction : {"cuda", "cpu"}
        The presets' ``device=``.
    """

    label: str
    device: str | ArrayBackend
    kernels: str
    generator: str
    extraction: str


GPU = DeviceSide("GPU (CuPy)", "gpu", "cupy", "cupy", "cuda")


STAND_IN = DeviceSide(
    "torch CPU tensors, ArrayBackend('torch') (dry-run stand-in for the GPU)",
    ArrayBackend("torch"),
    "torch",
    "numpy",
    "cpu",
)


def device_random(name: str, shape: tuple[int, int], dtype):
    """A standard-normal matrix made on the device of ``name`` (``cupy`` or ``torch``)."""
    if name == "cupy":
        import cupy

        return cupy.random.standard_normal(shape, dtype=np.float32).astype(dtype)
    import torch

    return torch.randn(*shape, dtype=getattr(torch, np.dtype(dtype).name))


def device_array(name: str, block: np.ndarray):
    """A copy of a host block on the device of ``name``."""
    if name == "cupy":
        import cupy

        return cupy.asarray(block)
    import torch

    return torch.tensor(block)


def synchronize(name: str) -> None:
    """Wait for the device's queued work (nothing to wait for on the CPU)."""
    if name == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()


def free_device(name: str) -> None:
    """Hand CuPy's cached device and pinned memory back (between steps)."""
    if name == "cupy":
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


@contextlib.contextmanager
def tf32_matmul(name: str):
    """float32 products in TF32 inside (CuPy's compute type); yields whether it applies."""
    if name != "cupy":
        yield False
        return
    import cupy
    from cupy._core import _routines_linalg as linalg

    old = cupy._core.get_compute_type(np.float32)
    cupy._core.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32)
    try:
        yield True
    finally:
        cupy._core.set_compute_type(np.float32, old)


def _best(call: Callable[[], object], name: str, repeats: int) -> float:
    call()
    synchronize(name)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        synchronize(name)
        best = min(best, time.perf_counter() - start)
    return best


def gram_seconds(
    name: str, rows: int, width: int, dtype=np.float64, tf32: bool = False, repeats: int = 3
) -> dict:
    """Best time of the Gram ``a.T @ a`` of a ``rows x width`` block held on the device.

    Returns
    -------
    dict
        ``seconds``, ``tflops`` (``2 rows width^2`` flops) and ``tf32``
        (whether TF32 applied).
    """
    a = device_random(name, (rows, width), dtype)
    with tf32_matmul(name) if tf32 else contextlib.nullcontext(False) as applied:
        seconds = _best(lambda: a.T @ a, name, repeats)
    return {
        "seconds": seconds,
        "tflops": 2.0 * rows * width**2 / seconds / 1e12,
        "tf32": bool(applied),
    }


def distance_seconds(
    name: str, n_test: int, rows: int, width: int, step: int, repeats: int = 3
) -> dict:
    """Best times of ``test @ block.T`` (float64, held on the device), whole and in slices."""
    test = device_random(name, (n_test, width), np.float64)
    block = device_random(name, (rows, width), np.float64)

    def sliced():
        for lo in range(0, rows, step):
            test @ block[lo : lo + step].T

    whole = _best(lambda: test @ block.T, name, repeats)
    slices = _best(sliced, name, repeats)
    flops = 2.0 * n_test * rows * width
    return {"whole_s": whole, "sliced_s": slices, "tflops": flops / min(whole, slices) / 1e12}


def copy_to_device(name: str, *blocks: np.ndarray) -> int:
    """Copy host blocks to the device and wait for the copies; their bytes."""
    copies = [device_array(name, block) for block in blocks]
    synchronize(name)
    del copies
    return int(sum(block.nbytes for block in blocks))


def device_info(name: str) -> dict:
    """The device the worker computes on: name, memory and library versions."""
    if name == "cupy":
        import cupy

        device = cupy.cuda.Device()
        props = cupy.cuda.runtime.getDeviceProperties(device.id)
        free, total = cupy.cuda.runtime.memGetInfo()
        gpu_name = props["name"]
        return {
            "name": gpu_name.decode() if isinstance(gpu_name, bytes) else str(gpu_name),
            "memory_bytes": int(total),
            "free_bytes": int(free),
            "compute_capability": f"{props['major']}.{props['minor']}",
            "cupy": cupy.__version__,
            "cuda_runtime": int(cupy.cuda.runtime.runtimeGetVersion()),
        }
    import psutil
    import torch

    memory = psutil.virtual_memory()
    return {
        "name": f"CPU (torch {torch.__version__} stand-in)",
        "memory_bytes": int(memory.total),
        "free_bytes": int(memory.available),
    }


def transfer_floor(client, arrays: list[da.Array], name: str, repeats: int = 1) -> Timing:
    """Read every chunk of ``arrays`` once and copy it to the device, as Dask tasks on ``client``.

    One task per row chunk copies that chunk of every array
    (:func:`copy_to_device`); the value is the bytes copied.
    """
    chunks = list(zip(*(a.to_delayed().ravel() for a in arrays), strict=True))
    kernel = dask.delayed(copy_to_device, pure=False)

    def copy(parts) -> int:
        return int(sum(client.compute([kernel(name, *p) for p in parts], sync=True)))

    copy(chunks[:2])
    return timed(client, lambda: copy(chunks), repeats)


def device_cluster(side: DeviceSide, local_directory: str) -> tuple[object, str]:
    """The device side's client and its description.

    On a GPU: dask-cuda's ``LocalCUDACluster`` (one worker per GPU) where it
    imports, else a ``LocalCluster`` of one single-threaded worker; the dry
    run: a ``LocalCluster`` of one worker.
    """
    if side.kernels == "cupy":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError as error:
            note = f"dask_cuda not importable ({error}): "
        else:
            client = local_client(
                cluster_class=LocalCUDACluster,
                dashboard_address=":0",
                local_directory=local_directory,
            )
            workers = len(client.scheduler_info()["workers"])
            return client, f"LocalCUDACluster ({workers} worker(s), one per GPU)"
    else:
        note = ""
    client = local_client(1, local_directory=local_directory)
    return client, note + "LocalCluster(n_workers=1, threads_per_worker=1, processes=True)"
