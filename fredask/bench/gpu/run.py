"""What the GPU check's steps share: the clusters and settings of a run, progress lines,
parts of a step whose failure is recorded, error records, the CPU run's extrapolation."""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from fredask.bench.driver import log
from fredask.bench.gpu.device import DeviceSide
from fredask.bench.gpu.sizes import CheckSizes


class Skipped(Exception):
    """A step or part of one that cannot run here; the message says why."""


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


def cpu_estimate(seconds: float, done: int, total: int) -> dict:
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


def error_record(error: BaseException) -> dict:
    """Type, message and the end of the traceback of ``error``."""
    trace = "".join(traceback.format_exception(error))
    return {"type": type(error).__name__, "message": str(error), "traceback": trace[-4000:]}
