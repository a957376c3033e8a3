"""Benchmark: the local feature reconstruction error (LFRE) against its floor and scikit-matter.

For every requested number of rows N, on the synthetic Zarr v3 store of
``gfre_matrix.py`` (:func:`fredask.bench.data.synthetic_store` under ``--data-dir``,
written when missing), with ``X = features/m0`` and
``Y = features/m1`` (float32, 128 columns, chunks of 32768 rows),
``k = 128`` neighbours, 1000 test rows drawn by
``np.random.default_rng(0).choice(N, 1000, replace=False)`` and the other
``N - 1000`` rows as train rows, this script times

* fredask's :func:`fredask.metrics.local_reconstruction_error` on the Zarr
  arrays, on a ``LocalCluster`` of two single-threaded worker processes, and
  its phases (statistics pass with the test rows, neighbour search, neighbour
  gather feeding the local fits), reported by the ``on_phase`` hook of
  :func:`fredask.measures.local_fit.local_errors` while the public call runs;
* the floor, ``GEMM floor + local-fit floor``:

  - GEMM floor: one pass over the chunks of ``X`` on the same cluster, each
    chunk read, decompressed, cast to float64 and multiplied ``test @ chunk.T``
    (1000 x 128 by 128 x 32768), nothing else (also timed in slices of
    ``fredask.measures.neighbours.BLOCK_ROWS`` rows, as fredask's kernel works, which
    avoids the 256 MiB product and is faster);
  - local-fit floor: :func:`fredask.measures.local_fit.local_fit_errors` alone,
    on the in-memory neighbour arrays of the fredask run (rebuilt from the store
    with the neighbours, centre and scale the hook reports), the
    fastest of one call in this process with the default BLAS threads, the
    same with one BLAS thread, and one call per worker on its share of the
    test rows (arrays already there);

* scikit-matter's ``local_reconstruction_error`` on in-memory float32 arrays
  loaded from the store (not timed), in a spawned child process whose peak
  memory is measured alone (up to ``--skmatter-max`` rows; at 10^6 rows it
  needs about 10 GiB); its value is compared with fredask's.  Up to
  ``--skmatter-float64-max`` rows it is also run on float64 copies, which
  fredask should match to rounding (fredask computes in float64; scikit-matter
  on float32 inputs computes distances and fits in float32).

Peak memory is the resident-set high-water mark (``VmHWM``, reset before each
run, Linux only) of each worker, of this (client) process and of the
scikit-matter child.  Results are printed as a markdown page and written to
``lfre.md`` and ``lfre.json`` in ``--results-dir`` (default ``benchmarks/results``).

Usage::

    .venv/bin/python benchmarks/lfre.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import dask.array as da
import numpy as np

from fredask.bench.data import synthetic_store
from fredask.bench.driver import directory_arguments, log, run_benchmark
from fredask.bench.floors import distance_read_floor, local_fit_floor
from fredask.bench.measure import MIB, directory_bytes, in_child, timed
from fredask.bench.references import skmatter_lfre
from fredask.bench.report import benchmark_page, fmt
from fredask.measures.local_fit import PHASES
from fredask.measures.neighbours import BLOCK_ROWS
from fredask.metrics import local_reconstruction_error
from fredask.solvers.settings import RidgeSettings
from fredask.store.feature_store import group_features

HERE = Path(__file__).resolve().parent
N_TEST = 1000
N_FEATURES = 128
K = N_FEATURES
CHUNK_ROWS = 2**15
SOURCE, TARGET = "m0", "m1"
FLOOR_DEFINITION = (
    "floor = GEMM floor + local-fit floor. GEMM floor: wall time for the 2 workers to make "
    "one pass over the chunks of X (32768 x 128 float32), each read, decompressed, cast to "
    "float64 and multiplied test @ chunk.T (1000 x 128 by 128 x 32768), nothing else. "
    "Local-fit floor: fredask.measures.local_fit.local_fit_errors alone on the in-memory "
    "neighbour arrays (1000 x 128 x 128 float64 per model) of the fredask run, the fastest "
    "of: one call in the client with its default BLAS threads, the same with one BLAS "
    "thread, and one call per worker on its half of the test rows (arrays already on the "
    "worker)."
)


def split_rows(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1000 test rows (seeded draw, in drawn order) and all other rows as train rows."""
    test_idx = np.random.default_rng(0).choice(n_rows, N_TEST, replace=False)
    return test_idx, np.setdiff1d(np.arange(n_rows), test_idx)


def fredask_lfre(client, features: dict, test_idx, train_idx, on_phase=None) -> float:
    """The public call: LFRE of ``m1`` from ``m0`` on the Zarr arrays."""
    return local_reconstruction_error(
        features[SOURCE],
        features[TARGET],
        K,
        test_idx=test_idx,
        train_idx=train_idx,
        client=client,
        on_phase=on_phase,
    )


