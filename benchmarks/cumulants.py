"""Benchmark: per-structure cumulants (order 8) of fredask against the paper's loop and the floor.

For every requested number of structures S (8 to 64 atoms each, uniform, seed 0),
on one synthetic fredask store of 128 float32 features per atom
(``benchmarks/_data/cumulants_s{S}_seed{seed}.zarr``, written by
:func:`fredask.store.datasets.write_structure_store` with chunks of 32768 rows, made
once and reused), this script times, on a ``LocalCluster`` of two
single-threaded worker processes:

* the floor: reading and decompressing every chunk of the features once (a
  per-chunk sum, as ``gfre_matrix.py``'s read floor), the faster of two reads:
  one task per storage chunk, and tasks of several storage chunks as fredask
  reads them (:func:`fredask.stats.features.from_zarr_in_tasks`);
* fredask, compute: ``structure_cumulants(features, n_atoms)`` on the stored
  Zarr array, reduced on the cluster to one number (every structure's
  8 x 128 cumulants computed, nothing gathered);
* fredask, store: :func:`fredask.structure.stored.write_cumulants`, the
  real job: the same plus writing the ``(S, 1024)`` float64 array into the
  store (``fredask cumulants``);
* the paper's loop, in a spawned child process on the features loaded into
  memory (loading not timed): for each structure, its block cast to float64,
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

Results: a markdown report on stdout, also written to
``benchmarks/results/cumulants.md``, raw numbers in ``benchmarks/results/cumulants.json``.

Usage::

    .venv/bin/python benchmarks/cumulants.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from dataclasses import asdict
from pathlib import Path

import dask.array as da
import distributed
import numpy as np
import scipy
import scipy.stats
import zarr
from gfre_matrix import (
    CHUNK_ROWS,
    DATA_DIR,
    MIB,
    best_of,
    current_rss,
    directory_size,
    library_versions,
    log,
    markdown_table,
    peak_rss,
    read_all,
    reset_peak_rss,
    run_benchmark,
)

from fredask.stats.features import from_zarr_in_tasks
from fredask.store import FeatureStore
from fredask.store.datasets import write_structure_store
from fredask.structure.cumulants import structure_cumulants
from fredask.structure.stored import write_cumulants

N_FEATURES = 128
ORDER = 8
ATOMS = (8, 64)
MODEL = "m0"
#: Structures whose loop results are compared with fredask's.
N_COMPARED = 500
GENERATOR_VERSION = 1


# -------------------------------------------------------------------------- data


def store_path(n_structures: int, seed: int) -> Path:
    return DATA_DIR / f"cumulants_s{n_structures}_seed{seed}.zarr"


def structure_sizes(n_structures: int, seed: int) -> np.ndarray:
    """Atoms of each structure: uniform in 8..64."""
    return np.random.default_rng(seed).integers(ATOMS[0], ATOMS[1] + 1, size=n_structures)


def ensure_store(n_structures: int, seed: int) -> FeatureStore:
    """The benchmark store, written unless a complete one with the same parameters exists."""
    path = store_path(n_structures, seed)
    marker = {"n_structures": n_structures, "seed": seed, "version": GENERATOR_VERSION}
    if path.exists():
        try:
            store = FeatureStore.open(path, mode="a")
            if store.attrs.get("cumulants_benchmark") == marker:
                return store
        except ValueError:
            pass
    log(f"writing {path} ...")
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


# --------------------------------------------------------------------- fredask


def fredask_compute(store: FeatureStore) -> float:
    """Every structure's cumulants computed on the cluster, reduced to one number."""
    n_atoms = store.structures()["n_atoms"].to_numpy()
    cumulants = structure_cumulants(store.features(MODEL), n_atoms, order=ORDER)
    return float(cumulants[:, 0].sum().compute())  # every block computed, one number back


def read_in_tasks(store: FeatureStore) -> None:
    """The read floor in fredask's read tasks (several storage chunks each)."""
    from_zarr_in_tasks(store.features(MODEL)).sum().compute()


def fredask_store(store: FeatureStore, client: distributed.Client) -> zarr.Array:
    """``fredask cumulants``: computed and written into the store."""
    return write_cumulants(store, MODEL, ORDER, client=client, overwrite=True)


