"""The whole GPU check: the clusters, the steps in order, the report after each.

Four steps (:mod:`~fredask.bench.gpu.gfre`, :mod:`~fredask.bench.gpu.lfre`,
:mod:`~fredask.bench.gpu.cumulants`, :mod:`~fredask.bench.gpu.extraction`), the array
steps on synthetic data drawn on the device side's workers and held in their (host)
memory, no store.  Every number of the device side is compared with the CPU path on the
same rows (:func:`~fredask.bench.gpu.agreement.max_relative`; float64 target 1e-10).
Each step is wrapped: a failure records its error type and message and the next step
runs; the report (``gpu.md``, ``gpu.json``) is rewritten after every step, so a run
killed at its time limit still leaves one.  ``dry_run`` runs the same steps at a tiny
size on the CPU, with torch CPU tensors (``fredask.backend.ArrayBackend("torch")``)
standing in for the GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from fredask.backend import gpu_available
from fredask.bench.gpu.cumulants import cumulants_step
from fredask.bench.gpu.device import GPU, STAND_IN, device_cluster, device_info
from fredask.bench.gpu.extraction import extraction_step
from fredask.bench.gpu.gfre import gfre_step
from fredask.bench.gpu.lfre import lfre_step
from fredask.bench.gpu.report import NAME, write_report
from fredask.bench.gpu.run import CheckRun, Skipped, error_record, progress
from fredask.bench.gpu.sizes import FULL, METHODS, CheckSizes
from fredask.bench.measure import load_average, machine, versions
from fredask.cluster.local import close_client, local_client

STEPS = ("gfre", "lfre", "cumulants", "extraction")


STEP_FUNCTIONS: dict[str, Callable[[CheckRun, dict], None]] = {
    "gfre": gfre_step,
    "lfre": lfre_step,
    "cumulants": cumulants_step,
    "extraction": extraction_step,
}


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
