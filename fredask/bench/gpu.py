"""The GPU check: fredask's device path against the GPU's floor and the CPU, in one report.

``benchmarks/gpu.py`` is its command.  Four steps, each on synthetic data drawn
on the device side's workers and held in their (host) memory, no store:

* ``gfre``: the all-pairs GFRE matrix of 10 models x 256 float32 features
  (:func:`fredask.compare.reconstruction_matrix`, ``method="qr"`` and
  ``"gram"``, ``device="gpu"``) over as many atoms as fit (at least 4 x 10^6),
  against the floor (read and host-to-device copy of the data once, plus the
  Gram GEMM of the concatenated columns at the GPU's float64 and TF32 rates,
  timed on CuPy directly) and against the same call with ``device="cpu"`` on
  a ``LocalCluster`` of the machine's cores (on the first rows only when the
  whole would take too long, extrapolated linearly);
* ``lfre``: the LFRE of ``m1`` from ``m0`` (1000 test rows, 10^7 train rows,
  k = 256), its neighbour search against the GEMM floor ``test @ train.T``;
* ``cumulants``: order-8 structure cumulants of 10^6 structures
  (:func:`fredask.structure.cumulants.structure_cumulants`) against the
  transfer floor;
* ``extraction``: atoms per second of CHGNet and SevenNet with
  ``device="cuda"`` against ``device="cpu"`` (skipped, with the reason, where
  the preset takes no ``device=`` or torch sees no CUDA).

Every number of the device side is compared with the CPU path on the same
rows (:func:`max_relative`; float64 target 1e-10).  Each step is wrapped: a
failure records its error type and message and the next step runs; the
report (``gpu.md``, ``gpu.json``) is rewritten after every step, so a run
killed at its time limit still leaves one.  ``dry_run`` runs the same steps at
a tiny size on the CPU, with torch CPU tensors
(``fredask.backend.ArrayBackend("torch")``) standing in for the GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import dask
import dask.array as da
import numpy as np

from fredask.backend import ArrayBackend, gpu_available, to_host
from fredask.bench.data import LATENT_DIM, NOISE, _chunk, _maps
from fredask.bench.driver import log
from fredask.bench.measure import Timing, load_average, machine, timed, versions
from fredask.bench.report import benchmark_page, fmt, write_results
from fredask.bench.stages import lfre_rows
from fredask.cluster.local import close_client, local_client

NAME = "gpu"
STEPS = ("gfre", "lfre", "cumulants", "extraction")
METHODS = ("qr", "gram")
#: Float64 agreement target of the device path with the CPU path (relative).
TARGET = 1e-10
#: Extraction runs float32 models: the agreement target is float32 rounding.
EXTRACTION_TARGET = 1e-4
#: Shares of the GPU's and of the host's memory the GFRE features may take
#: (the device worker holds them in host memory; the pass streams them).
DEVICE_SHARE, HOST_SHARE = 0.5, 0.35
GB = 1e9


class Skipped(Exception):
    """A step or part of one that cannot run here; the message says why."""


@dataclass(frozen=True)
class CheckSizes:
    """What each step runs on.

    Attributes
    ----------
    n_atoms : int or None
        GFRE rows; None: the most whose features fit in ``DEVICE_SHARE`` of
        the GPU memory and ``HOST_SHARE`` of the host's, at least ``min_atoms``.
    min_atoms : int
        Smallest GFRE size when sized from memory.
    n_models, n_features : int
        GFRE models and float32 features per model.
    chunk_rows : int
        Rows per chunk on the device side.
    cpu_chunk_rows : int
        Most rows per chunk on the CPU side (fewer so every worker gets one).
    cpu_rows : int
        GFRE rows of the CPU run (extrapolated to ``n_atoms`` when fewer).
    lfre_train, lfre_test, lfre_features : int
        LFRE train and test rows and features of both models (k = features).
    lfre_cpu_train : int
        Train rows of the CPU run (its first rows; extrapolated when fewer).
    lfre_check : int
        Test rows of the CPU run whose errors the device recomputes (each test
        row's error depends on the train rows only, so a few rows suffice).
    n_structures : int
        Structures of the cumulant step.
    structure_atoms : tuple of int
        Fewest and most atoms per structure (uniform).
    cumulant_features, cumulant_order : int
    cpu_structures : int
        Structures of the CPU cumulant run (the first; extrapolated by atoms).
    check_structures : int
        Structures whose cumulants are compared element by element.
    extraction_structures : int
        Shipped structures (G2, S22, dcdft, evenly spaced) the models extract.
    models : tuple of str
        Extraction presets.
    """

    n_atoms: int | None = None
    min_atoms: int = 4_000_000
    n_models: int = 10
    n_features: int = 256
    chunk_rows: int = 2**17
    cpu_chunk_rows: int = 2**15
    cpu_rows: int = 2**18
    lfre_train: int = 10**7
    lfre_test: int = 1000
    lfre_features: int = 256
    lfre_cpu_train: int = 10**6
    lfre_check: int = 100
    n_structures: int = 10**6
    structure_atoms: tuple[int, int] = (8, 64)
    cumulant_features: int = 128
    cumulant_order: int = 8
    cpu_structures: int = 10**5
    check_structures: int = 20_000
    extraction_structures: int = 160
    models: tuple[str, ...] = ("chgnet:0.3.0", "sevenn:7net-0")


#: The GPU check's sizes.
FULL = CheckSizes()
#: The dry run's: the same steps, tiny, every CPU run sampled (the extrapolation runs too).
DRY = CheckSizes(
    n_atoms=8192,
    min_atoms=0,
    n_models=3,
    n_features=8,
    chunk_rows=1024,
    cpu_chunk_rows=1024,
    cpu_rows=4096,
    lfre_train=8000,
    lfre_test=50,
    lfre_features=8,
    lfre_cpu_train=4000,
    lfre_check=20,
    n_structures=300,
    cumulant_features=8,
    cpu_structures=150,
    check_structures=100,
    extraction_structures=2,
)


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


# ------------------------------------------------------------------ the device side


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


# ------------------------------------------------------------------------- data


def generate_chunk(
    generator: str, seed: int, index: int, rows: int, n_models: int, n_features: int
) -> tuple[np.ndarray, ...]:
    """Chunk ``index`` of every model of the synthetic zoo, as host float32 arrays.

    ``tanh(L A_m + noise_m)`` with the shared 32-dim latent ``L``
    (:mod:`fredask.bench.data`: the maps, noise and hidden latent directions of
    the benchmarks' stores).  ``generator="numpy"`` is that module's chunk
    exactly; ``"cupy"`` draws the same distribution on the GPU (other random
    numbers) and copies it to the host (numpy on one core: 1.5 s per 16000 rows
    of 10 x 256 features, minutes for the GFRE data).
    """
    maps = _maps(n_models, n_features, seed)
    if generator == "numpy":
        return tuple(_chunk(seed, index, rows, maps))
    import cupy

    state = cupy.random.RandomState(seed * 1_000_003 + index)
    latent = state.standard_normal((rows, LATENT_DIM), dtype=np.float32)
    out = []
    for m, a in enumerate(maps):
        z = latent @ cupy.asarray(a)
        z += np.float32(NOISE[m % len(NOISE)]) * state.standard_normal(z.shape, dtype=np.float32)
        out.append(cupy.asnumpy(cupy.tanh(z, out=z)))
    return tuple(out)


def generated_features(
    client,
    n_rows: int,
    n_models: int,
    n_features: int,
    chunk_rows: int,
    seed: int,
    generator: str,
) -> dict[str, da.Array]:
    """``m0, m1, ..`` of ``n_rows`` rows, drawn on ``client``'s workers and persisted there."""
    names = [f"m{m}" for m in range(n_models)]
    parts: dict[str, list] = {name: [] for name in names}
    make = dask.delayed(generate_chunk, pure=True, nout=n_models)
    for index, start in enumerate(range(0, n_rows, chunk_rows)):
        rows = min(chunk_rows, n_rows - start)
        blocks = make(generator, seed, index, rows, n_models, n_features)
        for name, block in zip(names, blocks, strict=True):
            parts[name].append(da.from_delayed(block, (rows, n_features), dtype=np.float32))
    arrays = client.persist([da.concatenate(parts[name]) for name in names])
    wait_on(arrays)
    return dict(zip(names, arrays, strict=True))


def wait_on(collections) -> None:
    """Wait until the futures of persisted ``collections`` are done (a failed one raises).

    ``distributed.wait`` needs a default client, which this run's are not.
    """
    from distributed import futures_of

    futures = futures_of(collections)
    while True:
        status = [future.status for future in futures]
        if all(s == "finished" for s in status):
            return
        for future, s in zip(futures, status, strict=True):
            if s in ("error", "cancelled", "lost"):
                future.result()  # raises the task's error
                raise RuntimeError(f"a task of the synthetic data ended {s}")
        time.sleep(0.02)


def moved_rows(arrays: dict[str, da.Array], stop: int, source, target, chunk_rows: int) -> dict:
    """The first ``stop`` rows of ``arrays`` (on ``source``'s workers) scattered to ``target``'s.

    Gathered through this process one model at a time and scattered in
    ``chunk_rows``-row chunks (spread over ``target``'s workers).
    """
    out = {}
    for name, array in arrays.items():
        values = to_host(source.compute(array[:stop], sync=True))
        blocks = [values[lo : lo + chunk_rows] for lo in range(0, stop, chunk_rows)]
        futures = target.scatter(blocks, hash=False)
        out[name] = da.concatenate(
            [
                da.from_delayed(f, b.shape, dtype=b.dtype, meta=b[:0])
                for f, b in zip(futures, blocks, strict=True)
            ]
        )
    return out


def release(client, arrays, kernels: str | None = None) -> None:
    """Drop the persisted ``arrays`` from ``client``'s workers (and CuPy's cached memory)."""
    with contextlib.suppress(Exception):
        client.cancel(list(arrays))
        if kernels is not None:
            client.run(free_device, kernels)


def warm_up_worker(device) -> None:
    """fredask's three kernels once on tiny data in this process (imports, JIT, handles).

    Run on every worker (``client.run``) before anything is timed: a warm-up
    through the cluster on the first chunks reaches only the workers that
    compute them (two of 16).
    """
    from fredask.compare import reconstruction_matrix
    from fredask.metrics import pointwise_local_reconstruction_error
    from fredask.structure.cumulants import structure_cumulants

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 4)), rng.standard_normal((64, 3))
    for method in METHODS:
        reconstruction_matrix(
            {"x": x, "y": y}, "gfre", method=method, device=device, client="sync", progress=False
        )
    test = np.arange(0, 64, 8)
    pointwise_local_reconstruction_error(
        x, y, 4, test_idx=test, train_idx=np.setdiff1d(np.arange(64), test), client="sync",
        device=device,
    )  # fmt: skip
    structure_cumulants(x, [30, 34], order=8, device=device)