def neighbour_arrays(details: dict, features: dict, test_idx) -> tuple:
    """The in-memory inputs of the local fits, rebuilt from the store.

    ``(x_neighbours, y_neighbours, x_test, y_test)`` as ``local_errors`` passes
    them to ``local_fit_errors``: scaled with the centre and scale the run
    fitted, neighbours in the run's distance order, test rows in row order.
    """
    centre, scale, rows = details["centre"], details["scale"], details["rows"]
    needed, index = np.unique(rows, return_inverse=True)
    out, start = [], 0
    for name in (SOURCE, TARGET):  # model order = column order of the centre
        array = features[name]
        cols = slice(start, start + array.shape[1])
        start += array.shape[1]
        pool, test = (
            (array.get_orthogonal_selection((r, slice(None))) - centre[cols]) / scale[cols]
            for r in (needed, np.sort(test_idx))
        )
        out.append((pool[index.reshape(rows.shape)], test))
    (x_pool, x_test), (y_pool, y_test) = out
    return x_pool, y_pool, x_test, y_test


def measure_fredask(client, features: dict, test_idx, train_idx) -> dict:
    """The timed public call, its phases (from the hook) and the local-fit floor."""
    phases, details = dict.fromkeys(PHASES, 0.0), {}

    def on_phase(name: str, seconds: float, found: dict) -> None:
        phases[name] += seconds
        details.update(found)

    run = timed(client, lambda: fredask_lfre(client, features, test_idx, train_idx, on_phase))
    phases["rest"] = run.seconds - sum(phases.values())
    arrays = neighbour_arrays(details, features, test_idx)
    floor = local_fit_floor(client, arrays, RidgeSettings(), float(np.finfo(np.float32).eps))
    # the floor's inputs are right if its errors give fredask's LFRE
    difference = abs(floor["local_fit_floor_lfre"] - run.value) / run.value
    if difference > 1e-10:
        log(f"  warning: the local-fit floor's LFRE differs from fredask's by {difference}")
    return {
        "lfre": run.value,
        "run": run.to_dict(),
        "phases_s": phases,
        "compute_by_task_s": run.compute_by_task,
        **floor,
        "local_fit_floor_relative_difference": difference,
    }


def measure_size(client, n_rows: int, args) -> dict:
    """Every measurement for one N, on the same store and split."""
    load_before = os.getloadavg()[0]
    path = synthetic_store(args.data_dir, n_rows, 4, N_FEATURES, CHUNK_ROWS, args.seed)
    features = group_features(path)
    test_idx, train_idx = split_rows(n_rows)
    log(f"N={n_rows:,} (N_train={train_idx.size:,}): store {path.name}")
    rows = min(2 * CHUNK_ROWS, n_rows)  # warm-up: imports and first calls on the workers
    head = {name: da.from_zarr(x)[:rows] for name, x in features.items()}
    head_test = np.random.default_rng(0).choice(rows, 200, replace=False)
    fredask_lfre(client, head, head_test, np.setdiff1d(np.arange(rows), head_test))
    x = da.from_zarr(features[SOURCE])
    test_rows = features[SOURCE].get_orthogonal_selection((np.sort(test_idx), slice(None)))
    gemm = distance_read_floor(client, x, test_rows, None)
    gemm_blocked = distance_read_floor(client, x, test_rows, BLOCK_ROWS)
    log(f"  GEMM floor {gemm.seconds:.2f} s ({gemm_blocked.seconds:.2f} s in slices)")
    fredask = measure_fredask(client, features, test_idx, train_idx)
    phases = ", ".join(f"{k} {v:.2f}" for k, v in fredask["phases_s"].items())
    log(f"  fredask {fredask['run']['seconds']:.2f} s ({phases})")
    skmatter = None
    if n_rows <= args.skmatter_max:
        log("  scikit-matter ...")
        float64 = n_rows <= args.skmatter_float64_max
        skmatter = in_child(
            skmatter_lfre, str(path), SOURCE, TARGET, K, test_idx, train_idx, float64
        )
        if "error" in skmatter:
            log(f"  scikit-matter failed: {skmatter['error']}")
    difference = difference64 = None
    if skmatter and "lfre" in skmatter:
        difference = abs(fredask["lfre"] - skmatter["lfre"]) / abs(skmatter["lfre"])
    if skmatter and "float64_lfre" in skmatter:
        reference = skmatter["float64_lfre"]
        difference64 = abs(fredask["lfre"] - reference) / abs(reference)
    return {
        "n_rows": n_rows,
        "n_train": int(train_idx.size),
        "n_test": int(test_idx.size),
        "k": K,
        "store": path.name,
        "store_bytes": directory_bytes(path),
        "gemm_floor": gemm.to_dict(),
        "gemm_floor_blocked": gemm_blocked.to_dict(),
        "fredask": fredask,
        "skmatter": skmatter,
        "relative_difference": difference,
        "relative_difference_float64": difference64,
        "load_average": load_before,
        "load_average_after": os.getloadavg()[0],
    }


