"""The GPU check's synthetic data: the benchmarks' zoo drawn on a cluster's workers and
held there, its first rows moved to another cluster, released between steps."""

from __future__ import annotations

import contextlib
import time

import dask
import dask.array as da
import numpy as np

from fredask.backend import to_host
from fredask.bench.data import LATENT_DIM, NOISE, _chunk, _maps
from fredask.bench.gpu.device import free_device


def generate_chunk(
    generator: str, seed: int, index: int, rows: int, n_models: int, n_features: int
) -> tuple[np.ndarray, ...]:
    """Chunk ``index`` of every model of the synthetic zoo, as host float32 arrays.

    ``tanh(L A_m + noise_m)`` with the shared 32-dim latent ``L``
    (:mod:`fredask.bench.data`: the maps, noise and hidden latent directions of
    the benchmarks' stores).  ``generator="numpy"`` is that module's chunk
    exactly; ``"cupy"`` draws the same distribution on the GPU (other random
    numbers) and copies it to the host (numpy on one core: 1.5 s per 16000 rows
    of 10 x 256 features, minutes for the GFRE data).
    """
    maps = _maps(n_models, n_features, seed)
    if generator == "numpy":
        return tuple(_chunk(seed, index, rows, maps))
    import cupy

    state = cupy.random.RandomState(seed * 1_000_003 + index)
    latent = state.standard_normal((rows, LATENT_DIM), dtype=np.float32)
    out = []
    for m, a in enumerate(maps):
        z = latent @ cupy.asarray(a)
        z += np.float32(NOISE[m % len(NOISE)]) * state.standard_normal(z.shape, dtype=np.float32)
        out.append(cupy.asnumpy(cupy.tanh(z, out=z)))
    return tuple(out)


def generated_features(
    client,
    n_rows: int,
    n_models: int,
    n_features: int,
    chunk_rows: int,
    seed: int,
    generator: str,
) -> dict[str, da.Array]:
    """``m0, m1, ..`` of ``n_rows`` rows, drawn on ``client``'s workers and persisted there."""
    names = [f"m{m}" for m in range(n_models)]
    parts: dict[str, list] = {name: [] for name in names}
    make = dask.delayed(generate_chunk, pure=True, nout=n_models)
    for index, start in enumerate(range(0, n_rows, chunk_rows)):
        rows = min(chunk_rows, n_rows - start)
        blocks = make(generator, seed, index, rows, n_models, n_features)
        for name, block in zip(names, blocks, strict=True):
            parts[name].append(da.from_delayed(block, (rows, n_features), dtype=np.float32))
    arrays = client.persist([da.concatenate(parts[name]) for name in names])
    wait_on(arrays)
    return dict(zip(names, arrays, strict=True))


def wait_on(collections) -> None:
    """Wait until the futures of persisted ``collections`` are done (a failed one raises).

    ``distributed.wait`` needs a default client, which this run's are not.
    """
    from distributed import futures_of

    futures = futures_of(collections)
    while True:
        status = [future.status for future in futures]
        if all(s == "finished" for s in status):
            return
        for future, s in zip(futures, status, strict=True):
            if s in ("error", "cancelled", "lost"):
                future.result()  # raises the task's error
                raise RuntimeError(f"a task of the synthetic data ended {s}")
        time.sleep(0.02)


def moved_rows(arrays: dict[str, da.Array], stop: int, source, target, chunk_rows: int) -> dict:
    """The first ``stop`` rows of ``arrays`` (on ``source``'s workers) scattered to ``target``'s.

    Gathered through this process one model at a time and scattered in
    ``chunk_rows``-row chunks (spread over ``target``'s workers).
    """
    out = {}
    for name, array in arrays.items():
        values = to_host(source.compute(array[:stop], sync=True))
        blocks = [values[lo : lo + chunk_rows] for lo in range(0, stop, chunk_rows)]
        futures = target.scatter(blocks, hash=False)
        out[name] = da.concatenate(
            [
                da.from_delayed(f, b.shape, dtype=b.dtype, meta=b[:0])
                for f, b in zip(futures, blocks, strict=True)
            ]
        )
    return out


def release(client, arrays, kernels: str | None = None) -> None:
    """Drop the persisted ``arrays`` from ``client``'s workers (and CuPy's cached memory)."""
    with contextlib.suppress(Exception):
        client.cancel(list(arrays))
        if kernels is not None:
            client.run(free_device, kernels)
