"""Benchmark: the local feature reconstruction error (LFRE) against its floor and scikit-matter.

For every requested number of rows N, on the synthetic Zarr v3 store of
``gfre_matrix.py`` (``benchmarks/_data/gfre_n{N}_seed{seed}.zarr``, written by
that script's own functions when missing), with ``X = features/m0`` and
``Y = features/m1`` (float32, 128 columns, chunks of 32768 rows),
``k = 128`` neighbours, 1000 test rows drawn by
``np.random.default_rng(0).choice(N, 1000, replace=False)`` and the other
``N - 1000`` rows as train rows, this script times

* fredask's :func:`fredask.metrics.local_reconstruction_error` on the Zarr
  arrays, on a ``LocalCluster`` of two single-threaded worker processes, and
  its phases (statistics pass with the test rows, neighbour search, neighbour
  gather feeding the local fits): the functions
  :func:`fredask.measures.local_fit.local_errors` calls are wrapped with timers in this
  process while the public call runs;
* the floor, ``GEMM floor + local-fit floor``:

  - GEMM floor: one pass over the chunks of ``X`` on the same cluster, each
    chunk read, decompressed, cast to float64 and multiplied ``test @ chunk.T``
    (1000 x 128 by 128 x 32768), nothing else (also timed in slices of
    ``fredask.measures.neighbours.BLOCK_ROWS`` rows, as fredask's kernel works, which
    avoids the 256 MiB product and is faster);
  - local-fit floor: :func:`fredask.local.local_fit_errors` alone, on the
    in-memory neighbour arrays of the fredask run (rebuilt from the store with
    the neighbours, centre and scale the wrapped functions return), the
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
scikit-matter child.  Results are printed as a markdown table and written to
``benchmarks/results/lfre.md`` and ``benchmarks/results/lfre.json``.

Usage::

    .venv/bin/python benchmarks/lfre.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import multiprocessing
import os
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import dask
import dask.array as da
import distributed
import numpy as np
from dask.utils import key_split
from gfre_matrix import (
    CHUNK_ROWS,
    DATA_DIR,
    MIB,
    N_FEATURES,
    Run,
    current_rss,
    directory_size,
    ensure_store,
    log,
    markdown_table,
    open_features,
    peak_rss,
    reset_peak_rss,
    run_benchmark,
    store_path,
    task_activity,
)
from threadpoolctl import threadpool_info, threadpool_limits

import fredask.measures.local_fit
from fredask.measures.neighbours import BLOCK_ROWS
from fredask.metrics import local_reconstruction_error
from fredask.solvers.settings import RidgeSettings

HERE = Path(__file__).resolve().parent
SOURCE, TARGET = "m0", "m1"
N_TEST = 1000
#: Neighbours per test row: min(p, q) as in the paper.
K = N_FEATURES
#: The phases of fredask.measures.local_fit.local_errors, in order.
PHASES = ("statistics and test rows", "neighbour search", "neighbour gather and local fits")
#: The names local_errors calls from fredask.measures.local_fit's namespace that are timed, and
#: fit_scaling, whose result (the train centre and scale) the local-fit floor needs.
#: ``compute`` there runs the first pass (statistics and test rows) and the last
#: (neighbour gather feeding the local fits, as Dask tasks).
WRAPPED = ("nearest_train_rows", "fit_scaling", "compute")


# ------------------------------------------------------------------------- split


def split_rows(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The 1000 test rows (seeded draw, in drawn order) and all other rows as train rows."""
    test_idx = np.random.default_rng(0).choice(n_rows, N_TEST, replace=False)
    train_idx = np.setdiff1d(np.arange(n_rows), test_idx)
    return test_idx, train_idx


# ------------------------------------------------------------------------ timing


def timed_stream(client: distributed.Client, call) -> tuple[Run, object, list[dict]]:
    """Like ``gfre_matrix.timed``, also returning the task stream's records."""
    client.run(reset_peak_rss)
    reset_peak_rss()
    with distributed.get_task_stream(client=client) as stream:
        start = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - start
    span, compute = task_activity(stream.data)
    run = Run(seconds, span, compute, client.run(peak_rss), peak_rss())
    return run, value, stream.data


def compute_by_task(records: list[dict]) -> dict[str, float]:
    """Summed compute seconds of the task stream per task name (key prefix)."""
    totals: dict[str, float] = defaultdict(float)
    for record in records:
        for s in record["startstops"]:
            if s["action"] == "compute":
                totals[key_split(record["key"])] += s["stop"] - s["start"]
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