# ------------------------------------------------------------------------- page


def _workers(peaks: dict) -> str:
    return " / ".join(f"{v / MIB:.0f}" for v in sorted(peaks.values()))


def size_row(r: dict) -> list[str]:
    f = r["fredask"]
    total, phases = f["run"]["seconds"], f["phases_s"]
    gemm = r["gemm_floor"]["seconds"]
    sk = r.get("skmatter") or {}
    sk_s = sk.get("seconds")
    difference = r.get("relative_difference")
    return [
        f"{r['n_train']:,}",
        fmt(total),
        fmt(phases[PHASES[1]]),
        fmt(phases[PHASES[2]]),
        fmt(gemm),
        fmt(f["local_fit_floor_s"]),
        fmt(phases[PHASES[1]] / gemm),
        fmt(total / (gemm + f["local_fit_floor_s"])),
        fmt(sk_s, 1) if "error" not in sk else "failed",
        fmt(None if sk_s is None else sk_s / total, 1),
        f"{max(f['run']['worker_peak_rss'].values()) / MIB:.0f}",
        "—" if "peak_rss" not in sk else f"{sk['peak_rss'] / MIB:.0f}",
        "—" if difference is None else f"{difference:.1e}",
    ]


def phase_row(r: dict) -> list[str]:
    f = r["fredask"]
    return [
        f"{r['n_train']:,}",
        fmt(f["run"]["seconds"]),
        *[fmt(f["phases_s"][phase]) for phase in (*PHASES, "rest")],
        fmt(f["run"]["tasks_span_s"]),
        fmt(f["run"]["worker_compute_s"]),
    ]


def task_row(r: dict) -> list[str]:
    tasks = r["fredask"]["compute_by_task_s"]
    text = ", ".join(f"{name} {seconds:.2f}" for name, seconds in tasks.items())
    return [f"{r['n_train']:,}", fmt(r["fredask"]["run"]["worker_compute_s"]), text]


def memory_row(r: dict) -> list[str]:
    f, sk = r["fredask"], r.get("skmatter") or {}
    sk_text = "—"
    if "peak_rss" in sk:
        sk_text = f"{sk['peak_rss'] / MIB:.0f} (baseline {sk['baseline_rss'] / MIB:.0f})"
    return [
        f"{r['n_train']:,}",
        _workers(f["run"]["worker_peak_rss"]),
        f"{f['run']['client_peak_rss'] / MIB:.0f}",
        _workers(r["gemm_floor"]["worker_peak_rss"]),
        sk_text,
    ]


def agreement_row(r: dict) -> list[str]:
    sk = r.get("skmatter") or {}
    difference, difference64 = r.get("relative_difference"), r.get("relative_difference_float64")
    return [
        f"{r['n_train']:,}",
        f"{r['fredask']['lfre']:.15f}",
        "—" if "lfre" not in sk else f"{sk['lfre']:.15f}",
        "—" if difference is None else f"{difference:.2e}",
        "—" if "float64_lfre" not in sk else f"{sk['float64_lfre']:.15f}",
        "—" if difference64 is None else f"{difference64:.2e}",
    ]


def floor_row(r: dict) -> list[str]:
    f = r["fredask"]
    search = f["phases_s"][PHASES[1]]
    gemm, blocked = r["gemm_floor"]["seconds"], r["gemm_floor_blocked"]["seconds"]
    return [
        f"{r['n_train']:,}",
        fmt(search),
        fmt(gemm),
        fmt(blocked),
        fmt(search / gemm),
        fmt(search / blocked),
        fmt(f["phases_s"][PHASES[2]]),
        f"{fmt(f['local_fit_default_threads_s'])} ({f['client_blas_threads']})",
        fmt(f["local_fit_one_thread_s"]),
        fmt(f["local_fit_on_workers_s"]),
    ]


