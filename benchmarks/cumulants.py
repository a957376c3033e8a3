"""Benchmark: per-structure cumulants (order 8) of fredask against the paper's loop and the floor.

For every requested number of structures S (8 to 64 atoms each, uniform, seed 0),
on one synthetic fredask store of 128 float32 features per atom
(``cumulants_s{S}_seed{seed}.zarr`` in ``--data-dir``, default ``benchmarks/_data``,
written by :func:`fredask.store.datasets.write_structure_store` with chunks of
32768 rows, made once and reused), this script times, on a ``LocalCluster`` of two
single-threaded worker processes (:func:`fredask.bench.driver.run_benchmark`):

* the floor: reading and decompressing every chunk of the features once (a
  per-chunk sum, :func:`fredask.bench.floors.read_floor`, as ``gfre_matrix.py``'s
  read floor), the faster of two reads: one task per storage chunk, and tasks
  of several storage chunks as fredask reads them
  (:func:`fredask.stats.features.from_zarr_in_tasks`);
* fredask, compute: ``structure_cumulants(features, n_atoms)`` on the stored
  Zarr array, reduced on the cluster to one number (every structure's
  8 x 128 cumulants computed, nothing gathered);
* fredask, store: :func:`fredask.structure.stored.write_cumulants`, the
  real job: the same plus writing the ``(S, 1024)`` float64 array into the
  store (``fredask cumulants``);
* the paper's loop (:func:`fredask.bench.references.paper_cumulant_loop`), in a
  spawned child process on the features loaded into memory (loading not
  timed): for each structure, its block cast to float64,
  ``scipy.stats.moment(block, order=j, axis=0)`` for j = 2..8, docs/method.md's
  explicit cumulant formulas, root scaling, concatenation.  Structures are
  taken in a fixed random order (seed 0); when the loop would run longer than
  ``--loop-budget`` seconds, only the structures done by then are timed and
  the total is extrapolated linearly (marked in the table).  Its results for
  the first 500 of those structures are compared with the stored fredask ones.

Peak memory is the resident-set high-water mark (``VmHWM``, reset before each
run, Linux only) of each worker, of this process and of the loop's child.
Timings are the best of ``--repeats``; the load average is recorded before and
after each size, since the machine may be shared.

Results: a markdown report on stdout, also written to ``cumulants.md`` in
``--results-dir`` (default ``benchmarks/results``), raw numbers in ``cumulants.json``.

Usage::

    .venv/bin/python benchmarks/cumulants.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import dask.array as da
import numpy as np
import scipy
import zarr

from fredask.bench.driver import directory_arguments, log, run_benchmark
from fredask.bench.floors import read_all, read_floor
from fredask.bench.measure import MIB, directory_bytes, in_child, timed, versions
from fredask.bench.references import paper_cumulant_loop
from fredask.bench.report import benchmark_page, fmt, table
from fredask.stats.features import from_zarr_in_tasks
from fredask.store import FeatureStore
from fredask.store.datasets import write_structure_store
from fredask.structure.cumulants import structure_cumulants
from fredask.structure.stored import write_cumulants

HERE = Path(__file__).resolve().parent
N_FEATURES = 128
ORDER = 8
ATOMS = (8, 64)
MODEL = "m0"
CHUNK_ROWS = 2**15
#: Structures whose loop results are compared with fredask's.
N_COMPARED = 500
GENERATOR_VERSION = 1


# -------------------------------------------------------------------------- data


def store_path(data_dir: Path, n_structures: int, seed: int) -> Path:
    return Path(data_dir) / f"cumulants_s{n_structures}_seed{seed}.zarr"


def structure_sizes(n_structures: int, seed: int) -> np.ndarray:
    """Atoms of each structure: uniform in 8..64."""
    return np.random.default_rng(seed).integers(ATOMS[0], ATOMS[1] + 1, size=n_structures)


def ensure_store(data_dir: Path, n_structures: int, seed: int) -> FeatureStore:
    """The benchmark store, written unless a complete one with the same parameters exists."""
    path = store_path(data_dir, n_structures, seed)
    marker = {"n_structures": n_structures, "seed": seed, "version": GENERATOR_VERSION}
    if path.exists():
        try:
            store = FeatureStore.open(path, mode="a")
            if store.attrs.get("cumulants_benchmark") == marker:
                return store
        except ValueError:
            pass
    log(f"writing {path} ...")
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    store = write_structure_store(
        path,
        structure_sizes(n_structures, seed),
        models=(MODEL,),
        n_features=N_FEATURES,
        chunk_rows=CHUNK_ROWS,
        seed=seed,
    )
    store.attrs["cumulants_benchmark"] = marker
    log(f"  {store.n_atoms:,} atoms in {time.perf_counter() - start:.1f} s")
    return store


def other_stores(data_dir: Path, used: set[Path]) -> dict[str, int]:
    """Sizes of the stores in ``data_dir`` that this run does not use (kept)."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        return {}
    return {
        p.name: directory_bytes(p)
        for p in sorted(data_dir.glob("*.zarr"))
        if p.resolve() not in used
    }


# --------------------------------------------------------------------- fredask


