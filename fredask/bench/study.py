"""Run a stage over a grid of atom counts, feature sizes, chunk sizes and worker counts.

Each worker count gets its own ``LocalCluster`` of single-threaded worker
processes, all open at once; every (atoms, features, chunk rows) point is
measured on each of them in turn (warm-up, floor, then the stage), so the
worker counts of a point are measured close together in time.  One row per point is recorded: time,
throughput, floor and ratio to it, peak memory per worker, the load average
before and after, and the machine.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product

import pandas as pd

from fredask.bench.data import (
    StudyInputs,
    store_inputs,
    structure_inputs,
    synthetic_inputs,
    synthetic_store,
)
from fredask.bench.measure import MIB, load_average, machine, timed
from fredask.bench.stages import (
    RUNNERS,
    STAGES,
    StageOptions,
    measure_floor,
    stage_inputs,
    warm_up,
)
from fredask.cluster.local import close_client, local_client


@dataclass(frozen=True)
class Grid:
    """What a scaling study runs.

    Attributes
    ----------
    stage : {"gfre", "lfre", "cumulants", "extraction"}
        The timed stage.
    atoms : list of int
        Atom counts (rows).
    features : list of int
        Features per model (ignored by the extraction stage).
    chunk_rows : list of int
        Rows per chunk.
    workers : list of int
        Worker processes (one thread each).
    n_models : int
        Models of the synthetic data.
    store : str, optional
        Run on prefixes of this fredask store instead of synthetic data.
    data_dir : str
        Where synthetic stores are written and reused.
    repeats : int
        Timings are the best of this many calls.
    seed : int
        Seed of the synthetic data.
    options : StageOptions
        Stage settings.
    """

    stage: str = "gfre"
    atoms: list[int] = field(default_factory=lambda: [100_000])
    features: list[int] = field(default_factory=lambda: [128])
    chunk_rows: list[int] = field(default_factory=lambda: [32_768])
    workers: list[int] = field(default_factory=lambda: [1, 2])
    n_models: int = 4
    store: str | None = None
    data_dir: str = "benchmarks/_data"
    repeats: int = 1
    seed: int = 0
    options: StageOptions = field(default_factory=StageOptions)

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if self.stage == "lfre" and self.n_models < 2:
            raise ValueError("the lfre stage needs at least two models")

    def points(self) -> list[tuple[int, int, int]]:
        """The (atoms, features, chunk rows) points, smallest first."""
        features = [0] if self.stage == "extraction" else self.features
        return sorted(product(self.atoms, features, self.chunk_rows))


def prepare(grid: Grid, n_atoms: int, n_features: int, chunk_rows: int) -> StudyInputs:
    """The inputs of one point: synthetic (written if missing), a store prefix, or structures."""
    if grid.stage == "extraction":
        return structure_inputs(n_atoms, chunk_rows)
    if grid.store is not None:
        return store_inputs(grid.store, n_atoms, n_features, chunk_rows)
    path = synthetic_store(grid.data_dir, n_atoms, grid.n_models, n_features, chunk_rows, grid.seed)
    return synthetic_inputs(path)


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def measure_point(grid: Grid, inputs: StudyInputs, client, n_workers: int) -> dict:
    """Floor and stage timing of one point on ``client`` (``n_workers`` workers).

    ``n_models``, ``n_features``, ``input_mib`` and ``mib_per_s`` describe the
    arrays the stage reads (the LFRE: the first two models).
    """
    load_before = load_average()
    warm_up(grid.stage, inputs, client, grid.options)
    floor = measure_floor(grid.stage, inputs, client, grid.options, grid.repeats)
    runner = RUNNERS[grid.stage]
    run = timed(client, lambda: runner(inputs, client, grid.options), grid.repeats)
    peaks = list(run.worker_peak_rss.values()) or [float("nan")]
    read = stage_inputs(grid.stage, inputs)
    widths = [a.shape[1] for a in read]
    nbytes = sum(a.nbytes for a in read)
    return {
        "stage": grid.stage,
        "n_atoms": inputs.n_atoms,
        "n_models": len(read) or 1,
        "n_features": widths[0] if widths else 0,
        "chunk_rows": inputs.chunk_rows,
        "workers": n_workers,
        "seconds": run.seconds,
        **floor,
        "ratio_to_floor": run.seconds / floor["floor_s"],
        "atoms_per_s": inputs.n_atoms / run.seconds,
        "input_mib": nbytes / MIB,
        "mib_per_s": nbytes / MIB / run.seconds if nbytes else float("nan"),
        "peak_worker_rss_mib": max(peaks) / MIB,
        "mean_worker_rss_mib": sum(peaks) / len(peaks) / MIB,
        "worker_peaks_mib": " ".join(f"{p / MIB:.0f}" for p in sorted(peaks)),
        "client_peak_rss_mib": run.client_peak_rss / MIB,
        "value": run.value,
        "load_before": load_before,
        "load_after": load_average(),
    }


def _describe(client) -> dict:
    """The workers' machines: the first one's details, all descriptions joined."""
    hosts = list(client.run(machine).values())
    return hosts[0] | {"description": "; ".join(sorted({h["description"] for h in hosts}))}


def run_study(
    grid: Grid,
    quiet: bool = False,
    clients: Callable[[int], object] | None = None,
    interleave: bool = True,
) -> pd.DataFrame:
    """Run the whole grid; one row per (workers, atoms, features, chunk rows).

    Parameters
    ----------
    grid : Grid
        What to run.
    quiet : bool
        No progress lines on stderr.
    clients : callable, optional
        ``clients(n)`` returns a ``distributed.Client`` with ``n`` workers
        (e.g. of a dask-jobqueue cluster scaled to ``n`` jobs, after
        ``client.wait_for_workers(n)``); it and its cluster are closed after
        use.  Default: :func:`fredask.cluster.local.local_client`.
    interleave : bool
        Keep one cluster per worker count open for the whole study and
        measure each point on all of them in turn, so that the worker counts
        of a point see the same conditions of a shared machine (default).
        False: one worker count after the other, one cluster at a time
        (fewer jobs held on a batch system).

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`measure_point` plus ``repeats``, ``method``,
        ``source``, ``machine`` (CPU, cores, memory and GPU of the workers'
        machines), ``cpu``, ``cores``, ``memory_gib`` (of the first worker's)
        and ``timestamp``.
    """
    make = clients or local_client
    inputs = {point: prepare(grid, *point) for point in grid.points()}
    counts = sorted(set(grid.workers))
    rows = []
    if interleave:
        opened = {}
        try:
            for n_workers in counts:
                opened[n_workers] = make(n_workers)
            hosts = {n: _describe(c) for n, c in opened.items()}
            for point, data in inputs.items():
                for n_workers, client in opened.items():
                    rows.append(_row(grid, point, data, client, n_workers, hosts[n_workers], quiet))
        finally:
            for client in opened.values():
                close_client(client)
    else:
        for n_workers in counts:
            client = make(n_workers)
            try:
                host = _describe(client)
                for point, data in inputs.items():
                    rows.append(_row(grid, point, data, client, n_workers, host, quiet))
            finally:
                close_client(client)
    return pd.DataFrame(rows)


def _row(grid: Grid, point, data: StudyInputs, client, n_workers: int, host: dict, quiet):
    """Measure one point on one client; the CSV row."""
    start = time.perf_counter()
    row = measure_point(grid, data, client, n_workers)
    row.update(
        repeats=grid.repeats,
        method=grid.options.method if grid.stage == "gfre" else "",
        source=data.source,
        machine=host["description"],
        cpu=host["cpu"],
        cores=host["cores"],
        memory_gib=host["memory_gib"],
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    _log(
        f"{grid.stage} N={row['n_atoms']:,} F={point[1]} chunk={point[2]} "
        f"workers={n_workers}: {row['seconds']:.2f} s, floor {row['floor_s']:.2f} s, "
        f"x{row['ratio_to_floor']:.2f} ({time.perf_counter() - start:.0f} s with floor)",
        quiet,
    )
    return row
