"""The GPU check's step (a): the all-pairs GFRE matrix on the device, its floor, the CPU.

The matrix of 10 models x 256 float32 features
(:func:`fredask.compare.reconstruction_matrix`, ``method="qr"`` and ``"gram"``,
``device="gpu"``) over as many atoms as fit (at least 4 x 10^6), against the floor
(read and host-to-device copy of the data once, plus the Gram GEMM of the concatenated
columns at the GPU's float64 and TF32 rates, timed on CuPy directly) and against the
same call with ``device="cpu"`` on a ``LocalCluster`` of the machine's cores (on the
first rows only when the whole would take too long, extrapolated linearly).
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np

from fredask.bench.gpu.agreement import matrix_agreement, off_diagonal
from fredask.bench.gpu.data import generated_features, moved_rows, release
from fredask.bench.gpu.device import gram_seconds, transfer_floor
from fredask.bench.gpu.run import CheckRun, cpu_estimate, part
from fredask.bench.gpu.sizes import METHODS, cpu_chunk_rows, sized_atoms
from fredask.bench.gpu.text import byte_text
from fredask.bench.measure import timed


def gfre_matrix(features: dict, method: str, device, client):
    """The all-pairs GFRE matrix (``reconstruction_matrix``) as a numpy array."""
    from fredask.compare import reconstruction_matrix

    result = reconstruction_matrix(
        features, "gfre", method=method, device=device, client=client, progress=False
    )
    return result.matrix.to_numpy()


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
        f"({byte_text(4 * width * n)}) on the device workers"
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
            off = off_diagonal(matrices["qr"])
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
                        "estimate": cpu_estimate(timing.seconds, n_cpu, n)
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
