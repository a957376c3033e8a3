"""Extraction throughput of each model preset with 1 and 2 workers, and the store's write overhead.

Usage::

    .venv/bin/python benchmarks/extraction.py [--models chgnet:0.3.0 sevenn:7net-0 ...]
    # options: --workers 1 2, --write-rows 1000000, --max-structures (default: all),
    #          --data-dir, --results-dir

For each preset and worker count, a fresh store of the structures that ship
with ASE and pymatgen (6044 atoms, :func:`fredask.store.datasets.shipped_structures`)
is filled by ``fredask.extract.runner.extract`` on a new cluster of that many
single-threaded worker processes (:func:`fredask.cluster.local.local_client`);
the wall time includes loading the model on each worker.  Then the write
throughput of the store (``FeatureStore.add_features``: zstd-compressed Zarr
chunks, progress flags) is compared with ``numpy.save`` of the same array, for
random and for real (tiled) features.  There is no floor.  The scratch stores
live in a temporary directory under ``--data-dir`` (default ``benchmarks/_data``),
removed at the end.  Results go to stdout and to ``extraction.md`` (and the raw
numbers to ``extraction.json``) in ``--results-dir`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from fredask.bench.driver import directory_arguments, log
from fredask.bench.measure import MIB, load_average, machine, versions
from fredask.bench.report import benchmark_page, write_results
from fredask.bench.report import table as markdown_table
from fredask.cluster.local import close_client, local_client
from fredask.extract import get_extractor
from fredask.extract.runner import extract
from fredask.store import FeatureStore
from fredask.store.datasets import shipped_structures
from fredask.store.structures import StructureTable

HERE = Path(__file__).resolve().parent
MODELS = ("chgnet:0.3.0", "sevenn:7net-0", "sevenn:7net-l3i5")
CLUSTER = "one LocalCluster(n_workers=w, threads_per_worker=1, processes=True) per model and w"


def time_extraction(table: StructureTable, spec: str, workers: int, scratch: Path) -> float:
    """Seconds to fill a fresh store with ``spec`` on ``workers`` workers."""
    store = FeatureStore.create(scratch / f"{spec.replace(':', '_')}-{workers}.zarr", table)
    client = local_client(workers, set_as_default=True)
    try:
        start = time.perf_counter()
        extract(store, get_extractor(spec), client=client, skip_errors=True, progress=False)
        return time.perf_counter() - start
    finally:
        close_client(client)


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


def measure(args, table: StructureTable, scratch: Path) -> dict:
    """Extraction times of every model and worker count, then the write overhead."""
    extraction = []
    for spec in args.models:
        base = None
        for workers in args.workers:
            seconds = time_extraction(table, spec, workers, scratch)
            base = base or seconds
            extraction.append(
                {
                    "model": spec,
                    "workers": workers,
                    "seconds": seconds,
                    "atoms_per_s": table.n_atoms_total / seconds,
                    "speedup": base / seconds,
                }
            )
            log(f"{spec}, {workers} worker(s): {seconds:.1f} s")
    rows = args.write_rows
    write_table = tiled_table(rows)
    store = FeatureStore.open(
        scratch / f"{args.models[0].replace(':', '_')}-{args.workers[0]}.zarr"
    )
    real = np.nan_to_num(store.features(store.feature_names()[0])[:])
    data = {
        "random normal": np.random.default_rng(0).normal(size=(rows, 128)).astype(np.float32),
        f"real ({store.feature_names()[0]}, tiled)": np.resize(real, (rows, real.shape[1])),
    }
    writes = []
    for label, values in data.items():
        store_s, numpy_s = time_writes(values, write_table, scratch)
        writes.append(
            {"data": label, "bytes": values.nbytes, "store_s": store_s, "numpy_save_s": numpy_s}
        )
        log(f"write {label}: store {store_s:.2f} s, np.save {numpy_s:.2f} s")
    return {
        "structures": table.n_structures,
        "atoms": table.n_atoms_total,
        "write_rows": rows,
        "extraction": extraction,
        "writes": writes,
    }


def page(results: dict, context: dict) -> str:
    """The markdown page."""
    rates = [
        [r["model"], str(r["workers"]), f"{r['seconds']:.1f}", f"{r['atoms_per_s']:.0f}",
         f"{r['speedup']:.2f}"]
        for r in results["extraction"]
    ]  # fmt: skip
    writes = []
    for w in results["writes"]:
        mib, store_s, numpy_s = w["bytes"] / MIB, w["store_s"], w["numpy_save_s"]
        writes.append(
            [w["data"], f"{mib:.0f}", f"{store_s:.2f}", f"{numpy_s:.2f}", f"{mib / store_s:.0f}",
             f"{mib / numpy_s:.0f}", f"{store_s / numpy_s:.2f}"]
        )  # fmt: skip
    return benchmark_page(
        "Extraction benchmark",
        context,
        [
            f"Structures: {results['structures']} shipped structures, {results['atoms']} atoms "
            "(G2, S22, dcdft, AFLOW prototypes). Wall time includes loading the model on each "
            "worker."
        ],
        [
            markdown_table(["model", "workers", "wall s", "atoms/s", "speed-up"], rates),
            (
                f"Store write overhead, {results['write_rows']} rows, float32:",
                ["data", "MiB", "store s", "np.save s", "store MiB/s", "np.save MiB/s",
                 "store / np.save"],
                writes,
            ),
        ],
    )  # fmt: skip


def model_versions() -> dict:
    """Versions of the model packages and torch, where installed."""
    out = {}
    for name in ("torch", "chgnet", "sevenn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--write-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--max-structures", type=int, help="only the first this many shipped structures (a try)"
    )
    directory_arguments(parser, HERE)
    args = parser.parse_args(argv)

    context = {
        "machine": machine(),
        "versions": versions() | model_versions(),
        "cluster": CLUSTER,
        "load_average": load_average(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    table = StructureTable.from_atoms(shipped_structures()[: args.max_structures])
    args.data_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="fredask-bench-", dir=args.data_dir))
    try:
        results = measure(args, table, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    markdown = page(results, context)
    print(markdown)
    write_results(
        args.results_dir, "extraction", markdown, {"context": context, "results": results}
    )


if __name__ == "__main__":
    main()