def warm_up(client: distributed.Client, store: FeatureStore) -> None:
    """Imports and first calls on the workers, on the first two chunks' whole structures."""
    n_atoms = store.structures()["n_atoms"].to_numpy()
    keep = int(np.searchsorted(np.cumsum(n_atoms), 2 * CHUNK_ROWS, side="right"))
    head = da.from_zarr(store.features(MODEL))[: int(n_atoms[:keep].sum())]
    structure_cumulants(head, n_atoms[:keep], order=ORDER)[:, 0].sum().compute()
    read_all({MODEL: store.features(MODEL)})


# -------------------------------------------------------------------- the loop


def paper_cumulants(block: np.ndarray) -> np.ndarray:
    """One structure as the paper's script does it: scipy moments, explicit formulas."""
    mu = {j: scipy.stats.moment(block, order=j, axis=0) for j in range(2, ORDER + 1)}
    kappa = {
        2: mu[2],
        3: mu[3],
        4: mu[4] - 3 * mu[2] ** 2,
        5: mu[5] - 10 * mu[2] * mu[3],
        6: mu[6] - 15 * mu[2] * mu[4] - 10 * mu[3] ** 2 + 30 * mu[2] ** 3,
        7: mu[7] - 21 * mu[2] * mu[5] - 35 * mu[3] * mu[4] + 210 * mu[2] ** 2 * mu[3],
        8: mu[8] - 28 * mu[2] * mu[6] - 56 * mu[3] * mu[5] - 35 * mu[4] ** 2
        + 420 * mu[2] ** 2 * mu[4] + 560 * mu[2] * mu[3] ** 2 - 630 * mu[2] ** 4,
    }  # fmt: skip
    scaled = [np.sign(kappa[j]) * np.abs(kappa[j]) ** (1 / j) for j in range(2, ORDER + 1)]
    return np.concatenate([block.mean(axis=0), *scaled])


def _loop_child(path: str, seed: int, budget_s: float, connection) -> None:
    """In a fresh process: load the features, run the loop over structures in a fixed order."""
    reset_peak_rss()
    baseline = current_rss()
    store = FeatureStore.open(path)
    start = time.perf_counter()
    features = store.features(MODEL)[:]
    n_atoms = store.structures()["n_atoms"].to_numpy()
    load_s = time.perf_counter() - start
    offset = np.cumsum(n_atoms) - n_atoms
    order = np.random.default_rng(seed).permutation(n_atoms.size)
    compared = []
    start = time.perf_counter()
    done = 0
    for s in order:
        block = features[offset[s] : offset[s] + n_atoms[s]].astype(np.float64)
        values = paper_cumulants(block)
        if done < N_COMPARED:
            compared.append(values)
        done += 1
        if done % 256 == 0 and time.perf_counter() - start > budget_s:
            break
    seconds = time.perf_counter() - start
    connection.send(
        {
            "load_s": load_s,
            "seconds_timed": seconds,
            "structures_timed": done,
            "compared_structures": order[: len(compared)].tolist(),
            "compared_values": np.array(compared),
            "baseline_rss": baseline,
            "peak_rss": peak_rss(),
        }
    )
    connection.close()


