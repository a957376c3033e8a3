"""Wall time and peak memory of one timed call on a Dask cluster, and the machine.

Peak memory is the resident-set high-water mark (``VmHWM``) of each worker
process and of this process, reset before each call through
``/proc/self/clear_refs`` (Linux; elsewhere it is reported as NaN).
"""

from __future__ import annotations

import os
import platform
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
    """One timed call.

    Attributes
    ----------
    seconds : float
        Wall time of the call.
    worker_peak_rss : dict of str to float
        High-water mark of each worker's resident set during the call, bytes.
    client_peak_rss : float
        The same for the calling process.
    value : object
        What the call returned.
    """

    seconds: float
    worker_peak_rss: dict[str, float] = field(default_factory=dict)
    client_peak_rss: float = float("nan")
    value: object = None


def timed(client, call: Callable[[], object], repeats: int = 1) -> Timing:
    """The fastest of ``repeats`` calls of ``call()``; peak memory the largest of all.

    Parameters
    ----------
    client : distributed.Client
        The cluster whose workers' memory is measured.
    call : callable
        What to time.
    repeats : int
        Number of calls.

    Returns
    -------
    Timing
    """
    best: Timing | None = None
    workers: dict[str, float] = {}
    client_peak = 0.0
    for _ in range(max(1, repeats)):
        client.run(reset_peak_rss)
        reset_peak_rss()
        start = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - start
        for worker, peak in client.run(peak_rss).items():
            workers[worker] = max(workers.get(worker, 0.0), peak)
        client_peak = max(client_peak, peak_rss())
        if best is None or seconds < best.seconds:
            best = Timing(seconds, value=value)
    best.worker_peak_rss, best.client_peak_rss = workers, client_peak
    return best


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
        ``cpu``, ``cores``, ``memory_gib``, ``gpu`` and ``description``.
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
        "memory_gib": memory,
        "gpu": gpu,
        "description": f"{cpu}, {cores} cores, {memory} GiB, {gpu}",
    }
