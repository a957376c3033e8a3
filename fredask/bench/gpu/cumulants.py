"""The GPU check's step (c): order-8 structure cumulants on the device, the transfer floor,
the CPU.

Cumulants of 10^6 structures (:func:`fredask.structure.cumulants.structure_cumulants`)
against the features read and copied to the device once.
"""

from __future__ import annotations

import time

import dask.array as da
import numpy as np

from fredask.bench.gpu.agreement import column_relative, computed_sum, host_rows, max_relative
from fredask.bench.gpu.data import generated_features, moved_rows, release
from fredask.bench.gpu.device import transfer_floor
from fredask.bench.gpu.run import CheckRun, cpu_estimate, part
from fredask.bench.gpu.sizes import cpu_chunk_rows
from fredask.bench.measure import timed


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
                "estimate": cpu_estimate(cpu.seconds, rows_cpu, n_rows),
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