def targets(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        total = r["fredask"]["run"]["seconds"]
        search = r["fredask"]["phases_s"][PHASES[1]]
        line = (
            f"N_train={r['n_train']:,}: neighbour search / GEMM floor "
            f"{search / r['gemm_floor']['seconds']:.2f} (target <= 3)"
        )
        sk = r.get("skmatter") or {}
        if "seconds" in sk:
            wanted = 20 if r["n_train"] >= 500_000 else 5
            line += f", skmatter/fredask {sk['seconds'] / total:.1f} (target >= {wanted})"
        lines.append(line)
    if len(results) > 1:
        low, high = results[0], results[-1]
        peaks = [max(r["fredask"]["run"]["worker_peak_rss"].values()) for r in (high, low)]
        lines.append(
            f"peak worker RSS at N_train={high['n_train']:,} / at N_train={low['n_train']:,}: "
            f"{peaks[0] / peaks[1]:.2f} (target: flat in N_train)"
        )
    return lines


def page(results: list[dict], context: dict) -> str:
    """The whole markdown page."""
    loads = "; ".join(
        f"N_train={r['n_train']:,}: {r['load_average']:.2f} before, "
        f"{r['load_average_after']:.2f} after"
        for r in results
    )
    sections = [
        (
            "",
            ["N_train", "fredask total s", "neighbour search s", "neighbour gather + local fits s",
             "GEMM floor s", "local-fit floor s", "search/GEMM floor", "fredask/floor",
             "skmatter s", "skmatter/fredask", "peak worker RSS MiB", "skmatter peak RSS MiB",
             "relative difference"],
            [size_row(r) for r in results],
        ),
        (
            "fredask phases (wall seconds of the passes local_errors reports to its on_phase "
            "hook; rest = scaling, indexing and the final reduction in the client):",
            ["N_train", "total s", *[f"{phase} s" for phase in PHASES], "rest s",
             "tasks span s", "worker compute s (summed)"],
            [phase_row(r) for r in results],
        ),
        (
            f"Floors: the GEMM floor as defined (whole 32768-row chunk per product, a 1000 x "
            f"32768 float64 result) and in {BLOCK_ROWS}-row slices as fredask's kernel does; "
            "local_fit_errors alone in the client with its default BLAS threads (count in "
            "brackets), with one BLAS thread (threadpoolctl), and split over the 2 workers; "
            "the local-fit floor is the fastest of the three:",
            ["N_train", "neighbour search s", "GEMM floor s",
             f"GEMM floor, {BLOCK_ROWS}-row slices s", "search/GEMM floor",
             "search/sliced GEMM floor", "neighbour gather + local fits in fredask s",
             "local fits, default BLAS threads s", "local fits, 1 BLAS thread s",
             "local fits on 2 workers s"],
            [floor_row(r) for r in results],
        ),
        (
            "Worker compute per task name (task stream of the public call, summed over "
            "workers), s:",
            ["N_train", "total", "per task"],
            [task_row(r) for r in results],
        ),
        (
            "Peak RSS (VmHWM reset before each run), MiB:",
            ["N_train", "fredask worker peaks MiB", "fredask client peak MiB",
             "GEMM floor worker peaks MiB", "skmatter child peak MiB"],
            [memory_row(r) for r in results],
        ),
        (
            "Agreement (scikit-matter computes distances in float32, fredask in float64, so "
            "neighbours at nearly equal distances may differ):",
            ["N_train", "fredask LFRE", "skmatter LFRE", "relative difference",
             "skmatter LFRE on float64 copies", "relative difference (float64)"],
            [agreement_row(r) for r in results],
        ),
    ]  # fmt: skip
    return benchmark_page(
        f"LFRE benchmark ({N_FEATURES} -> {N_FEATURES} float32 features, k = {K}, "
        f"{N_TEST} test rows)",
        context,
        [
            f"1-minute load average per size: {loads}; fredask/*.py sha256 "
            f"{context['fredask_source_sha256']}.",
            "",
            f"Data: X = features/{SOURCE}, Y = features/{TARGET} of the gfre_matrix.py store "
            f"of N rows; test rows: np.random.default_rng(0).choice(N, {N_TEST}, "
            f"replace=False); train rows: the other N - {N_TEST} (so N_train = N - {N_TEST}).",
            f"Definitions: {FLOOR_DEFINITION}",
            "fredask: fredask.metrics.local_reconstruction_error on the Zarr arrays (reading "
            "included); scikit-matter: skmatter.metrics.local_reconstruction_error on float32 "
            "arrays already in memory (load not timed), in a child process with default BLAS "
            "threading. One timing each.",
        ],
        sections,
        targets(results),
    )


def fredask_source_digest() -> str:
    """A short digest of fredask's source files (the working tree changes under way)."""
    digest = hashlib.sha256()
    for path in sorted((HERE.parent / "fredask").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
        help="rows N of the stores (N_train = N - 1000)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument(
        "--skmatter-max", type=int, default=1_000_000,
        help="largest N to run scikit-matter on (about 10 GiB at 10^6 rows)",
    )  # fmt: skip
    parser.add_argument(
        "--skmatter-float64-max", type=int, default=100_000,
        help="largest N to also run scikit-matter on float64 copies (exact cross-check)",
    )  # fmt: skip
    directory_arguments(parser, HERE)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    run_benchmark(
        "lfre",
        args,
        measure_size,
        page,
        fredask_source_sha256=fredask_source_digest(),
    )


if __name__ == "__main__":
    main()
