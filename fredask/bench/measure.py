"""Wall time and peak memory of one timed call on a Dask cluster, and the machine.

Also: a call in a fresh child process (:func:`in_child`, for the references
fredask is compared with) and the versions of the libraries that matter.
Peak memory is the resident-set high-water mark (``VmHWM``) of each worker
process and of this process, reset before each call through
``/proc/self/clear_refs`` (Linux; elsewhere it is reported as NaN).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

MIB = 2**20


def reset_peak_rss() -> None:
    """Reset this process's resident-set high-water mark (Linux; else nothing)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss() -> float:
    """This process's resident-set high-water mark since the last reset, in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("nan")


@dataclass
class Timing:
    """One timed call (the fastest of its repeats).

    Attributes
    ----------
    seconds : float
        Wall time of the call.
    worker_peak_rss : dict of str to float
        High-water mark of each worker's resident set during the calls, bytes.
    client_peak_rss : float
        The same for the calling process.
    tasks_span_s : float
        From the start of the first task to the end of the last on the cluster
        (the rest of the wall time is graph building, scheduling and the work
        in the calling process); from Dask's task stream.
    worker_compute_s : float
        Compute time of all tasks, summed over workers.
    compute_by_task : dict of str to float
        That sum per task name (key prefix), largest first.
    value : object
        What the call returned (not part of :meth:`to_dict`).
    """

    seconds: float
    worker_peak_rss: dict[str, float] = field(default_factory=dict)
    client_peak_rss: float = float("nan")
    tasks_span_s: float = 0.0
    worker_compute_s: float = 0.0
    compute_by_task: dict[str, float] = field(default_factory=dict)
    value: object = None

    def to_dict(self) -> dict:
        """The measurements, for a JSON report."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "value"}


def task_activity(records: list[dict]) -> tuple[float, float, dict[str, float]]:
    """Span of all task activity, summed compute time and compute per task name.

    ``records`` are the entries of a ``distributed.get_task_stream``.
    """
    from dask.utils import key_split

    intervals = [(r["key"], s) for r in records for s in r["startstops"]]
    if not intervals:
        return 0.0, 0.0, {}
    span = max(s["stop"] for _, s in intervals) - min(s["start"] for _, s in intervals)
    by_task: dict[str, float] = {}
    for key, s in intervals:
        if s["action"] == "compute":
            name = key_split(key)
            by_task[name] = by_task.get(name, 0.0) + s["stop"] - s["start"]
    by_task = dict(sorted(by_task.items(), key=lambda item: -item[1]))
    return span, sum(by_task.values()), by_task


def timed(client, call: Callable[[], object], repeats: int = 1) -> Timing:
    """The fastest of ``repeats`` calls of ``call()``; peak memory the largest of all.

    Parameters
    ----------
    client : distributed.Client
        The cluster whose workers' memory and tasks are measured.
    call : callable
        What to time.
    repeats : int
        Number of calls.

    Returns
    -------
    Timing
    """
    import distributed

    best: Timing | None = None
    workers: dict[str, float] = {}
    client_peak = 0.0
    for _ in range(max(1, repeats)):
        client.run(reset_peak_rss)
        reset_peak_rss()
        with distributed.get_task_stream(client=client) as stream:
            start = time.perf_counter()
            value = call()
            seconds = time.perf_counter() - start
        for worker, peak in client.run(peak_rss).items():
            workers[worker] = max(workers.get(worker, 0.0), peak)
        client_peak = max(client_peak, peak_rss())
        if best is None or seconds < best.seconds:
            span, compute, by_task = task_activity(stream.data)
            best = Timing(seconds, {}, float("nan"), span, compute, by_task, value)
    best.worker_peak_rss, best.client_peak_rss = workers, client_peak
    return best


def _child_main(target: Callable[..., dict], args: tuple, connection) -> None:
    reset_peak_rss()
    import psutil

    baseline = psutil.Process().memory_info().rss
    try:
        result = target(*args)
    except Exception as error:  # reported to the parent, which says what failed
        result = {"error": f"{type(error).__name__}: {error}"}
    connection.send(result | {"baseline_rss": float(baseline), "peak_rss": peak_rss()})
    connection.close()


def in_child(target: Callable[..., dict], *args) -> dict:
    """``target(*args)`` (a dict) in a fresh spawned process, with that process's memory.

    For references that must not share this process's memory or threads
    (scikit-matter, the paper's loop): the result gains ``baseline_rss`` and
    ``peak_rss`` (bytes) of the child, or is ``{"error": ...}`` when it failed
    or died.  ``target`` must be importable (a module-level function).
    """
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child_main, args=(target, args, sender))
    child.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        result = {"error": "the child process died"}
    child.join()
    if child.exitcode and "error" not in result:
        result["error"] = f"child exited with code {child.exitcode}"
    return result


def directory_bytes(path: str | Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def load_average() -> float:
    """The one-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def machine() -> dict:
    """CPU model, cores and memory of this machine, and a one-line description.

    Returns
    -------
    dict
        ``cpu``, ``cores`` (usable), ``cores_total``, ``memory_gib``, ``gpu``,
        ``platform`` and ``description``.
    """
    import psutil

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = round(psutil.virtual_memory().total / 2**30, 1)
    gpu = "no GPU" if not Path("/dev/nvidia0").exists() else "NVIDIA GPU present"
    return {
        "cpu": cpu,
        "cores": cores,
        "cores_total": os.cpu_count(),
        "memory_gib": memory,
        "gpu": gpu,
        "platform": platform.platform(),
        "description": f"{cpu}, {cores} cores, {memory} GiB, {gpu}",
    }


def source_revision(root: str | Path | None = None) -> str:
    """The git commit of fredask's source (``+dirty`` when ``fredask/`` has changes)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "fredask"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def versions() -> dict:
    """Versions of Python, fredask (with its commit) and the libraries that matter."""
    import dask
    import distributed
    import numpy as np
    import zarr

    import fredask

    blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
    out = {
        "python": platform.python_version(),
        "fredask": f"{fredask.__version__} ({source_revision()})",
        "numpy": np.__version__,
        "blas": f"{blas.get('name')} {blas.get('version')}",
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "zarr": zarr.__version__,
    }
    try:
        import skmatter

        out["skmatter"] = skmatter.__version__
    except ImportError:
        pass
    return out