def fredask_compute(store: FeatureStore) -> float:
    """Every structure's cumulants computed on the cluster, reduced to one number."""
    n_atoms = store.n_atoms_per_structure()
    cumulants = structure_cumulants(store.features(MODEL), n_atoms, order=ORDER)
    return float(cumulants[:, 0].sum().compute())  # every block computed, one number back


def fredask_store(store: FeatureStore, client) -> zarr.Array:
    """``fredask cumulants``: computed and written into the store."""
    return write_cumulants(store, MODEL, ORDER, client=client, overwrite=True)


def warm_up(client, store: FeatureStore) -> None:
    """Imports and first calls on the workers, on the first two chunks' whole structures."""
    n_atoms = store.n_atoms_per_structure()
    keep = int(np.searchsorted(np.cumsum(n_atoms), 2 * CHUNK_ROWS, side="right"))
    head = da.from_zarr(store.features(MODEL))[: int(n_atoms[:keep].sum())]
    structure_cumulants(head, n_atoms[:keep], order=ORDER)[:, 0].sum().compute()
    read_all([da.from_zarr(store.features(MODEL))], client)


def agreement(stored: zarr.Array, loop: dict) -> dict:
    """Largest differences of fredask's stored cumulants from the loop's."""
    rows = np.array(loop.pop("compared_structures"))
    theirs = loop.pop("compared_values")
    ours = stored.get_orthogonal_selection((rows, slice(None)))
    diff = np.abs(ours - theirs)
    scale = np.abs(theirs).max(axis=0)
    return {
        "structures": int(rows.size),
        "max_abs_diff": float(diff.max()),
        "max_diff_over_column_scale": float((diff / np.where(scale > 0, scale, 1)).max()),
    }


def load_averages() -> list[float]:
    """The 1, 5 and 15 minute load averages, as the committed results record them."""
    return [round(x, 2) for x in os.getloadavg()]


def measure_size(client, n_structures: int, args) -> dict:
    """Every measurement for one S, on the same store."""
    store = ensure_store(args.data_dir, n_structures, args.seed)
    load_before = load_averages()
    log(f"S={n_structures:,}: warm-up")
    warm_up(client, store)
    log("  floor (read once)")
    per_chunk = read_floor([da.from_zarr(store.features(MODEL))], client, args.repeats)
    in_tasks = read_floor([from_zarr_in_tasks(store.features(MODEL))], client, args.repeats)
    floor = min(per_chunk, in_tasks, key=lambda run: run.seconds)
    log("  fredask compute")
    compute_run = timed(client, lambda: fredask_compute(store), args.repeats)
    log("  fredask compute + write")
    store_run = timed(client, lambda: fredask_store(store, client), args.repeats)
    log(f"  paper loop (budget {args.loop_budget:.0f} s)")
    loop = in_child(
        paper_cumulant_loop, str(store.path), MODEL, args.seed, args.loop_budget, ORDER, N_COMPARED
    )
    match = agreement(store_run.value, loop) if "error" not in loop else None
    return {
        "n_structures": n_structures,
        "n_atoms": store.n_atoms,
        "features_bytes": store.n_atoms * N_FEATURES * 4,
        "store_bytes": directory_bytes(store.path / "features" / MODEL),
        "cumulants_bytes": directory_bytes(store.path / "structure_features" / MODEL),
        "floor": floor.to_dict(),
        "read_per_storage_chunk": per_chunk.to_dict(),
        "read_in_tasks": in_tasks.to_dict(),
        "fredask_compute": compute_run.to_dict(),
        "fredask_store": store_run.to_dict(),
        "checksum": compute_run.value,
        "loop": loop,
        "agreement": match,
        "load_average": load_before,
        "load_average_after": load_averages(),
    }


# ----------------------------------------------------------------------- report


def _mib(values) -> str:
    values = list(values.values()) if isinstance(values, dict) else [values]
    return " / ".join(f"{v / MIB:.0f}" for v in values)


def main_row(r: dict) -> list[str]:
    floor = r["floor"]["seconds"]
    compute, store = r["fredask_compute"]["seconds"], r["fredask_store"]["seconds"]
    loop = r["loop"].get("total_s")
    marker = "*" if r["loop"].get("extrapolated") else ""
    return [
        f"{r['n_structures']:,}",
        f"{r['n_atoms']:,}",
        f"{r['features_bytes'] / MIB:.0f} MiB",
        f"{fmt(r['read_per_storage_chunk']['seconds'])} / {fmt(r['read_in_tasks']['seconds'])}",
        fmt(floor),
        fmt(compute),
        fmt(store),
        fmt(compute / floor),
        fmt(store / floor),
        "—" if loop is None else f"{loop:.1f}{marker}",
        fmt(None if loop is None else loop / store, 0),
        fmt(None if loop is None else loop / compute, 0),
        _mib(max(r["fredask_store"]["worker_peak_rss"].values())),
        f"{r['load_average'][0]:.2f} / {r['load_average_after'][0]:.2f}",
    ]