def sized_atoms(
    bytes_per_atom: int, device_bytes: int, host_bytes: int, chunk_rows: int, minimum: int
) -> int:
    """The most atoms whose features fit the memory shares, whole chunks, at least ``minimum``."""
    fit = int(min(DEVICE_SHARE * device_bytes, HOST_SHARE * host_bytes) // bytes_per_atom)
    return max(int(minimum), fit - fit % chunk_rows)


def cpu_chunk_rows(n_rows: int, workers: int, largest: int) -> int:
    """Rows per CPU chunk: at most ``largest``, fewer so every worker gets a chunk."""
    smallest = min(1024, largest)
    return int(min(largest, max(smallest, -(-n_rows // max(1, workers)))))


# ------------------------------------------------------------------- comparisons


def max_relative(got, want) -> float:
    """``max |got - want| / |want|`` elementwise (``want`` zero: the absolute difference)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise ValueError(f"shapes differ: {got.shape} and {want.shape}")
    scale = np.where(want != 0, np.abs(want), 1.0)
    return float(np.max(np.abs(got - want) / scale)) if got.size else float("nan")


def column_relative(got, want) -> float:
    """``max |got - want|`` over each column's largest ``|want|`` (cumulants' columns differ
    by orders of magnitude)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = np.abs(want).max(axis=0)
    return float(np.max(np.abs(got - want) / np.where(scale > 0, scale, 1.0)))


def block_sum(block) -> float:
    """The sum of a numpy, CuPy or torch block, as a Python float (on its device)."""
    return float(block.sum())


def computed_sum(client, array: da.Array) -> float:
    """Every block of ``array`` computed on ``client`` and reduced to one number."""
    parts = [dask.delayed(block_sum, pure=False)(b) for b in array.to_delayed().ravel()]
    return float(sum(client.compute(parts, sync=True)))


def host_rows(client, array: da.Array, stop: int) -> np.ndarray:
    """The first ``stop`` rows of ``array`` as numpy, whatever its blocks' module."""
    head = array[:stop]
    meta = np.empty((0,) * head.ndim, dtype=head.dtype)
    return np.asarray(client.compute(head.map_blocks(to_host, meta=meta), sync=True))


# ----------------------------------------------------------------------- the run


@dataclass
class CheckRun:
    """The clusters and settings the steps share.

    Attributes
    ----------
    sizes : CheckSizes
    side : DeviceSide
    device : distributed.Client
        The device side's cluster (dask-cuda's ``LocalCUDACluster``, or a
        ``LocalCluster`` of one worker).
    cpu : distributed.Client
        A ``LocalCluster`` of single-threaded workers on the CPU cores.
    cpu_workers : int
    info : dict
        :func:`device_info` of the device side's first worker.
    seed : int
    started : float
        ``time.perf_counter()`` at the start of the run.
    """

    sizes: CheckSizes
    side: DeviceSide
    device: object
    cpu: object
    cpu_workers: int
    info: dict
    seed: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def device_workers(self) -> int:
        return max(1, len(self.device.scheduler_info()["workers"]))

    def progress(self, message: str) -> None:
        """A progress line with the time and the seconds since the start."""
        progress(message, self.started)

    def device_call(self, function: Callable, *args, **kwargs):
        """``function(*args, **kwargs)`` on the first device worker (its GPU)."""
        worker = sorted(self.device.scheduler_info()["workers"])[0]
        return self.device.submit(function, *args, **kwargs, workers=[worker], pure=False).result()


def progress(message: str, started: float) -> None:
    """``HH:MM:SS [+seconds] message`` on stderr."""
    log(f"{time.strftime('%H:%M:%S')} [+{time.perf_counter() - started:6.1f} s] {message}")


def _estimate(seconds: float, done: int, total: int) -> dict:
    """The CPU time for ``total`` rows from ``done`` (:func:`fredask.bench.paper.extrapolate`)."""
    from fredask.bench.paper import extrapolate

    return extrapolate(seconds, int(done), int(total))


@contextlib.contextmanager
def part(run: CheckRun, record: dict, name: str):
    """A part of a step whose failure is recorded under ``record["errors"][name]``; the step
    goes on with its other parts (they check what they need)."""
    try:
        yield
    except Exception as error:
        record.setdefault("errors", {})[name] = error_record(error)
        run.progress(f"{name} failed: {type(error).__name__}: {str(error)[:500]}")


# ------------------------------------------------------------------------ GFRE


def gfre_matrix(features: dict, method: str, device, client):
    """The all-pairs GFRE matrix (``reconstruction_matrix``) as a numpy array."""
    from fredask.compare import reconstruction_matrix

    result = reconstruction_matrix(
        features, "gfre", method=method, device=device, client=client, progress=False
    )
    return result.matrix.to_numpy()


def _off_diagonal(matrix: np.ndarray) -> np.ndarray:
    return matrix[~np.eye(len(matrix), dtype=bool)]


def matrix_agreement(got: np.ndarray, want: np.ndarray) -> dict:
    """Off-diagonal relative and diagonal absolute differences of two GFRE matrices."""
    return {
        "max_relative": max_relative(_off_diagonal(got), _off_diagonal(want)),
        "diagonal_max_abs": float(np.max(np.abs(np.diag(got) - np.diag(want)))),
    }


def gram_floor(run: CheckRun, arrays: list[da.Array], n_rows: int) -> dict:
    """The GFRE floor: the transfer pass plus the Gram GEMM over all rows, float64 and TF32."""
    side, rows = run.side, min(run.sizes.chunk_rows, n_rows)
    width = sum(a.shape[1] for a in arrays)
    transfer = transfer_floor(run.device, arrays, side.kernels)
    floor = {"transfer_s": transfer.seconds, "transfer_bytes": transfer.value}
    blocks = n_rows / rows / run.device_workers
    for kind, dtype, tf32 in (("float64", np.float64, False), ("tf32", np.float32, True)):
        gram = run.device_call(gram_seconds, side.kernels, rows, width, dtype, tf32)
        floor[f"gram_{kind}"] = gram | {"pass_s": gram["seconds"] * blocks}
        floor[f"floor_{kind}_s"] = transfer.seconds + gram["seconds"] * blocks
    return floor


def gfre_step(run: CheckRun, record: dict) -> None:
    """(a) The all-pairs GFRE matrix on the device, its floor, the CPU run, their agreement."""
    sizes, side = run.sizes, run.side
    width = sizes.n_models * sizes.n_features
    n = sizes.n_atoms
    if n is None:
        import psutil

        host = psutil.virtual_memory().total
        n = sized_atoms(
            4 * width, run.info["memory_bytes"], host, sizes.chunk_rows, sizes.min_atoms
        )
    record.update(
        n_atoms=n,
        sized_from_memory=sizes.n_atoms is None,
        n_models=sizes.n_models,
        n_features=sizes.n_features,
        chunk_rows=sizes.chunk_rows,
        features_bytes=4 * width * n,
    )
    run.progress(
        f"gfre: drawing {n:,} atoms x {sizes.n_models} models x {sizes.n_features} features "
        f"({_bytes(4 * width * n)}) on the device workers"
    )
    start = time.perf_counter()
    data = generated_features(
        run.device, n, sizes.n_models, sizes.n_features, sizes.chunk_rows, run.seed, side.generator
    )
    record["generate_s"] = time.perf_counter() - start
    record["names"] = list(data)
    matrices, cpu_matrices = {}, {}
    try:
        warm = {name: a[: 2 * sizes.chunk_rows] for name, a in list(data.items())[:2]}
        for method in METHODS:
            gfre_matrix(warm, method, side.device, run.device)
        with part(run, record, "gfre floor"):
            run.progress("gfre: floor (read + host-to-device copy once, Gram GEMM rates)")
            floor = record["floor"] = gram_floor(run, list(data.values()), n)
            run.progress(
                f"gfre: floor {floor['floor_float64_s']:.2f} s (transfer "
                f"{floor['transfer_s']:.2f} s, float64 Gram {floor['gram_float64']['tflops']:.1f} "
                f"TFLOP/s, TF32 {floor['gram_tf32']['tflops']:.1f} TFLOP/s)"
            )
        record["device"] = {}
        for method in METHODS:
            with part(run, record, f"gfre device {method}"):
                timing = timed(
                    run.device, lambda m=method: gfre_matrix(data, m, side.device, run.device)
                )
                matrices[method] = timing.value
                record["device"][method] = timing.to_dict() | {"matrix": timing.value.tolist()}
                run.progress(f"gfre: device {method}: {timing.seconds:.2f} s")
        if "qr" in matrices:
            off = _off_diagonal(matrices["qr"])
            record["gfre_range"] = [float(off.min()), float(off.max())]

        n_cpu = min(n, sizes.cpu_rows)
        chunk = cpu_chunk_rows(n_cpu, run.cpu_workers, sizes.cpu_chunk_rows)
        record["cpu"] = {"chunk_rows": chunk, "rows": n_cpu}
        with part(run, record, "gfre cpu"):
            run.progress(f"gfre: {n_cpu:,} rows to the CPU cluster (chunks of {chunk:,})")
            sample = moved_rows(data, n_cpu, run.device, run.cpu, chunk)
            try:
                warm = {name: a[: 2 * chunk] for name, a in list(sample.items())[:2]}
                for method in METHODS:
                    gfre_matrix(warm, method, "cpu", run.cpu)
                for method in METHODS:
                    timing = timed(run.cpu, lambda m=method: gfre_matrix(sample, m, "cpu", run.cpu))
                    cpu_matrices[method] = timing.value
                    record["cpu"][method] = timing.to_dict() | {
                        "estimate": _estimate(timing.seconds, n_cpu, n)
                    }
                    run.progress(f"gfre: CPU {method} on {n_cpu:,} rows: {timing.seconds:.2f} s")
            finally:
                release(run.cpu, sample.values())
        record["agreement"] = {"rows": n_cpu}
        for method in METHODS:
            if method not in cpu_matrices:
                continue
            with part(run, record, f"gfre agreement {method}"):
                if n_cpu < n or method not in matrices:
                    head = {name: a[:n_cpu] for name, a in data.items()}
                    got = gfre_matrix(head, method, side.device, run.device)
                else:
                    got = matrices[method]
                record["agreement"][method] = matrix_agreement(got, cpu_matrices[method])
    finally:
        release(run.device, data.values(), side.kernels)
    if not matrices:
        record["status"] = "failed"


# ------------------------------------------------------------------------ LFRE


def lfre_errors(x, y, k: int, test_idx, train_idx, device, client, phases: dict) -> np.ndarray:
    """Pointwise LFRE of ``y`` from ``x`` (float64-exact fits), the pass times into ``phases``."""
    from fredask.metrics import pointwise_local_reconstruction_error
    from fredask.solvers.settings import RidgeSettings

    phases.clear()

    def hook(name: str, seconds: float, details: dict) -> None:
        phases[name] = phases.get(name, 0.0) + seconds

    return np.asarray(
        pointwise_local_reconstruction_error(
            x,
            y,
            k,
            test_idx=test_idx,
            train_idx=train_idx,
            estimator=RidgeSettings(precision="float64"),
            client=client,
            device=device,
            on_phase=hook,
        )
    )


def lfre_warm_up(x, y, k: int, n_test: int, chunk_rows: int, device, client) -> None:
    """A small LFRE on the first two chunks (imports, first calls), untimed."""
    head = min(x.shape[0], 2 * chunk_rows)
    test_idx, train_idx = lfre_rows(head, min(n_test, head // 10))
    lfre_errors(x[:head], y[:head], min(k, train_idx.size), test_idx, train_idx, device, client, {})


#: The LFRE passes linear in the train rows (the CPU run's extrapolation scales them).
LINEAR_PHASES = ("statistics and test rows", "neighbour search")


def lfre_floor(run: CheckRun, x: da.Array, n_test: int, n_train: int) -> dict:
    """The neighbour search's floor: the source rows to the device once + ``test @ train.T``."""
    from fredask.measures.neighbours import BLOCK_ROWS

    side, rows = run.side, min(run.sizes.chunk_rows, x.shape[0])
    transfer = transfer_floor(run.device, [x], side.kernels)
    gemm = run.device_call(distance_seconds, side.kernels, n_test, rows, x.shape[1], BLOCK_ROWS)
    blocks = n_train / rows / run.device_workers
    floor = {
        "transfer_s": transfer.seconds,
        "transfer_bytes": transfer.value,
        "distances": gemm,
        "gemm_s": gemm["whole_s"] * blocks,
        "gemm_sliced_s": gemm["sliced_s"] * blocks,
    }
    floor["floor_s"] = transfer.seconds + min(floor["gemm_s"], floor["gemm_sliced_s"])
    return floor


def lfre_step(run: CheckRun, record: dict) -> None:
    """(b) LFRE on the device, its neighbour search against the GEMM floor, the CPU run."""
    sizes, side = run.sizes, run.side
    n_rows, k = sizes.lfre_train + sizes.lfre_test, sizes.lfre_features
    test_idx, train_idx = lfre_rows(n_rows, sizes.lfre_test)
    record.update(
        n_train=int(train_idx.size), n_test=int(test_idx.size), n_features=k, k=k,
        chunk_rows=sizes.chunk_rows,
    )  # fmt: skip
    run.progress(f"lfre: drawing {n_rows:,} rows x 2 models x {k} features")
    start = time.perf_counter()
    data = generated_features(
        run.device, n_rows, 2, k, sizes.chunk_rows, run.seed + 1, side.generator
    )
    record["generate_s"] = time.perf_counter() - start
    x, y = data["m0"], data["m1"]
    errors = cpu_errors = None
    try:
        lfre_warm_up(x, y, k, sizes.lfre_test, sizes.chunk_rows, side.device, run.device)
        with part(run, record, "lfre device"):
            phases: dict = {}
            timing = timed(
                run.device,
                lambda: lfre_errors(x, y, k, test_idx, train_idx, side.device, run.device, phases),
            )
            errors = timing.value
            record["device"] = timing.to_dict() | {
                "phases_s": dict(phases),
                "lfre": float(np.sqrt(np.mean(errors**2))),
            }
            run.progress(f"lfre: device {timing.seconds:.2f} s, phases {_phases_text(phases)}")
        with part(run, record, "lfre floor"):
            run.progress("lfre: floor (source rows to the device once, test @ train.T)")
            record["floor"] = lfre_floor(run, x, test_idx.size, train_idx.size)

        n_sub = min(n_rows, sizes.lfre_cpu_train + sizes.lfre_test)
        sub_test, sub_train = lfre_rows(n_sub, sizes.lfre_test)
        chunk = cpu_chunk_rows(n_sub, run.cpu_workers, sizes.cpu_chunk_rows)
        with part(run, record, "lfre cpu"):
            run.progress(f"lfre: {n_sub:,} rows to the CPU cluster (chunks of {chunk:,})")
            sample = moved_rows(data, n_sub, run.device, run.cpu, chunk)
            try:
                cx, cy = sample["m0"], sample["m1"]
                lfre_warm_up(cx, cy, k, sizes.lfre_test, chunk, "cpu", run.cpu)
                cpu_phases: dict = {}
                cpu = timed(
                    run.cpu,
                    lambda: lfre_errors(cx, cy, k, sub_test, sub_train, "cpu", run.cpu, cpu_phases),
                )
            finally:
                release(run.cpu, sample.values())
            cpu_errors = cpu.value
            scale = train_idx.size / sub_train.size
            linear = sum(cpu_phases.get(p, 0.0) for p in LINEAR_PHASES)
            record["cpu"] = cpu.to_dict() | {
                "chunk_rows": chunk,
                "phases_s": dict(cpu_phases),
                "n_train": int(sub_train.size),
                "extrapolated": bool(sub_train.size < train_idx.size),
                "seconds_estimate": cpu.seconds + linear * (scale - 1),
                "search_estimate_s": cpu_phases.get("neighbour search", 0.0) * scale,
            }
            run.progress(f"lfre: CPU on {sub_train.size:,} train rows: {cpu.seconds:.2f} s")
        if cpu_errors is not None:
            with part(run, record, "lfre agreement"):
                if sub_train.size < train_idx.size or errors is None:
                    n_check = min(sizes.lfre_check, sub_test.size)
                    got = lfre_errors(
                        x[:n_sub], y[:n_sub], k, sub_test[:n_check], sub_train,
                        side.device, run.device, {},
                    )  # fmt: skip
                    want = cpu_errors[:n_check]  # test rows in order: the first n_check
                else:
                    got, want = errors, cpu_errors
                record["agreement"] = {
                    "n_train": int(sub_train.size),
                    "n_test": int(got.size),
                    "pointwise_max_relative": max_relative(got, want),
                }
    finally:
        release(run.device, data.values(), side.kernels)
    if errors is None:
        record["status"] = "failed"


def _phases_text(phases: dict) -> str:
    return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())


# ------------------------------------------------------------------- cumulants


def cumulants_of(features, n_atoms, order: int, device):
    """``structure_cumulants`` (lazy: a Dask array for Dask input)."""
    from fredask.structure.cumulants import structure_cumulants

    return structure_cumulants(features, n_atoms, order=order, device=device)


def structure_sizes(n_structures: int, atoms: tuple[int, int], seed: int) -> np.ndarray:
    """Atoms of each structure, uniform in ``atoms``."""
    return np.random.default_rng(seed).integers(atoms[0], atoms[1] + 1, size=n_structures)


def _rows_of(sizes: np.ndarray, n_structures: int) -> int:
    return int(sizes[:n_structures].sum())


def _structures_within(sizes: np.ndarray, rows: int) -> int:
    return max(1, int(np.searchsorted(np.cumsum(sizes), rows, side="right")))


def cumulant_sum(client, features: da.Array, n_atoms: np.ndarray, order: int, device) -> float:
    """Every structure's cumulants computed on ``client``, reduced to one number there."""
    return computed_sum(client, cumulants_of(features, n_atoms, order, device))


def cumulants_step(run: CheckRun, record: dict) -> None:
    """(c) Order-8 structure cumulants on the device, the transfer floor, the CPU run."""
    sizes, side = run.sizes, run.side
    n_atoms = structure_sizes(sizes.n_structures, sizes.structure_atoms, run.seed)
    n_rows, d, order = int(n_atoms.sum()), sizes.cumulant_features, sizes.cumulant_order
    record.update(
        n_structures=int(n_atoms.size), n_atoms=n_rows, n_features=d, order=order,
        structure_atoms=list(sizes.structure_atoms), chunk_rows=sizes.chunk_rows,
    )  # fmt: skip
    run.progress(f"cumulants: drawing {n_atoms.size:,} structures, {n_rows:,} atoms x {d}")
    start = time.perf_counter()
    x = generated_features(
        run.device, n_rows, 1, d, sizes.chunk_rows, run.seed + 2, side.generator
    )["m0"]
    record["generate_s"] = time.perf_counter() - start
    s_cpu = min(n_atoms.size, sizes.cpu_structures)
    n_check = min(sizes.check_structures, s_cpu)
    check_rows = _rows_of(n_atoms, n_check)
    device_ok, want = False, None
    try:
        keep = _structures_within(n_atoms, 2 * sizes.chunk_rows)
        cumulant_sum(run.device, x[: _rows_of(n_atoms, keep)], n_atoms[:keep], order, side.device)
        with part(run, record, "cumulants device"):
            timing = timed(
                run.device, lambda: cumulant_sum(run.device, x, n_atoms, order, side.device)
            )
            record["device"] = timing.to_dict() | {"checksum": timing.value}
            device_ok = True
            run.progress(f"cumulants: device {timing.seconds:.2f} s")
        with part(run, record, "cumulants floor"):
            transfer = transfer_floor(run.device, [x], side.kernels)
            record["floor"] = {
                "transfer_s": transfer.seconds,
                "transfer_bytes": transfer.value,
                "floor_s": transfer.seconds,
            }

        rows_cpu = _rows_of(n_atoms, s_cpu)
        chunk = cpu_chunk_rows(rows_cpu, run.cpu_workers, sizes.cpu_chunk_rows)
        with part(run, record, "cumulants cpu"):
            run.progress(f"cumulants: {s_cpu:,} structures ({rows_cpu:,} atoms) to the CPU cluster")
            sample = moved_rows({"m0": x}, rows_cpu, run.device, run.cpu, chunk)["m0"]
            try:
                keep = _structures_within(n_atoms[:s_cpu], 2 * chunk)
                cumulant_sum(
                    run.cpu, sample[: _rows_of(n_atoms, keep)], n_atoms[:keep], order, "cpu"
                )
                cpu = timed(
                    run.cpu, lambda: cumulant_sum(run.cpu, sample, n_atoms[:s_cpu], order, "cpu")
                )
                want = host_rows(
                    run.cpu, cumulants_of(sample[:check_rows], n_atoms[:n_check], order, "cpu"),
                    n_check,
                )  # fmt: skip
            finally:
                release(run.cpu, [sample])
            record["cpu"] = cpu.to_dict() | {
                "chunk_rows": chunk,
                "structures": int(s_cpu),
                "checksum": cpu.value,
                "estimate": _estimate(cpu.seconds, rows_cpu, n_rows),
            }
            run.progress(f"cumulants: CPU on {s_cpu:,} structures: {cpu.seconds:.2f} s")
        if want is not None:
            with part(run, record, "cumulants agreement"):
                got = host_rows(
                    run.device,
                    cumulants_of(x[:check_rows], n_atoms[:n_check], order, side.device),
                    n_check,
                )
                record["agreement"] = {
                    "structures": int(n_check),
                    "max_relative_to_column_max": column_relative(got, want),
                    "max_relative": max_relative(got, want),
                }
    finally:
        release(run.device, [x], side.kernels)
    if not device_ok:
        record["status"] = "failed"


# ------------------------------------------------------------------ extraction


def extraction_structures(n: int) -> list:
    """``n`` shipped molecules and crystals (ASE's G2, S22, dcdft), evenly spaced."""
    from fredask.store.datasets import shipped_structures

    shipped = shipped_structures(subsets=("g2", "s22", "dcdft"))
    index = np.unique(np.linspace(0, len(shipped) - 1, min(n, len(shipped))).astype(int))
    return [shipped[i] for i in index]


def _extract(spec: str, device: str, structures: list) -> dict:
    from fredask.extract import get_extractor

    extractor = get_extractor(spec, device=device)
    start = time.perf_counter()
    extractor.load()
    load_s = time.perf_counter() - start
    covered = [a for a in structures if set(a.numbers) <= set(extractor.elements)]
    extractor.atom_features(covered[:1])  # first call: lazy initialisation
    start = time.perf_counter()
    features = extractor.atom_features(covered)
    seconds = time.perf_counter() - start
    atoms = int(sum(len(a) for a in covered))
    return {
        "device": device,
        "load_s": load_s,
        "seconds": seconds,
        "structures": len(covered),
        "atoms": atoms,
        "atoms_per_s": atoms / seconds,
        "features": np.concatenate(features),
    }


def extraction_model(spec: str, side: DeviceSide, structures: list) -> dict:
    """One preset on the device side and on the CPU: atoms per second and agreement."""
    from fredask.extract.presets import check_ready, preset_options

    accepted = preset_options(spec)
    if "device" not in accepted:
        raise Skipped(f"the {spec} preset takes no device= option (it takes {', '.join(accepted)})")
    if side.extraction == "cuda":
        try:
            import torch
        except ImportError as error:
            raise Skipped(f"torch is not installed: {error}") from None
        if not torch.cuda.is_available():
            raise Skipped(f"CUDA is not available to torch {torch.__version__}")
    from fredask.extract import ModelSpecError, get_extractor

    try:
        check_ready(get_extractor(spec, device="cpu"))
    except ModelSpecError as error:  # its package is not installed
        raise Skipped(str(error)) from None
    runs = {"device": _extract(spec, side.extraction, structures)}
    runs["cpu"] = _extract(spec, "cpu", structures)
    got, want = runs["device"].pop("features"), runs["cpu"].pop("features")
    scale = float(np.max(np.abs(want))) or 1.0
    return runs | {
        "status": "ok",
        "speedup": runs["cpu"]["seconds"] / runs["device"]["seconds"],
        "agreement": {"max_abs_over_max": float(np.max(np.abs(got - want))) / scale},
    }


def extraction_step(run: CheckRun, record: dict) -> None:
    """(d) Extraction atoms/s of each preset with ``device="cuda"`` and ``"cpu"``."""
    structures = extraction_structures(run.sizes.extraction_structures)
    record.update(structures=len(structures), atoms=int(sum(len(a) for a in structures)))
    record["models"] = {}
    for spec in run.sizes.models:
        run.progress(f"extraction: {spec}")
        try:
            record["models"][spec] = extraction_model(spec, run.side, structures)
        except Skipped as reason:
            record["models"][spec] = {"status": "skipped", "reason": str(reason)}
        except Exception as error:
            record["models"][spec] = {"status": "failed", "error": error_record(error)}
        entry = record["models"][spec]
        run.progress(f"extraction: {spec}: {entry.get('reason') or entry['status']}")
    statuses = {m["status"] for m in record["models"].values()}
    if statuses == {"skipped"}:
        reasons = "; ".join(f"{spec}: {m['reason']}" for spec, m in record["models"].items())
        raise Skipped(reasons)
    if statuses == {"failed"}:
        record["status"] = "failed"


STEP_FUNCTIONS: dict[str, Callable[[CheckRun, dict], None]] = {
    "gfre": gfre_step,
    "lfre": lfre_step,
    "cumulants": cumulants_step,
    "extraction": extraction_step,
}


def error_record(error: BaseException) -> dict:
    """Type, message and the end of the traceback of ``error``."""
    trace = "".join(traceback.format_exception(error))
    return {"type": type(error).__name__, "message": str(error), "traceback": trace[-4000:]}


def run_step(name: str, run: CheckRun, function: Callable | None = None) -> dict:
    """One step, its failure recorded (error type and message), never raised."""
    record: dict = {}
    run.progress(f"--- {name}")
    start = time.perf_counter()
    try:
        (function or STEP_FUNCTIONS[name])(run, record)
        record["status"] = record.get("status", "partial" if record.get("errors") else "ok")
    except Skipped as reason:
        record.update(status="skipped", reason=str(reason))
    except Exception as error:
        record.update(status="failed", error=error_record(error))
        run.progress(f"{name} failed: {type(error).__name__}: {error}")
    record["wall_s"] = time.perf_counter() - start
    run.progress(f"{name}: {record['status']} after {record['wall_s']:.1f} s")
    return record


# ---------------------------------------------------------------------- clusters


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


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def extra_versions() -> dict:
    """Versions of the device-side and model packages that are installed (not imported)."""
    out = {}
    for name in ("cupy-cuda12x", "cupy-cuda11x", "cupy", "dask-cuda", "torch", "numba",
                 "array-api-compat", "chgnet", "sevenn"):  # fmt: skip
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


# ------------------------------------------------------------------------ report


def _s(value, digits: int = 2, star: bool = False) -> str:
    text = fmt(value, digits)
    return text + ("*" if star and text != "—" else "")


def _ratio(a, b) -> float | None:
    try:
        return a / b if a is not None and b else None
    except TypeError:
        return None


def _sci(value) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.1e}"


def _bytes(n: float) -> str:
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 2**20:.1f} MiB"


def _rate(tflops: float) -> str:
    return f"{tflops:.1f} TFLOP/s" if tflops >= 0.1 else f"{tflops * 1e3:.1f} GFLOP/s"


def _error_text(error: dict) -> str:
    return f"{error['type']}: {' '.join(error['message'].split())[:300]}"


def _status_text(record: dict) -> str:
    status = record.get("status", "not run")
    if status in ("skipped", "interrupted"):
        return f"{status}: {record['reason']}"
    errors = [f"{name}: {_error_text(e)}" for name, e in record.get("errors", {}).items()]
    if "error" in record:
        errors.append(_error_text(record["error"]))
    return "; ".join([status, *errors]) if errors else status


def _get(record: dict, *keys, default=None):
    for key in keys:
        if not isinstance(record, dict) or key not in record:
            return default
        record = record[key]
    return record


def gfre_sections(r: dict) -> list:
    """The GFRE step's tables."""
    if "n_atoms" not in r:
        return []
    floor = r.get("floor", {})
    rows = []
    for method in METHODS:
        device = _get(r, "device", method, "seconds")
        estimate = _get(r, "cpu", method, "estimate", default={})
        cpu, star = estimate.get("seconds"), estimate.get("extrapolated", False)
        rows.append(
            [
                method,
                _s(device),
                _s(floor.get("floor_float64_s")),
                _s(floor.get("floor_tf32_s")),
                _s(_ratio(device, floor.get("floor_float64_s"))),
                _s(_ratio(device, floor.get("floor_tf32_s"))),
                _s(_get(r, "cpu", method, "seconds"), 1),
                _s(cpu, 1, star),
                _s(_ratio(cpu, device), 1, star),
                _sci(_get(r, "agreement", method, "max_relative")),
            ]
        )
    lo, hi = r.get("gfre_range", [None, None])
    sentence = (
        f"(a) All-pairs GFRE, {r['n_models']} models x {r['n_features']} float32 features, "
        f"{r['n_atoms']:,} atoms ({_bytes(r['features_bytes'])}"
        + (", sized from the memory" if r.get("sized_from_memory") else "")
        + f"), chunks of {r['chunk_rows']:,} rows, drawn in {_s(r.get('generate_s'), 1)} s; "
        f"off-diagonal GFRE {_s(lo)} .. {_s(hi)}. CPU timed on the first "
        f"{_get(r, 'cpu', 'rows', default=0):,} rows in chunks of "
        f"{_get(r, 'cpu', 'chunk_rows', default=0):,} (CPU s), for all rows (CPU all s); "
        "relative difference device vs CPU on those rows."
    )
    out = [
        (
            sentence,
            ["method", "device s", "floor float64 s", "floor TF32 s", "device / floor float64",
             "device / floor TF32", "CPU s", "CPU all s", "CPU / device",
             "max rel diff device vs CPU"],
            rows,
        )
    ]  # fmt: skip
    if floor:
        f64, tf32 = floor["gram_float64"], floor["gram_tf32"]
        out.append(
            f"Floor parts: read + host-to-device copy of the {_bytes(floor['transfer_bytes'])} "
            f"once {_s(floor['transfer_s'])} s "
            f"({_bytes(floor['transfer_bytes'] / floor['transfer_s'])}/s); Gram GEMM of the "
            f"{r['n_models'] * r['n_features']} concatenated columns over all rows, from a "
            f"{r['chunk_rows']:,}-row block held on the device: float64 {_s(f64['pass_s'])} s "
            f"({_rate(f64['tflops'])}), float32{' TF32' if tf32['tf32'] else ' (no TF32 here)'} "
            f"{_s(tf32['pass_s'])} s ({_rate(tf32['tflops'])})."
        )
    return out


def lfre_sections(r: dict) -> list:
    """The LFRE step's tables."""
    if "n_train" not in r:
        return []
    floor, device, cpu = r.get("floor", {}), r.get("device", {}), r.get("cpu", {})
    search = _get(device, "phases_s", "neighbour search")
    star = cpu.get("extrapolated", False)
    rows = [
        [
            f"{r['n_train']:,}",
            _s(device.get("seconds")),
            _s(search),
            _s(floor.get("transfer_s")),
            _s(floor.get("gemm_s")),
            _s(floor.get("gemm_sliced_s")),
            _s(_ratio(search, floor.get("floor_s"))),
            _s(cpu.get("seconds"), 1),
            _s(cpu.get("seconds_estimate"), 1, star),
            _s(cpu.get("search_estimate_s"), 1, star),
            _s(_ratio(cpu.get("seconds_estimate"), device.get("seconds")), 1, star),
            _sci(_get(r, "agreement", "pointwise_max_relative")),
        ]
    ]
    sentence = (
        f"(b) LFRE of m1 from m0, {r['n_features']} float32 features each, k = {r['k']}, "
        f"{r['n_test']:,} test rows; floor of the neighbour search = source rows read and "
        "copied to the device once + the float64 GEMM test @ train.T (the faster of whole "
        "chunks and fredask's 4096-row slices). Device phases: "
        f"{_phases_text(device.get('phases_s', {}))}. CPU timed on the first "
        f"{cpu.get('n_train', 0):,} train rows (CPU s), for all (CPU all s: its statistics and "
        "neighbour-search passes scaled linearly, the local fits as timed); relative "
        "difference of the pointwise errors, device vs CPU, on those rows."
    )
    return [
        (
            sentence,
            ["N_train", "device s", "device search s", "transfer s", "GEMM s", "GEMM sliced s",
             "search / floor", "CPU s", "CPU all s", "CPU all search s", "CPU / device",
             "max rel diff device vs CPU"],
            rows,
        )
    ]  # fmt: skip


def cumulant_sections(r: dict) -> list:
    """The cumulant step's table."""
    if "n_structures" not in r:
        return []
    device, cpu, floor = r.get("device", {}), r.get("cpu", {}), r.get("floor", {})
    estimate = cpu.get("estimate", {})
    star = estimate.get("extrapolated", False)
    rows = [
        [
            f"{r['n_structures']:,}",
            f"{r['n_atoms']:,}",
            _s(device.get("seconds")),
            _s(floor.get("floor_s")),
            _s(_ratio(device.get("seconds"), floor.get("floor_s"))),
            _s(cpu.get("seconds"), 1),
            _s(estimate.get("seconds"), 1, star),
            _s(_ratio(estimate.get("seconds"), device.get("seconds")), 1, star),
            _sci(_get(r, "agreement", "max_relative_to_column_max")),
        ]
    ]
    sentence = (
        f"(c) Structure cumulants of order {r['order']}, {r['n_features']} float32 features, "
        f"{r['structure_atoms'][0]} to {r['structure_atoms'][1]} atoms per structure; floor = "
        "the features read and copied to the device once. CPU: the first "
        f"{cpu.get('structures', 0):,} structures timed (CPU s), for all (CPU all s); "
        "difference over each column's "
        f"largest value on the first {_get(r, 'agreement', 'structures', default=0):,}."
    )
    return [
        (
            sentence,
            ["structures", "atoms", "device s", "floor s", "device / floor", "CPU s",
             "CPU all s", "CPU / device", "max diff / column max, device vs CPU"],
            rows,
        )
    ]  # fmt: skip


def extraction_sections(r: dict, side: str) -> list:
    """The extraction step's table."""
    if "models" not in r:
        return []
    rows = []
    for spec, m in r["models"].items():
        if m.get("status") != "ok":
            rows.append([spec, "—", "—", "—", "—", "—", _status_text(m)])
            continue
        rows.append(
            [
                spec,
                f"{m['cpu']['structures']} / {m['cpu']['atoms']:,}",
                f"{m['device']['atoms_per_s']:,.0f}",
                f"{m['cpu']['atoms_per_s']:,.0f}",
                _s(m["speedup"], 1),
                _sci(m["agreement"]["max_abs_over_max"]),
                "ok",
            ]
        )
    sentence = (
        f"(d) Extraction of {r['structures']} shipped structures ({r['atoms']:,} atoms), "
        f"one process, device={side!r} against device='cpu' (model loaded and first call "
        "made before timing)."
    )
    return [
        (
            sentence,
            [
                "model",
                "structures / atoms covered",
                "device atoms/s",
                "CPU atoms/s",
                "speed-up",
                "max diff / max",
                "status",
            ],
            rows,
        )
    ]


def agreement_rows(steps: dict) -> list[list[str]]:
    """(e) Every device number against the CPU path."""
    rows = []

    def add(what: str, on: str, value, target: float) -> None:
        ok = value is not None and np.isfinite(value) and value <= target
        rows.append([what, on, _sci(value), f"{target:.0e}", "yes" if ok else "no"])

    g = steps.get("gfre", {})
    for method in METHODS:
        if _get(g, "agreement", method) is not None:
            on = f"{g['agreement']['rows']:,} atoms"
            add(f"GFRE matrix ({method}), off-diagonal", on, g["agreement"][method]["max_relative"],
                TARGET)  # fmt: skip
    lf = steps.get("lfre", {})
    if "agreement" in lf:
        a = lf["agreement"]
        on = f"{a['n_test']:,} test rows against {a['n_train']:,} train rows"
        add("LFRE pointwise errors", on, lf["agreement"]["pointwise_max_relative"], TARGET)
    c = steps.get("cumulants", {})
    if "agreement" in c:
        on = f"{c['agreement']['structures']:,} structures"
        add("cumulants (over column max)", on, c["agreement"]["max_relative_to_column_max"],
            TARGET)  # fmt: skip
    for spec, m in _get(steps, "extraction", "models", default={}).items():
        if m.get("status") == "ok":
            on = f"{m['cpu']['atoms']:,} atoms (float32 models)"
            add(f"{spec} features", on, m["agreement"]["max_abs_over_max"], EXTRACTION_TARGET)
    return rows


def targets(report: dict) -> list[str]:
    """The goals against the numbers."""
    steps = report["steps"]
    lines = []
    total = report.get("wall_s")
    if total is not None:
        lines.append(
            f"whole check {total:.0f} s with the clusters' start (target < 300 s on one GPU)"
        )
    g = steps.get("gfre", {})
    for method in METHODS:
        ratio = _ratio(_get(g, "device", method, "seconds"), _get(g, "floor", "floor_float64_s"))
        if ratio is not None:
            lines.append(f"GFRE {method}: device / floor float64 {ratio:.2f}")
    lf = steps.get("lfre", {})
    ratio = _ratio(_get(lf, "device", "phases_s", "neighbour search"), _get(lf, "floor", "floor_s"))
    if ratio is not None:
        lines.append(f"LFRE neighbour search / GEMM floor {ratio:.2f}")
    rows = agreement_rows(steps)
    if rows:
        met = sum(row[-1] == "yes" for row in rows)
        lines.append(f"agreement with the CPU path: {met} of {len(rows)} within target")
    return lines


def page(report: dict) -> str:
    """The markdown page of a (possibly partial) report."""
    context, steps = report["context"], report["steps"]
    info = context.get("device_info") or {}
    status = [[name, _status_text(r), _s(r.get("wall_s"), 1)] for name, r in steps.items()]
    definitions = [
        f"Device side: {context['side']}"
        + (f": {info['name']}, {info['memory_bytes'] / 2**30:.0f} GiB" if info else "")
        + ". "
        + (
            "**Dry run**: tiny sizes on the CPU; the numbers test the code, not a GPU. "
            if context.get("dry_run")
            else ""
        )
        + "Data: the benchmarks' synthetic zoo (fredask.bench.data: tanh(L A_m + noise_m), a "
        "shared 32-dim latent L), drawn on the device side's workers and held in their host "
        "memory; fredask times include the host-to-device copies. CPU: the same fredask call "
        "with device='cpu' on the CPU cluster, on the first rows when the whole would take "
        "too long (\\* = extrapolated linearly to all rows; for the LFRE only its statistics "
        "and neighbour-search passes are scaled). Timings: one run after a warm-up. A step "
        "'running' was still running when this page was written (the run was stopped in it).",
    ]
    sections = [
        ("Steps:", ["step", "status", "wall s"], status),
        *gfre_sections(steps.get("gfre", {})),
        *lfre_sections(steps.get("lfre", {})),
        *cumulant_sections(steps.get("cumulants", {})),
        *extraction_sections(steps.get("extraction", {}), context.get("extraction_device", "")),
    ]
    rows = agreement_rows(steps)
    if rows:
        sections.append(
            (
                "(e) Agreement of the device path with the CPU path on the same rows (relative "
                "difference):",
                ["quantity", "compared on", "max relative difference", "target", "met"],
                rows,
            )
        )
    return benchmark_page("GPU check", context, definitions, sections, targets(report))


def write_report(directory: Path, report: dict) -> dict[str, Path]:
    """``gpu.md`` and ``gpu.json`` in ``directory``; a page that fails to render says so."""
    try:
        markdown = page(report)
    except Exception as error:  # the numbers must still be written
        markdown = (
            f"# GPU check\n\nThe page failed to render ({error_record(error)}); see gpu.json.\n"
        )
    return write_results(directory, NAME, markdown, report)


# -------------------------------------------------------------------------- main


def _start(report, sizes, side, cpu_workers, scratch, seed, started, clients) -> tuple:
    """The clusters and the :class:`CheckRun`; or, where they cannot start, a run without
    them and the reason (the array steps are then skipped, the extraction still runs)."""
    if side.kernels == "cupy" and not gpu_available():
        from fredask.backend import BackendError, resolve_backend

        try:
            resolve_backend("gpu")
            reason = "no CUDA device"
        except BackendError as error:
            reason = str(error)
        progress(f"no GPU for the array steps ({reason}); --dry-run runs them on a CPU", started)
        return CheckRun(
            sizes, side, None, None, cpu_workers, {}, seed, started
        ), f"no GPU: {reason}"
    try:
        progress(f"starting the clusters ({side.label})", started)
        device, description = device_cluster(side, scratch)
        clients.append(device)
        cpu = local_client(cpu_workers, local_directory=scratch)
        clients.append(cpu)
        cpu_text = f"LocalCluster(n_workers={cpu_workers}, threads_per_worker=1, processes=True)"
        report["context"]["cluster"] = f"device side: {description}; CPU side: {cpu_text}"
        worker = sorted(device.scheduler_info()["workers"])[0]
        info = device.submit(device_info, side.kernels, workers=[worker], pure=False).result()
        progress("warming up every worker (fredask's kernels on tiny data)", started)
        for client, where in ((device, side.device), (cpu, "cpu")):
            try:
                client.run(warm_up_worker, where)
            except Exception as error:  # the steps will say it again, in context
                report.setdefault("warm_up_errors", []).append(error_record(error))
                progress(f"warm-up failed: {type(error).__name__}: {error}", started)
    except Exception as error:  # recorded; the extraction does not need the clusters
        report["error"] = error_record(error)
        progress(f"the clusters did not start: {type(error).__name__}: {error}", started)
        reason = f"the clusters did not start: {type(error).__name__}: {error}"
        return CheckRun(sizes, side, None, None, cpu_workers, {}, seed, started), reason
    report["context"]["device_info"] = info
    progress(f"device: {info['name']}, {info['memory_bytes'] / 2**30:.0f} GiB", started)
    return CheckRun(sizes, side, device, cpu, cpu_workers, info, seed, started), None


def run_check(
    results_dir: str | Path,
    sizes: CheckSizes = FULL,
    dry_run: bool = False,
    steps: tuple[str, ...] = STEPS,
    cpu_workers: int | None = None,
    data_dir: str | Path | None = None,
    time_limit: float = 240.0,
    seed: int = 0,
    args: dict | None = None,
) -> dict:
    """Run the check's steps and write the report after each; returns the report.

    Parameters
    ----------
    results_dir : path
        Where ``gpu.md`` and ``gpu.json`` go.
    sizes : CheckSizes
    dry_run : bool
        Torch CPU tensors stand in for the GPU (run with :data:`DRY` sizes).
    steps : tuple of str
        Some of :data:`STEPS`, run in that order.
    cpu_workers : int, optional
        Workers of the CPU cluster (default: the usable cores).
    data_dir : path, optional
        Where the clusters' scratch directory goes (removed at the end).
    time_limit : float
        Seconds after the start past which no further step starts (skipped).
    seed : int
    args : dict, optional
        The command's arguments, for the report.

    Returns
    -------
    dict
        ``context`` (machine, versions, clusters, device), ``settings``,
        ``steps`` (per step: ``status`` ok / failed / skipped, ``wall_s`` and
        the measurements) and ``wall_s``.
    """
    started = time.perf_counter()
    results_dir = Path(results_dir)
    side = STAND_IN if dry_run else GPU
    cpu_workers = cpu_workers or (1 if dry_run else usable_cores())
    report = {
        "context": {
            "machine": machine(),
            "versions": versions() | extra_versions(),
            "cluster": "not started",
            "load_average": load_average(),
            "side": side.label,
            "extraction_device": side.extraction,
            "dry_run": dry_run,
            "args": args or {},
        },
        "settings": dataclasses.asdict(sizes) | {"time_limit_s": time_limit, "seed": seed},
        "steps": {name: {"status": "not run"} for name in steps},
    }
    write_report(results_dir, report)
    parent = Path(data_dir) if data_dir is not None else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="fredask-gpu-", dir=parent)
    clients: list = []
    try:
        run, unavailable = _start(report, sizes, side, cpu_workers, scratch, seed, started, clients)
        for name in steps:
            elapsed = time.perf_counter() - started
            if name != "extraction" and unavailable:  # extraction needs no cluster
                report["steps"][name] = {"status": "skipped", "reason": unavailable}
            elif elapsed > time_limit:
                report["steps"][name] = {
                    "status": "skipped",
                    "reason": f"{elapsed:.0f} s elapsed, past the time limit {time_limit:.0f} s",
                }
            else:
                report["steps"][name] = {"status": "running"}
                write_report(results_dir, report)
                report["steps"][name] = run_step(name, run)
            report["wall_s"] = time.perf_counter() - started
            write_report(results_dir, report)
    finally:
        for record in report["steps"].values():
            if record["status"] == "running":  # stopped (a signal, Ctrl-C) inside this step
                record.update(status="interrupted", reason="the run was stopped in this step")
        for client in reversed(clients):
            with contextlib.suppress(Exception):
                close_client(client)
        shutil.rmtree(scratch, ignore_errors=True)
        report["wall_s"] = time.perf_counter() - started
        write_report(results_dir, report)
        progress(f"report: {results_dir / (NAME + '.md')}", started)
    return report


__all__ = [
    "DRY",
    "FULL",
    "GPU",
    "STAND_IN",
    "STEPS",
    "CheckSizes",
    "DeviceSide",
    "run_check",
]
