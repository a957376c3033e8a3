"""The GPU check's step (b): the LFRE on the device, its neighbour search against the GEMM
floor, the CPU.

The LFRE of ``m1`` from ``m0`` (1000 test rows, 10^7 train rows, k = 256); the floor of
the neighbour search is the source rows copied to the device once plus ``test @ train.T``.
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np

from fredask.bench.gpu.agreement import max_relative
from fredask.bench.gpu.data import generated_features, moved_rows, release
from fredask.bench.gpu.device import distance_seconds, transfer_floor
from fredask.bench.gpu.run import CheckRun, part
from fredask.bench.gpu.sizes import cpu_chunk_rows
from fredask.bench.gpu.text import phases_text
from fredask.bench.measure import timed
from fredask.bench.stages import lfre_rows


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
            run.progress(f"lfre: device {timing.seconds:.2f} s, phases {phases_text(phases)}")
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