@contextlib.contextmanager
def phase_timers(calls: list[tuple[str, float, object]]):
    """Wrap the functions of :data:`WRAPPED` that ``fredask.measures.local_fit`` has with timers.

    Every call appends ``(function name, seconds, returned value)`` to ``calls``
    (the values are the in-memory arrays the local-fit floor starts from).  The
    module attributes are restored on exit.
    """
    originals = {
        name: getattr(fredask.measures.local_fit, name)
        for name in WRAPPED
        if hasattr(fredask.measures.local_fit, name)
    }

    def wrap(name, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            value = function(*args, **kwargs)
            calls.append((name, time.perf_counter() - start, value))
            return value

        return wrapper

    for name, function in originals.items():
        setattr(fredask.measures.local_fit, name, wrap(name, function))
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(fredask.measures.local_fit, name, function)


def phase_seconds(calls: list[tuple[str, float, object]]) -> dict[str, float]:
    """Seconds per phase, from the calls in the order ``local_errors`` makes them."""
    phases = dict.fromkeys(PHASES, 0.0)
    passes = [seconds for name, seconds, _ in calls if name == "compute"]
    made = [name for name, _, _ in calls]
    if len(passes) != 2 or "nearest_train_rows" not in made:
        raise RuntimeError(f"local_errors called {made}: update PHASES and WRAPPED")
    phases[PHASES[0]], phases[PHASES[2]] = passes
    phases[PHASES[1]] = sum(s for name, s, _ in calls if name == "nearest_train_rows")
    return phases


# ------------------------------------------------------------------------ local fits


def neighbour_arrays(calls: list[tuple[str, float, object]], features: dict, test_idx) -> tuple:
    """The in-memory inputs of the local fits, rebuilt from the store.

    Returns ``(x_neighbours, y_neighbours, x_test, y_test)`` as ``local_errors``
    passes them to ``local_fit_errors``: scaled with the centre and scale the
    run fitted, neighbours in the run's distance order, test rows in
    increasing row order.
    """
    values = defaultdict(list)
    for name, _, value in calls:
        values[name].append(value)
    [(centre, scale)] = values["fit_scaling"]
    [(_, rows)] = values["nearest_train_rows"]
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


def fredask_source_digest() -> str:
    """A short digest of fredask's source files (the working tree changes under way)."""
    digest = hashlib.sha256()
    for path in sorted((HERE.parent / "fredask").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def blas_threads() -> int:
    """The number of threads BLAS uses in this process by default."""
    return max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1)


def local_fit_floor(client: distributed.Client, arrays: tuple) -> dict:
    """``local_fit_errors`` alone on in-memory arrays: in this process and on the workers.

    In this process: one call with the default BLAS threads and one with one BLAS
    thread.  On the cluster: the test rows cut in one block per worker, each
    block's arrays already on its worker, one single-threaded call per worker.
    The floor is the fastest of the three.
    """
    ridge, eps = RidgeSettings(), float(np.finfo(np.float32).eps)
    reset_peak_rss()
    start = time.perf_counter()
    errors = fredask.local.local_fit_errors(*arrays, ridge, eps)
    default = time.perf_counter() - start
    client_peak = peak_rss()
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        fredask.local.local_fit_errors(*arrays, ridge, eps)
        one = time.perf_counter() - start

    workers = sorted(client.scheduler_info()["workers"])
    blocks = np.array_split(np.arange(arrays[0].shape[0]), len(workers))
    held = [
        client.scatter([a[block] for a in arrays], workers=[worker])
        for block, worker in zip(blocks, workers, strict=True)
    ]
    distributed.wait([f for futures in held for f in futures])
    start = time.perf_counter()
    parts = [
        client.submit(fredask.local.local_fit_errors, *futures, ridge, eps, workers=[w], pure=False)
        for futures, w in zip(held, workers, strict=True)
    ]
    client.gather(parts)
    on_workers = time.perf_counter() - start
    del held, parts
    return {
        "local_fit_floor_s": min(default, one, on_workers),
        "local_fit_default_threads_s": default,
        "local_fit_one_thread_s": one,
        "local_fit_on_workers_s": on_workers,
        "client_blas_threads": blas_threads(),
        "local_fit_client_peak_rss": client_peak,
        "local_fit_floor_lfre": float(np.sqrt(np.mean(errors**2))),
    }


# ----------------------------------------------------------------------- fredask


def fredask_lfre(client, features: dict, test_idx, train_idx) -> float:
    """The public call: LFRE of ``m1`` from ``m0`` on the Zarr arrays."""
    return local_reconstruction_error(
        features[SOURCE],
        features[TARGET],
        K,
        test_idx=test_idx,
        train_idx=train_idx,
        client=client,
    )


def measure_fredask(client: distributed.Client, features: dict, test_idx, train_idx) -> dict:
    """The timed public call, its phases, task stream summary and the local-fit floor."""
    calls: list[tuple[str, float, object]] = []
    with phase_timers(calls):
        run, value, records = timed_stream(
            client, lambda: fredask_lfre(client, features, test_idx, train_idx)
        )
    phases = phase_seconds(calls)
    phases["rest"] = run.seconds - sum(phases.values())
    arrays = neighbour_arrays(calls, features, test_idx)
    del calls
    floor = local_fit_floor(client, arrays)
    # the floor's inputs are right if its errors give fredask's LFRE
    floor_difference = abs(floor["local_fit_floor_lfre"] - value) / value
    if floor_difference > 1e-10:
        log(f"  warning: the local-fit floor's LFRE differs from fredask's by {floor_difference}")
    return {
        "lfre": value,
        "run": asdict(run),
        "phases_s": phases,
        "compute_by_task_s": compute_by_task(records),
        **floor,
        "local_fit_floor_relative_difference": floor_difference,
    }


# ------------------------------------------------------------------------- floor


def _gemm_kernel(block: np.ndarray, test: np.ndarray, block_rows: int | None) -> int:
    """``test @ chunk.T`` in float64 (in slices of ``block_rows`` rows); the row count."""
    rows = block.shape[0]
    step = block_rows or rows
    for lo in range(0, rows, step):
        product = test @ np.asarray(block[lo : lo + step], dtype=np.float64).T
        del product
    return rows


def gemm_floor(client: distributed.Client, array, test_future, block_rows: int | None) -> int:
    """One pass over the chunks of ``array``: read each, multiply ``test @ chunk.T``."""
    kernel = dask.delayed(_gemm_kernel, pure=False)
    blocks = da.from_zarr(array).to_delayed()[:, 0]
    parts = [kernel(block, test_future, block_rows) for block in blocks]
    return sum(client.compute(parts, sync=True))


def measure_gemm_floor(
    client: distributed.Client, features: dict, test_idx, block_rows: int | None
) -> Run:
    """The GEMM floor on the test rows of ``X`` (float64, unscaled: same cost)."""
    test = features[SOURCE].get_orthogonal_selection((np.sort(test_idx), slice(None)))
    [test_future] = client.scatter([test.astype(np.float64)], broadcast=True)
    run, rows, _ = timed_stream(
        client, lambda: gemm_floor(client, features[SOURCE], test_future, block_rows)
    )
    if rows != features[SOURCE].shape[0]:
        raise RuntimeError(f"GEMM floor covered {rows} rows, not {features[SOURCE].shape[0]}")
    return run


def warm_up(client: distributed.Client, features: dict) -> None:
    """Small runs of every timed path, so imports and caches are not timed."""
    rows = 2 * CHUNK_ROWS
    head = {name: da.from_zarr(x)[:rows] for name, x in features.items()}
    test_idx = np.random.default_rng(0).choice(rows, 200, replace=False)
    train_idx = np.setdiff1d(np.arange(rows), test_idx)
    fredask_lfre(client, head, test_idx, train_idx)
    [test_future] = client.scatter([np.zeros((N_TEST, N_FEATURES))], broadcast=True)
    kernel = dask.delayed(_gemm_kernel, pure=False)
    for block_rows in (None, BLOCK_ROWS):
        blocks = head[SOURCE].to_delayed()[:, 0]
        client.compute([kernel(b, test_future, block_rows) for b in blocks], sync=True)


# ---------------------------------------------------------------------- skmatter


def _skmatter_child(path: str, test_idx, train_idx, float64: bool, connection) -> None:
    """In a fresh process: load X and Y, time skmatter's LFRE (then on float64 copies)."""
    import skmatter.metrics

    reset_peak_rss()
    baseline = current_rss()
    start = time.perf_counter()
    features = open_features(Path(path))
    x, y = features[SOURCE][:], features[TARGET][:]
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    value = skmatter.metrics.local_reconstruction_error(x, y, K, test_idx, train_idx)
    seconds = time.perf_counter() - start
    result = {
        "seconds": seconds,
        "load_s": load_s,
        "lfre": float(value),
        "baseline_rss": baseline,
        "peak_rss": peak_rss(),
    }
    if float64:
        x, y = x.astype(np.float64), y.astype(np.float64)
        start = time.perf_counter()
        value = skmatter.metrics.local_reconstruction_error(x, y, K, test_idx, train_idx)
        result["float64_seconds"] = time.perf_counter() - start
        result["float64_lfre"] = float(value)
    connection.send(result)
    connection.close()


def run_skmatter(path: Path, test_idx, train_idx, float64: bool) -> dict:
    """scikit-matter's LFRE in a spawned child (its memory alone); optionally also in float64."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(
        target=_skmatter_child, args=(str(path), test_idx, train_idx, float64, sender)
    )
    child.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        child.join()
        return {"error": f"child exited with code {child.exitcode}"}
    child.join()
    return result


# ------------------------------------------------------------------------- report


FLOOR_DEFINITION = (
    "floor = GEMM floor + local-fit floor. GEMM floor: wall time for the 2 workers to make "
    "one pass over the chunks of X (32768 x 128 float32), each read, decompressed, cast to "
    "float64 and multiplied test @ chunk.T (1000 x 128 by 128 x 32768), nothing else. "
    "Local-fit floor: fredask.local.local_fit_errors alone on the in-memory neighbour arrays "
    "(1000 x 128 x 128 float64 per model) of the fredask run, the fastest of: one call in the "
    "client with its default BLAS threads, the same with one BLAS thread, and one call per "
    "worker on its half of the test rows (arrays already on the worker)."
)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def floor_of(r: dict) -> float:
    return r["gemm_floor"]["seconds"] + r["fredask"]["local_fit_floor_s"]


def size_row(r: dict) -> list[str]:
    """One row of the main table."""
    f = r["fredask"]
    total, phases = f["run"]["seconds"], f["phases_s"]
    gemm = r["gemm_floor"]["seconds"]
    sk = r.get("skmatter") or {}
    sk_s = sk.get("seconds")
    difference = r.get("relative_difference")
    return [
        f"{r['n_train']:,}",
        _fmt(total),
        _fmt(phases["neighbour search"]),
        _fmt(phases[PHASES[2]]),
        _fmt(gemm),
        _fmt(f["local_fit_floor_s"]),
        _fmt(phases["neighbour search"] / gemm),
        _fmt(total / floor_of(r)),
        _fmt(sk_s, 1) if "error" not in sk else "failed",
        _fmt(None if sk_s is None else sk_s / total, 1),
        f"{max(f['run']['worker_peak_rss'].values()) / MIB:.0f}",
        "—" if "peak_rss" not in sk else f"{sk['peak_rss'] / MIB:.0f}",
        "—" if difference is None else f"{difference:.1e}",
    ]


def phase_row(r: dict) -> list[str]:
    """One row of the phase table."""
    f = r["fredask"]
    return [
        f"{r['n_train']:,}",
        _fmt(f["run"]["seconds"]),
        *[_fmt(f["phases_s"][phase]) for phase in (*PHASES, "rest")],
        _fmt(f["run"]["tasks_span_s"]),
        _fmt(f["run"]["worker_compute_s"]),
    ]


def task_row(r: dict) -> list[str]:
    """Summed worker compute per task name, largest first."""
    tasks = r["fredask"]["compute_by_task_s"]
    text = ", ".join(f"{name} {seconds:.2f}" for name, seconds in tasks.items())
    return [f"{r['n_train']:,}", _fmt(r["fredask"]["run"]["worker_compute_s"]), text]


def memory_row(r: dict) -> list[str]:
    """One row of the memory table."""
    f, gemm = r["fredask"], r["gemm_floor"]
    sk = r.get("skmatter") or {}
    sk_text = "—"
    if "peak_rss" in sk:
        sk_text = f"{sk['peak_rss'] / MIB:.0f} (baseline {sk['baseline_rss'] / MIB:.0f})"
    workers = " / ".join(f"{v / MIB:.0f}" for v in sorted(f["run"]["worker_peak_rss"].values()))
    gemm_workers = " / ".join(f"{v / MIB:.0f}" for v in sorted(gemm["worker_peak_rss"].values()))
    return [
        f"{r['n_train']:,}",
        workers,
        f"{f['run']['client_peak_rss'] / MIB:.0f}",
        gemm_workers,
        sk_text,
    ]


def agreement_row(r: dict) -> list[str]:
    """fredask's and scikit-matter's LFRE (float32 inputs, and float64 copies)."""
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
    """Both GEMM floors and the three local-fit timings."""
    f = r["fredask"]
    search = f["phases_s"]["neighbour search"]
    gemm, blocked = r["gemm_floor"]["seconds"], r["gemm_floor_blocked"]["seconds"]
    return [
        f"{r['n_train']:,}",
        _fmt(search),
        _fmt(gemm),
        _fmt(blocked),
        _fmt(search / gemm),
        _fmt(search / blocked),
        _fmt(f["phases_s"][PHASES[2]]),
        f"{_fmt(f['local_fit_default_threads_s'])} ({f['client_blas_threads']})",
        _fmt(f["local_fit_one_thread_s"]),
        _fmt(f["local_fit_on_workers_s"]),
    ]


def targets(results: list[dict]) -> list[str]:
    """The issue's targets, checked against the measurements."""
    lines = []
    for r in results:
        f = r["fredask"]
        total = f["run"]["seconds"]
        search = f["phases_s"]["neighbour search"]
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

        def peak(r: dict) -> float:
            return max(r["fredask"]["run"]["worker_peak_rss"].values())

        lines.append(
            f"peak worker RSS at N_train={high['n_train']:,} / at N_train={low['n_train']:,}: "
            f"{peak(high) / peak(low):.2f} (target: flat in N_train)"
        )
    return lines


def report(results: list[dict], context: dict) -> str:
    """The whole markdown report."""
    machine, versions = context["machine"], context["versions"]
    main_header = [
        "N_train",
        "fredask total s",
        "neighbour search s",
        "neighbour gather + local fits s",
        "GEMM floor s",
        "local-fit floor s",
        "search/GEMM floor",
        "fredask/floor",
        "skmatter s",
        "skmatter/fredask",
        "peak worker RSS MiB",
        "skmatter peak RSS MiB",
        "relative difference",
    ]
    phase_header = [
        "N_train",
        "total s",
        *[f"{phase} s" for phase in PHASES],
        "rest s",
        "tasks span s",
        "worker compute s (summed)",
    ]
    memory_header = [
        "N_train",
        "fredask worker peaks MiB",
        "fredask client peak MiB",
        "GEMM floor worker peaks MiB",
        "skmatter child peak MiB",
    ]
    loads = "; ".join(
        f"N_train={r['n_train']:,}: {r['load_average'][0]:.2f} before, "
        f"{r['load_average_after'][0]:.2f} after"
        for r in results
    )
    lines = [
        f"# LFRE benchmark ({N_FEATURES} -> {N_FEATURES} float32 features, k = {K}, "
        f"{N_TEST} test rows)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), {machine['memory_gib']} GiB, load average "
        f"{machine['load_average_at_start'][0]:.2f} at start; {context['cluster']}.",
        f"1-minute load average per size: {loads}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + "; fredask/*.py "
        f"sha256 {context['fredask_source_sha256']}.",
        "",
        f"Data: X = features/{SOURCE}, Y = features/{TARGET} of the gfre_matrix.py store of N "
        f"rows; test rows: np.random.default_rng(0).choice(N, {N_TEST}, replace=False); train "
        f"rows: the other N - {N_TEST} (so N_train = N - {N_TEST}).",
        f"Definitions: {FLOOR_DEFINITION}",
        "fredask: fredask.metrics.local_reconstruction_error on the Zarr arrays (reading "
        "included); scikit-matter: skmatter.metrics.local_reconstruction_error on float32 "
        "arrays already in memory (load not timed), in a child process with default BLAS "
        "threading. One timing each.",
        "",
        markdown_table(main_header, [size_row(r) for r in results]),
        "",
        "fredask phases (wall seconds of the functions local_errors calls, wrapped with timers; "
        "rest = scaling, indexing and the final reduction in the client):",
        "",
        markdown_table(phase_header, [phase_row(r) for r in results]),
        "",
        f"Floors: the GEMM floor as defined (whole 32768-row chunk per product, a 1000 x 32768 "
        f"float64 result) and in {BLOCK_ROWS}-row slices as fredask's kernel does; "
        "local_fit_errors alone in the client with its default BLAS threads (count in "
        "brackets), with one BLAS thread (threadpoolctl), and split over the 2 workers; the "
        "local-fit floor is the fastest of the three:",
        "",
        markdown_table(
            [
                "N_train",
                "neighbour search s",
                "GEMM floor s",
                f"GEMM floor, {BLOCK_ROWS}-row slices s",
                "search/GEMM floor",
                "search/sliced GEMM floor",
                "neighbour gather + local fits in fredask s",
                "local fits, default BLAS threads s",
                "local fits, 1 BLAS thread s",
                "local fits on 2 workers s",
            ],
            [floor_row(r) for r in results],
        ),
        "",
        "Worker compute per task name (task stream of the public call, summed over workers), s:",
        "",
        markdown_table(["N_train", "total", "per task"], [task_row(r) for r in results]),
        "",
        "Peak RSS (VmHWM reset before each run), MiB:",
        "",
        markdown_table(memory_header, [memory_row(r) for r in results]),
        "",
        "Agreement (scikit-matter computes distances in float32, fredask in float64, so "
        "neighbours at nearly equal distances may differ):",
        "",
        markdown_table(
            [
                "N_train",
                "fredask LFRE",
                "skmatter LFRE",
                "relative difference",
                "skmatter LFRE on float64 copies",
                "relative difference (float64)",
            ],
            [agreement_row(r) for r in results],
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


# -------------------------------------------------------------------------- main


def benchmark_size(client: distributed.Client, n_rows: int, args) -> dict:
    """Every measurement for one N, on the same store and split."""
    load_before = [round(x, 2) for x in os.getloadavg()]
    path, generate_s = ensure_store(n_rows, args.seed)
    written = "reused" if generate_s is None else f"written in {generate_s:.1f} s"
    features = open_features(path)
    test_idx, train_idx = split_rows(n_rows)
    log(f"N={n_rows:,} (N_train={train_idx.size:,}): store {path.name} {written}")
    warm_up(client, features)
    gemm = measure_gemm_floor(client, features, test_idx, None)
    gemm_blocked = measure_gemm_floor(client, features, test_idx, BLOCK_ROWS)
    blocked = f"{gemm_blocked.seconds:.2f} s in {BLOCK_ROWS}-row slices"
    log(f"  GEMM floor {gemm.seconds:.2f} s ({blocked})")
    fredask_result = measure_fredask(client, features, test_idx, train_idx)
    phases = ", ".join(f"{k} {v:.2f}" for k, v in fredask_result["phases_s"].items())
    log(f"  fredask {fredask_result['run']['seconds']:.2f} s ({phases})")
    log(f"  local-fit floor {fredask_result['local_fit_floor_s']:.2f} s")
    skmatter = None
    if n_rows <= args.skmatter_max:
        log("  scikit-matter ...")
        float64 = n_rows <= args.skmatter_float64_max
        skmatter = run_skmatter(path, test_idx, train_idx, float64)
        if "error" in skmatter:
            log(f"  scikit-matter failed: {skmatter['error']}")
        else:
            log(f"  scikit-matter {skmatter['seconds']:.1f} s")
    difference = difference64 = None
    if skmatter and "lfre" in skmatter:
        difference = abs(fredask_result["lfre"] - skmatter["lfre"]) / abs(skmatter["lfre"])
        log(f"  LFRE fredask {fredask_result['lfre']:.10f}, skmatter {skmatter['lfre']:.10f}")
    if skmatter and "float64_lfre" in skmatter:
        reference = skmatter["float64_lfre"]
        difference64 = abs(fredask_result["lfre"] - reference) / abs(reference)
        log(f"  skmatter on float64 inputs {reference:.15f} ({skmatter['float64_seconds']:.1f} s)")
    return {
        "n_rows": n_rows,
        "n_train": int(train_idx.size),
        "n_test": int(test_idx.size),
        "k": K,
        "store": str(path.relative_to(HERE)),
        "store_bytes": directory_size(path),
        "generate_s": generate_s,
        "gemm_floor": asdict(gemm),
        "gemm_floor_blocked": asdict(gemm_blocked),
        "fredask": fredask_result,
        "skmatter": skmatter,
        "relative_difference": difference,
        "relative_difference_float64": difference64,
        "load_average": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000],
        help="rows N of the stores (N_train = N - 1000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument(
        "--skmatter-max",
        type=int,
        default=1_000_000,
        help="largest N to run scikit-matter on (about 10 GiB at 10^6 rows)",
    )
    parser.add_argument(
        "--skmatter-float64-max",
        type=int,
        default=100_000,
        help="largest N to also run scikit-matter on float64 copies (exact cross-check)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    run_benchmark(
        args,
        benchmark_size,
        report,
        {store_path(n, args.seed).resolve() for n in args.sizes},
        name="lfre",
        fredask_source_sha256=fredask_source_digest(),
    )


if __name__ == "__main__":
    main()
