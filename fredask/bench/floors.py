"""Floors: what no method can avoid, measured on the same cluster as the thing timed.

A floor is the read of the inputs plus the dense products the computation
cannot do without, so ``time / floor`` says how much a stage spends beyond
them:

* :func:`read_floor`: read and decompress every chunk of the inputs once (a
  per-chunk sum forces each read);
* :func:`gram_floor`: the Gram ``sum_c Z_c^T Z_c`` of the concatenated
  columns, over ``n_rows`` rows in blocks of ``chunk_rows``, from a block every
  worker already holds (no I/O);
* :func:`distance_floor`: the test x train product ``test @ block.T`` of the
  LFRE's neighbour search over every train row, from held blocks, and
  :func:`distance_read_floor`, the same reading and casting the stored chunks;
* :func:`local_fit_floor`: the LFRE's local fits alone, on arrays in memory.
"""

from __future__ import annotations

import time

import dask
import dask.array as da
import numpy as np

from fredask.bench.measure import Timing, peak_rss, reset_peak_rss, timed


def read_all(arrays: list[da.Array], client) -> None:
    """Read and decompress every chunk of ``arrays`` once."""
    client.compute([a.sum() for a in arrays], sync=True)


def read_floor(arrays: list[da.Array], client, repeats: int = 1) -> Timing:
    """The timed :func:`read_all` (after an untimed read of the first two chunks)."""
    read_all([a[: 2 * a.chunks[0][0]] for a in arrays], client)
    return timed(client, lambda: read_all(arrays, client), repeats)


def row_blocks(n_rows: int, chunk_rows: int) -> list[int]:
    """Row counts of the ``chunk_rows`` blocks of ``n_rows`` rows."""
    full, rest = divmod(n_rows, chunk_rows)
    return [chunk_rows] * full + ([rest] if rest else [])


def held_blocks(client, shapes, dtype=np.float64, seed: int = 0) -> list:
    """Random blocks of ``shapes``, scattered to every worker before anything is timed."""
    rng = np.random.default_rng(seed)
    blocks = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    return client.scatter(blocks, broadcast=True, hash=False)


def _block_gram(block: np.ndarray, rows: int) -> np.ndarray:
    part = block[:rows]
    return part.T @ part


def gram_pass(client, block, n_rows: int, chunk_rows: int) -> np.ndarray:
    """``sum_c Z_c^T Z_c`` over the row blocks of ``n_rows`` rows, the held ``block`` reused."""
    parts = [
        client.submit(_block_gram, block, rows, pure=False)
        for rows in row_blocks(n_rows, chunk_rows)
    ]
    return client.submit(sum, parts, pure=False).result()


def gram_floor(
    client, n_rows: int, chunk_rows: int, width: int, dtype=np.float32, repeats: int = 1
) -> Timing:
    """The timed :func:`gram_pass` of ``width`` columns (after an untimed one of two blocks)."""
    rows = min(chunk_rows, n_rows)
    [block] = held_blocks(client, [(rows, width)], dtype)
    gram_pass(client, block, 2 * rows, rows)
    return timed(client, lambda: gram_pass(client, block, n_rows, rows), repeats)


def _block_distances(block: np.ndarray, test: np.ndarray, rows: int, step: int) -> int:
    for lo in range(0, rows, step):
        product = test @ np.asarray(block[lo : min(lo + step, rows)], dtype=np.float64).T
        del product
    return rows


def distance_pass(client, block, test, n_rows: int, chunk_rows: int, step: int) -> int:
    """``test @ block.T`` over ``n_rows`` rows in ``step``-row slices, on held blocks."""
    parts = [
        client.submit(_block_distances, block, test, rows, step, pure=False)
        for rows in row_blocks(n_rows, chunk_rows)
    ]
    return client.submit(sum, parts, pure=False).result()


def distance_floor(
    client, n_rows: int, chunk_rows: int, width: int, n_test: int, step: int, repeats: int = 1
) -> Timing:
    """The timed :func:`distance_pass` (float64, after an untimed one of two blocks)."""
    rows = min(chunk_rows, n_rows)
    block, test = held_blocks(client, [(rows, width), (n_test, width)])
    distance_pass(client, block, test, 2 * rows, rows, step)
    return timed(client, lambda: distance_pass(client, block, test, n_rows, rows, step), repeats)


def distance_read_pass(client, array: da.Array, test, step: int | None) -> int:
    """Read every chunk of ``array``, cast it to float64, multiply ``test @ chunk.T``."""
    kernel = dask.delayed(_block_distances, pure=False)
    parts = [
        kernel(block, test, rows, step or rows)
        for block, rows in zip(array.to_delayed()[:, 0], array.chunks[0], strict=True)
    ]
    return sum(client.compute(parts, sync=True))


def distance_read_floor(
    client, array: da.Array, test_rows: np.ndarray, step: int | None, repeats: int = 1
) -> Timing:
    """The timed :func:`distance_read_pass` against the given (float64) test rows."""
    [test] = client.scatter([np.asarray(test_rows, dtype=np.float64)], broadcast=True, hash=False)
    distance_read_pass(client, array[: 2 * array.chunks[0][0]], test, step)
    run = timed(client, lambda: distance_read_pass(client, array, test, step), repeats)
    if run.value != array.shape[0]:
        raise RuntimeError(f"the distance floor covered {run.value} rows, not {array.shape[0]}")
    return run


def local_fit_floor(client, arrays: tuple, ridge, eps: float) -> dict:
    """The LFRE's local fits alone, on arrays in memory: in this process and on the workers.

    ``arrays`` are ``(x_neighbours, y_neighbours, x_test, y_test)`` as
    :func:`fredask.measures.local_fit.local_fit_errors` takes them.  Timed in
    this process with its default BLAS threads and with one BLAS thread, and on
    the cluster with the test rows cut in one block per worker (each block
    already on its worker, one single-threaded call per worker).  The floor is
    the fastest of the three; ``lfre`` is the RMS of its errors (to check the
    arrays against the timed run).
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    from fredask.measures.local_fit import local_fit_errors

    reset_peak_rss()
    start = time.perf_counter()
    errors = local_fit_errors(*arrays, ridge, eps)
    default = time.perf_counter() - start
    client_peak = peak_rss()
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        local_fit_errors(*arrays, ridge, eps)
        one = time.perf_counter() - start
    workers = sorted(client.scheduler_info()["workers"])
    blocks = np.array_split(np.arange(arrays[0].shape[0]), len(workers))
    held = [
        client.scatter([a[block] for a in arrays], workers=[worker])
        for block, worker in zip(blocks, workers, strict=True)
    ]
    start = time.perf_counter()
    parts = [
        client.submit(local_fit_errors, *futures, ridge, eps, workers=[worker], pure=False)
        for futures, worker in zip(held, workers, strict=True)
    ]
    client.gather(parts)
    on_workers = time.perf_counter() - start
    threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return {
        "local_fit_floor_s": min(default, one, on_workers),
        "local_fit_default_threads_s": default,
        "local_fit_one_thread_s": one,
        "local_fit_on_workers_s": on_workers,
        "client_blas_threads": max(threads, default=1),
        "local_fit_client_peak_rss": client_peak,
        "local_fit_floor_lfre": float(np.sqrt(np.mean(errors**2))),
    }
