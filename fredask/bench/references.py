"""What fredask is compared with: scikit-matter's metrics and the paper's cumulant loop.

Each reference is a function of a store path that loads the data into memory
(load timed apart), runs the reference and returns a dict; the benchmarks run
them through :func:`fredask.bench.measure.in_child`, so a reference has its
own process, memory and BLAS threads.  Long references stop after a time
budget and extrapolate (``extrapolated`` in the result).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from fredask.store.feature_store import FeatureStore, group_features


def skmatter_gfre_pairs(path: str, pairs: Sequence[tuple[str, str]], budget_s: float) -> dict:
    """``skmatter.metrics.global_reconstruction_error`` pair by pair, on in-memory arrays.

    Stops once the next pair would pass ``budget_s``; ``total_s`` is then the
    mean time per pair times the number of pairs.
    """
    import skmatter.metrics

    start = time.perf_counter()
    names = sorted({name for pair in pairs for name in pair})
    arrays = group_features(path)
    data = {name: arrays[name][:] for name in names}
    load_s = time.perf_counter() - start
    values, seconds = {}, []
    for source, target in pairs:
        start = time.perf_counter()
        gfre = skmatter.metrics.global_reconstruction_error(data[source], data[target])
        seconds.append(time.perf_counter() - start)
        values[f"{source}->{target}"] = float(gfre)
        if len(seconds) < len(pairs) and sum(seconds) * (1 + 1 / len(seconds)) > budget_s:
            break
    return {
        "load_s": load_s,
        "pair_seconds": seconds,
        "values": values,
        "pairs_timed": len(seconds),
        "extrapolated": len(seconds) < len(pairs),
        "total_s": sum(seconds) / len(seconds) * len(pairs),
    }


def skmatter_lfre(
    path: str, source: str, target: str, k: int, test_idx, train_idx, float64: bool
) -> dict:
    """``skmatter.metrics.local_reconstruction_error`` of ``target`` from ``source``.

    With ``float64``, also on float64 copies (scikit-matter computes in the
    input dtype; fredask always in float64).
    """
    import skmatter.metrics

    start = time.perf_counter()
    arrays = group_features(path)
    x, y = arrays[source][:], arrays[target][:]
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    value = skmatter.metrics.local_reconstruction_error(x, y, k, test_idx, train_idx)
    result = {"seconds": time.perf_counter() - start, "load_s": load_s, "lfre": float(value)}
    if float64:
        x, y = x.astype(np.float64), y.astype(np.float64)
        start = time.perf_counter()
        value = skmatter.metrics.local_reconstruction_error(x, y, k, test_idx, train_idx)
        result["float64_seconds"] = time.perf_counter() - start
        result["float64_lfre"] = float(value)
    return result


def paper_cumulants(block: np.ndarray, order: int = 8) -> np.ndarray:
    """One structure's root-scaled cumulants as the paper's script computes them.

    ``scipy.stats.moment`` for the central moments, then the explicit formulas
    of docs/method.md section 7 (orders 2..8), then the signed ``j``-th roots.
    """
    import scipy.stats

    mu = {j: scipy.stats.moment(block, order=j, axis=0) for j in range(2, 9)}
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
    scaled = [np.sign(kappa[j]) * np.abs(kappa[j]) ** (1 / j) for j in range(2, order + 1)]
    return np.concatenate([block.mean(axis=0), *scaled])


def paper_cumulant_loop(
    path: str, model: str, seed: int, budget_s: float, order: int = 8, n_compared: int = 500
) -> dict:
    """The paper's per-structure loop over a store's structures, in a seeded order.

    Stops after ``budget_s`` (checked every 256 structures) and extrapolates;
    returns the first ``n_compared`` structures' values for the agreement.
    """
    import scipy.stats  # noqa: F401  (before the clock: the import takes about 1.5 s)

    store = FeatureStore.open(path)
    start = time.perf_counter()
    features = store.features(model)[:]
    n_atoms = store.n_atoms_per_structure()
    load_s = time.perf_counter() - start
    offset = np.cumsum(n_atoms) - n_atoms
    visit = np.random.default_rng(seed).permutation(n_atoms.size)
    compared, done = [], 0
    start = time.perf_counter()
    for s in visit:
        values = paper_cumulants(features[offset[s] : offset[s] + n_atoms[s]].astype(np.float64))
        if done < n_compared:
            compared.append(values)
        done += 1
        if done % 256 == 0 and time.perf_counter() - start > budget_s:
            break
    seconds = time.perf_counter() - start
    return {
        "load_s": load_s,
        "seconds_timed": seconds,
        "structures_timed": done,
        "extrapolated": done < n_atoms.size,
        "total_s": seconds / done * n_atoms.size,
        "compared_structures": visit[: len(compared)].tolist(),
        "compared_values": np.array(compared),
    }