def memory_row(r: dict) -> list[str]:
    loop = r["loop"]
    return [
        f"{r['n_structures']:,}",
        _mib(r["floor"]["worker_peak_rss"]),
        _mib(r["fredask_compute"]["worker_peak_rss"]),
        _mib(r["fredask_store"]["worker_peak_rss"]),
        _mib(r["fredask_store"]["client_peak_rss"]),
        "—" if "peak_rss" not in loop else _mib(loop["peak_rss"]),
    ]


def detail_row(r: dict) -> list[str]:
    loop, match = r["loop"], r["agreement"] or {}
    return [
        f"{r['n_structures']:,}",
        fmt(r["fredask_store"]["tasks_span_s"]),
        fmt(r["fredask_store"]["worker_compute_s"]),
        f"{r['cumulants_bytes'] / MIB:.0f} MiB",
        f"{loop.get('structures_timed', 0):,} in {loop.get('seconds_timed', 0):.1f} s",
        f"{loop.get('load_s', 0):.1f}",
        f"{match.get('max_abs_diff', float('nan')):.1e}",
        f"{match.get('max_diff_over_column_scale', float('nan')):.1e}",
    ]


def targets(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        floor, store = r["floor"]["seconds"], r["fredask_store"]["seconds"]
        compute, loop = r["fredask_compute"]["seconds"], r["loop"].get("total_s")
        line = (
            f"S={r['n_structures']:,}: store/floor {store / floor:.2f}, compute/floor "
            f"{compute / floor:.2f} (target <= 2)"
        )
        if loop is not None:
            line += f"; loop/compute {loop / compute:.0f}, loop/store {loop / store:.0f}"
            line += " (target >= 50)"
        lines.append(line)
    if len(results) > 1:
        small, large = results[0], results[-1]

        def peak(r: dict) -> float:
            return max(r["fredask_store"]["worker_peak_rss"].values())

        growth = large["n_structures"] / small["n_structures"]
        lines.append(
            f"peak worker RSS at S={large['n_structures']:,} / at S={small['n_structures']:,}: "
            f"{peak(large) / peak(small):.2f} for {growth:.0f}x the structures (target: flat)"
        )
    return lines


def page(results: list[dict], context: dict) -> str:
    """The whole markdown page."""
    args = context["args"]
    sections = [
        table(
            ["structures", "atoms", "features", "read s: storage chunks / tasks", "floor s",
             "fredask compute s", "fredask store s", "compute / floor", "store / floor",
             "paper loop s", "loop / store", "loop / compute", "peak worker RSS MiB",
             "load avg before / after"],
            [main_row(r) for r in results],
        ),
    ]  # fmt: skip
    if any(r["loop"].get("extrapolated") for r in results):
        sections.append(
            f"\\* extrapolated: the loop was stopped after {args['loop_budget']:.0f} s "
            "on a fixed random subset of structures (seed 0) and its time scaled linearly "
            "to all structures."
        )
    sections += [
        (
            "Peak RSS (VmHWM reset before each run), MiB (workers w0 / w1):",
            ["structures", "floor workers", "compute workers", "store workers", "store client",
             "loop child"],
            [memory_row(r) for r in results],
        ),
        (
            "Details and agreement (fredask's stored cumulants vs the loop's, "
            f"first {N_COMPARED} timed structures):",
            ["structures", "store: tasks span s", "store: worker compute s",
             "cumulants in store", "loop timed", "loop load s", "max abs diff",
             "max diff / column max"],
            [detail_row(r) for r in results],
        ),
    ]  # fmt: skip
    definitions = [
        "Floor: read and decompress every chunk of the features once on the cluster, the "
        "faster of one task per storage chunk and fredask's read tasks (64 MiB). "
        "fredask compute: all cumulants computed on the cluster and reduced to one number. "
        "fredask store: `fredask cumulants` (computed and written into the store as float64). "
        "Paper loop: per structure, scipy.stats.moment for orders 2..8 and the formulas of "
        "docs/method.md, in one process on features already in memory (load not timed). "
        f"Timings: best of {args['repeats']}. Shared machine: the load average before/after "
        "each size is in the table."
    ]
    markdown = benchmark_page(
        f"Structure cumulants benchmark (order {ORDER}, {N_FEATURES} float32 features, "
        f"{ATOMS[0]} to {ATOMS[1]} atoms per structure)",
        context,
        definitions,
        sections,
        targets(results),
    )
    if context["other_stores"]:
        kept = ", ".join(f"{k} ({v / MIB:.0f} MiB)" for k, v in context["other_stores"].items())
        markdown += f"\nOther stores kept in {Path(args['data_dir']).name}/: {kept}.\n"
    return markdown


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many runs")
    parser.add_argument(
        "--loop-budget",
        type=float,
        default=300.0,
        help="seconds of the paper loop per size before extrapolating",
    )
    directory_arguments(parser, HERE)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    used = {store_path(args.data_dir, n, args.seed).resolve() for n in args.sizes}
    run_benchmark(
        "cumulants",
        args,
        measure_size,
        page,
        versions=versions() | {"scipy": scipy.__version__},
        other_stores=other_stores(args.data_dir, used),
    )


if __name__ == "__main__":
    main()