def run_loop(path: Path, seed: int, budget_s: float) -> dict:
    """The paper's loop in a spawned child; the total extrapolated if it was cut."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_loop_child, args=(str(path), seed, budget_s, sender))
    child.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        child.join()
        return {"error": f"child exited with code {child.exitcode}"}
    child.join()
    n_structures = FeatureStore.open(path).n_structures
    result["extrapolated"] = result["structures_timed"] < n_structures
    result["total_s"] = result["seconds_timed"] / result["structures_timed"] * n_structures
    return result


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


# ------------------------------------------------------------------------ sizes


def benchmark_size(client: distributed.Client, n_structures: int, args) -> dict:
    store = ensure_store(n_structures, args.seed)
    load_before = [round(x, 2) for x in os.getloadavg()]
    log(f"S={n_structures:,}: warm-up")
    warm_up(client, store)
    log("  floor (read once)")
    per_chunk, _ = best_of(client, lambda: read_all({MODEL: store.features(MODEL)}), args.repeats)
    in_tasks, _ = best_of(client, lambda: read_in_tasks(store), args.repeats)
    floor = min(per_chunk, in_tasks, key=lambda run: run.seconds)
    log("  fredask compute")
    compute_run, total = best_of(client, lambda: fredask_compute(store), args.repeats)
    log("  fredask compute + write")
    store_run, stored = best_of(client, lambda: fredask_store(store, client), args.repeats)
    log(f"  paper loop (budget {args.loop_budget:.0f} s)")
    loop = run_loop(store.path, args.seed, args.loop_budget)
    match = agreement(stored, loop) if "error" not in loop else None
    return {
        "n_structures": n_structures,
        "n_atoms": store.n_atoms,
        "features_bytes": store.n_atoms * N_FEATURES * 4,
        "store_bytes": directory_size(store.path / "features" / MODEL),
        "cumulants_bytes": directory_size(store.path / "structure_features" / MODEL),
        "floor": asdict(floor),
        "read_per_storage_chunk": asdict(per_chunk),
        "read_in_tasks": asdict(in_tasks),
        "fredask_compute": asdict(compute_run),
        "fredask_store": asdict(store_run),
        "checksum": total,
        "loop": loop,
        "agreement": match,
        "load_average": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
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
        f"{r['read_per_storage_chunk']['seconds']:.2f} / {r['read_in_tasks']['seconds']:.2f}",
        f"{floor:.2f}",
        f"{compute:.2f}",
        f"{store:.2f}",
        f"{compute / floor:.2f}",
        f"{store / floor:.2f}",
        "—" if loop is None else f"{loop:.1f}{marker}",
        "—" if loop is None else f"{loop / store:.0f}",
        "—" if loop is None else f"{loop / compute:.0f}",
        f"{max(r['fredask_store']['worker_peak_rss'].values()) / MIB:.0f}",
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
        f"{r['fredask_store']['tasks_span_s']:.2f}",
        f"{r['fredask_store']['worker_compute_s']:.2f}",
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


def report(results: list[dict], context: dict) -> str:
    machine, versions = context["machine"], context["versions"]
    lines = [
        f"# Structure cumulants benchmark (order {ORDER}, {N_FEATURES} float32 features, "
        f"{ATOMS[0]} to {ATOMS[1]} atoms per structure)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} "
        f"usable), {machine['memory_gib']} GiB, load average "
        f"{machine['load_average_at_start'][0]:.2f} at start (shared machine: the load before/"
        f"after each size is in the table); {context['cluster']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        "Floor: read and decompress every chunk of the features once on the cluster, the "
        "faster of one task per storage chunk and fredask's read tasks (64 MiB). "
        "fredask compute: all cumulants computed on the cluster and reduced to one number. "
        "fredask store: `fredask cumulants` (computed and written into the store as float64). "
        "Paper loop: per structure, scipy.stats.moment for orders 2..8 and the formulas of "
        "docs/method.md, "
        "in one process on features already in memory (load not timed). "
        f"Timings: best of {context['args']['repeats']}.",
        "",
        markdown_table(
            [
                "structures",
                "atoms",
                "features",
                "read s: storage chunks / tasks",
                "floor s",
                "fredask compute s",
                "fredask store s",
                "compute / floor",
                "store / floor",
                "paper loop s",
                "loop / store",
                "loop / compute",
                "peak worker RSS MiB",
                "load avg before / after",
            ],
            [main_row(r) for r in results],
        ),
        "",
    ]
    if any(r["loop"].get("extrapolated") for r in results):
        lines += [
            f"\\* extrapolated: the loop was stopped after {context['args']['loop_budget']:.0f} s "
            "on a fixed random subset of structures (seed 0) and its time scaled linearly "
            "to all structures.",
            "",
        ]
    lines += [
        "Peak RSS (VmHWM reset before each run), MiB (workers w0 / w1):",
        "",
        markdown_table(
            [
                "structures",
                "floor workers",
                "compute workers",
                "store workers",
                "store client",
                "loop child",
            ],
            [memory_row(r) for r in results],
        ),
        "",
        "Details and agreement (fredask's stored cumulants vs the loop's, "
        f"first {N_COMPARED} timed structures):",
        "",
        markdown_table(
            [
                "structures",
                "store: tasks span s",
                "store: worker compute s",
                "cumulants in store",
                "loop timed",
                "loop load s",
                "max abs diff",
                "max diff / column max",
            ],
            [detail_row(r) for r in results],
        ),
        "",
        "Targets:",
        "",
        *[f"- {line}" for line in targets(results)],
    ]
    if context["other_stores"]:
        kept = ", ".join(f"{k} ({v / MIB:.0f} MiB)" for k, v in context["other_stores"].items())
        lines += ["", f"Other stores kept in {DATA_DIR.name}/: {kept}."]
    return "\n".join(lines) + "\n"


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
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    run_benchmark(
        args,
        benchmark_size,
        report,
        {store_path(n, args.seed).resolve() for n in args.sizes},
        name="cumulants",
        versions={**library_versions(), "scipy": scipy.__version__},
    )


if __name__ == "__main__":
    main()
