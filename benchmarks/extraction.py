"""Extraction throughput of each model preset with 1 and 2 workers, and the store's write overhead.

Usage::

    .venv/bin/python benchmarks/extraction.py [--models chgnet:0.3.0 sevenn:7net-0 ...]

For each preset and worker count, a fresh store of the structures that ship
with ASE and pymatgen (6044 atoms) is filled by ``fredask.extract.runner.extract``
on a ``LocalCluster`` of single-threaded workers; the wall time includes loading
the model on each worker.  Then the write throughput of the store
(``FeatureStore.add_features``: zstd-compressed Zarr chunks, progress flags)
is compared with ``numpy.save`` of the same array, for random and for real
(tiled) features.  Results go to stdout and ``benchmarks/results/extraction.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import distributed
import numpy as np

from fredask.extract import get_extractor
from fredask.extract.runner import extract
from fredask.store import FeatureStore
from fredask.store.datasets import shipped_structures
from fredask.store.structures import StructureTable

RESULTS = Path(__file__).parent / "results" / "extraction.md"
MODELS = ("chgnet:0.3.0", "sevenn:7net-0", "sevenn:7net-l3i5")


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def time_extraction(table: StructureTable, spec: str, workers: int, scratch: Path) -> float:
    """Seconds to fill a fresh store with ``spec`` on ``workers`` workers."""
    store = FeatureStore.create(scratch / f"{spec.replace(':', '_')}-{workers}.zarr", table)
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        start = time.perf_counter()
        extract(store, get_extractor(spec), client=client, skip_errors=True, progress=False)
        return time.perf_counter() - start


def time_writes(values: np.ndarray, table: StructureTable, scratch: Path) -> tuple[float, float]:
    """Seconds to write ``values`` with the store and with ``numpy.save``."""
    store = FeatureStore.create(scratch / "write.zarr", table, overwrite=True)
    start = time.perf_counter()
    store.add_features("m", values, {"model": "benchmark"})
    store_s = time.perf_counter() - start
    start = time.perf_counter()
    np.save(scratch / "write.npy", values)
    numpy_s = time.perf_counter() - start
    return store_s, numpy_s


def tiled_table(n_rows: int) -> StructureTable:
    """A structure table of ``n_rows`` one-atom structures (the write test needs rows only)."""
    from ase import Atoms

    atoms = Atoms("H", positions=[[0, 0, 0]])
    table = StructureTable.from_atoms([atoms])
    repeat = lambda a: np.repeat(a, n_rows, axis=0)  # noqa: E731
    return StructureTable(
        n_atoms=np.ones(n_rows, dtype=np.int64),
        offset=np.arange(n_rows, dtype=np.int64),
        fingerprint=repeat(table.fingerprint),
        subset=repeat(table.subset),
        source_file=repeat(table.source_file),
        source_index=np.arange(n_rows, dtype=np.int64),
        cell=repeat(table.cell),
        pbc=repeat(table.pbc),
        numbers=repeat(table.numbers),
        positions=repeat(table.positions),
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--write-rows", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    structures = shipped_structures()
    table = StructureTable.from_atoms(structures)
    scratch = Path(tempfile.mkdtemp(prefix="fredask-bench-"))
    lines = [
        "# Extraction benchmark",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores. Structures: {table.n_structures} shipped "
        f"structures, {table.n_atoms_total} atoms (G2, S22, dcdft, AFLOW prototypes). "
        "Wall time includes loading the model on each worker.",
        "",
        "| model | workers | wall s | atoms/s | speed-up |",
        "|---|---|---|---|---|",
    ]
    try:
        for spec in args.models:
            base = None
            for workers in args.workers:
                seconds = time_extraction(table, spec, workers, scratch)
                base = base or seconds
                rate = table.n_atoms_total / seconds
                lines.append(
                    f"| {spec} | {workers} | {seconds:.1f} | {rate:.0f} | {base / seconds:.2f} |"
                )
                print(lines[-1], flush=True)
        rows = args.write_rows
        write_table = tiled_table(rows)
        store = FeatureStore.open(
            scratch / f"{args.models[0].replace(':', '_')}-{args.workers[0]}.zarr"
        )
        real = store.features(store.feature_names()[0])[:]
        real = np.nan_to_num(real)
        data = {
            "random normal": np.random.default_rng(0).normal(size=(rows, 128)).astype(np.float32),
            f"real ({store.feature_names()[0]}, tiled)": np.resize(real, (rows, real.shape[1])),
        }
        lines += [
            "",
            f"Store write overhead, {rows} rows, float32:",
            "",
            "| data | MiB | store s | np.save s | store MiB/s | np.save MiB/s | store / np.save |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, values in data.items():
            store_s, numpy_s = time_writes(values, write_table, scratch)
            mib = values.nbytes / 2**20
            lines.append(
                f"| {label} | {mib:.0f} | {store_s:.2f} | {numpy_s:.2f} | {mib / store_s:.0f} | "
                f"{mib / numpy_s:.0f} | {store_s / numpy_s:.2f} |"
            )
            print(lines[-1], flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
