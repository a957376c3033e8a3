"""The paper's whole analysis, timed on a synthetic store of the paper's shape.

``benchmarks/paper_analysis.py`` is the driver; this module holds what it measures:

* data: :func:`paper_store`, a fredask store shaped like the paper's MAD test set
  (9,461 structures of 4-60 atoms in 8 subsets, four models of 144, 256, 128 and
  240 float32 features per atom), written once and reused when its attributes
  match.  Every atom has a latent description shared in part by its structure;
  each model sees it through its own map with some latent directions hidden and
  its own noise, ``tanh(latent A_m + noise_m)``, so that the off-diagonal atom
  GFREs lie between about 0.27 and 0.83;
* the steps (:data:`STEPS`), fredask's public calls as ``fredask compare`` and
  ``fredask cumulants`` make them: atom GFRE and LFRE of the 12 ordered pairs on
  the paper's split, order-8 cumulants written into the store, structure GFRE
  and LFRE of the 12 pairs, and the 8 x 8 order-by-order GFRE and LFRE of every
  model.  The structure-level LFREs are timed on a sample of the test
  structures and extrapolated (:func:`extrapolate`);
* floors: the read of the step's arrays plus its dense kernels (Gram, distance
  GEMMs, the local fits' SVDs), each kernel timed once at its real shape on one
  single-threaded worker (:class:`KernelClock`) and multiplied by its count;
* the paper's pipeline (:func:`paper_pipeline`, run in a child process):
  scikit-matter's pair loops on float64 arrays in memory and the scipy cumulant
  loop, on samples of pairs and test rows within a time budget, extrapolated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import permutations
from pathlib import Path

import numpy as np

from fredask.bench.measure import Timing, timed
from fredask.stats.splits import Split
from fredask.store.feature_store import FeatureStore, StoreError
from fredask.store.structures import StructureTable, fingerprint_of

#: The paper's models (rows of its matrices) and their features per atom.
MODELS = {"mace144": 144, "pet256": 256, "uma128": 128, "dpa240": 240}
#: The MAD test set's subsets (the labels the paper's split is stratified by).
SUBSETS = (
    "MC3D",
    "MC3D-rattled",
    "MC3D-random",
    "MC3D-surface",
    "MC3D-cluster",
    "MC2D",
    "SHIFTML-molcrys",
    "SHIFTML-molfrags",
)
N_STRUCTURES = 9_461
ATOMS = (4, 60)
#: Elements drawn for the synthetic structures (H, C, N, O, Si, Ti, Fe, Cu).
ELEMENTS = (1, 6, 7, 8, 14, 22, 26, 29)
LATENT_DIM = 32
#: Per model: latent directions it does not see, noise before the tanh.
HIDDEN_LATENTS = (3, 0, 6, 12)
NOISE = (0.1, 0.05, 0.3, 0.9)
#: Weight of the structure's latent in each atom's (the rest is the atom's own).
STRUCTURE_SHARE = 0.5
ORDER = 8
GENERATOR_VERSION = 1
MARKER = "paper_benchmark"
#: The timed steps, in the order they run.
STEPS = (
    "atom_gfre",
    "atom_lfre",
    "cumulants",
    "structure_gfre",
    "structure_lfre",
    "order_gfre",
    "order_lfre",
)
#: Structures whose scipy-loop cumulants are compared with fredask's, per model.
N_COMPARED = 200
#: Flops per feature value of the order-8 power sums (7 products, 8 sums, 1 spare).
POWER_SUM_FLOPS = 16


# -------------------------------------------------------------------------- data


def store_path(data_dir: str | Path, n_structures: int, seed: int) -> Path:
    """Where the store of ``n_structures`` structures and this seed lives."""
    return Path(data_dir) / f"paper_s{n_structures}_seed{seed}.zarr"


def n_structures_at(scale: float) -> int:
    """Structures at ``scale`` times the paper's (at least four per subset)."""
    return max(4 * len(SUBSETS), round(N_STRUCTURES * scale))


def _marker(n_structures: int, seed: int) -> dict:
    return {
        "n_structures": n_structures,
        "seed": seed,
        "models": MODELS,
        "hidden_latents": list(HIDDEN_LATENTS),
        "noise": list(NOISE),
        "structure_share": STRUCTURE_SHARE,
        "generator_version": GENERATOR_VERSION,
    }


def structure_table(n_structures: int, seed: int = 0) -> StructureTable:
    """Synthetic structures: 4-60 random atoms in a box each, subsets in equal shares.

    No cell, no periodicity; fingerprints from the random numbers and positions.
    """
    rng = np.random.default_rng([seed, 0])
    n_atoms = rng.integers(ATOMS[0], ATOMS[1] + 1, size=n_structures).astype(np.int64)
    subset = np.asarray(SUBSETS)[rng.permutation(np.arange(n_structures) % len(SUBSETS))]
    total = int(n_atoms.sum())
    numbers = rng.choice(np.asarray(ELEMENTS, dtype=np.int16), size=total)
    box = np.repeat(np.cbrt(12.0 * n_atoms), n_atoms)[:, None]  # about 12 A^3 per atom
    positions = rng.uniform(0.0, 1.0, (total, 3)) * box
    offset = np.cumsum(n_atoms) - n_atoms
    cell, pbc = np.zeros((n_structures, 3, 3)), np.zeros((n_structures, 3), dtype=bool)
    fingerprints = [
        fingerprint_of(numbers[o : o + n], positions[o : o + n], cell[s], pbc[s])
        for s, (o, n) in enumerate(zip(offset, n_atoms, strict=True))
    ]
    return StructureTable(
        n_atoms=n_atoms,
        offset=offset,
        fingerprint=np.array(fingerprints, dtype=np.uint64),
        subset=subset,
        source_file=np.full(n_structures, "synthetic-paper"),
        source_index=np.arange(n_structures, dtype=np.int64),
        cell=cell,
        pbc=pbc,
        numbers=numbers,
        positions=positions,
    )


def latent_maps(seed: int = 0) -> list[np.ndarray]:
    """Each model's ``(LATENT_DIM, width)`` map, its hidden latent directions zeroed."""
    maps = []
    for m, width in enumerate(MODELS.values()):
        rng = np.random.default_rng([seed, 1, m])
        a = rng.standard_normal((LATENT_DIM, width)) / np.sqrt(LATENT_DIM)
        a[rng.permutation(LATENT_DIM)[: HIDDEN_LATENTS[m]]] = 0.0
        maps.append(a.astype(np.float32))
    return maps


def chunk_features(seed: int, index: int, structure_latent: np.ndarray, maps) -> list:
    """Every model's features of one row chunk, given its rows' structure latents."""
    rng = np.random.default_rng([seed, 2, index])
    own = rng.standard_normal(structure_latent.shape, dtype=np.float32)
    share = np.float32(STRUCTURE_SHARE)
    latent = share * structure_latent + np.sqrt(1 - share**2) * own
    return [
        np.tanh(
            latent @ a
            + np.float32(sigma) * rng.standard_normal((len(latent), a.shape[1]), np.float32)
        )
        for a, sigma in zip(maps, NOISE, strict=True)
    ]


def write_features(store: FeatureStore, seed: int = 0) -> None:
    """Write the four models' features into ``store``, one row chunk at a time."""
    maps = latent_maps(seed)
    n_atoms = store.n_atoms_per_structure()
    latent = np.random.default_rng([seed, 3]).standard_normal(
        (n_atoms.size, LATENT_DIM), dtype=np.float32
    )
    structure_of_row = np.repeat(np.arange(n_atoms.size), n_atoms)
    for name, width in MODELS.items():
        source = {"synthetic": "paper_analysis", "model": name, "seed": seed}
        store.create_features(name, width, np.float32, {"model": f"synthetic:{name}"}, source)
    for index in range(store.n_chunks):
        start, stop = store.chunk_bounds(index)
        blocks = chunk_features(seed, index, latent[structure_of_row[start:stop]], maps)
        for name, block in zip(MODELS, blocks, strict=True):
            store.write_chunk(name, index, block)
    for name in MODELS:
        store.finish_features(name)


def paper_store(data_dir: str | Path, scale: float = 1.0, seed: int = 0) -> FeatureStore:
    """The benchmark's store (opened for appending), written unless a matching one exists.

    Parameters
    ----------
    data_dir : path
        Directory of the stores (created if needed).
    scale : float
        Multiplies the paper's 9,461 structures.
    seed : int
        Seed of the structures and features.

    Returns
    -------
    FeatureStore
        With the structure table and complete ``features/<model>`` of :data:`MODELS`.
    """
    n_structures = n_structures_at(scale)
    path = store_path(data_dir, n_structures, seed)
    marker = _marker(n_structures, seed)
    if path.exists():
        try:
            store = FeatureStore.open(path, mode="a")
            if store.attrs.get(MARKER) == marker and set(MODELS) <= set(store.feature_names()):
                return store
        except StoreError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    store = FeatureStore.create(path, structure_table(n_structures, seed), overwrite=True)
    write_features(store, seed)
    store.attrs[MARKER] = marker
    return store


# ------------------------------------------------------------------------ splits


@dataclass(frozen=True)
class Splits:
    """The paper's splits of one store.

    Attributes
    ----------
    atoms, structures : Split
        ``fredask compare --split paper`` at atom and at structure level.
    sample : Split
        The first test structures of ``structures`` (same train structures),
        on which the structure-level LFREs are timed.
    half : Split or None
        The first half of ``sample`` (to check that the cost is linear).
    """

    atoms: Split
    structures: Split
    sample: Split
    half: Split | None = None


def paper_splits(
    store: FeatureStore, n_test: int, n_sample: int, half: bool = False, seed: int = 0
) -> Splits:
    """The atom and structure splits of ``--split paper --n-test n_test`` and the sample."""
    from fredask.cli.compare import split_of
    from fredask.structure.compare import structure_split

    atoms = split_of(store, store.n_atoms, "paper", n_test, seed)
    structures = structure_split(store, store.feature_names(), "paper", n_test, seed)
    test = structures.test_idx
    sample = Split(structures.train_idx, test[: max(1, min(n_sample, test.size))])
    halved = None
    if half and sample.test_idx.size >= 4:
        halved = Split(structures.train_idx, sample.test_idx[: sample.test_idx.size // 2])
    return Splits(atoms, structures, sample, halved)


# ---------------------------------------------------------------- fredask steps


def exact_ridge():
    """The CLI's default estimator: float32 features fitted as exact (float64 epsilon)."""
    from fredask.solvers.settings import RidgeSettings

    return RidgeSettings(precision="float64")


def atom_matrix(store: FeatureStore, metric: str, split: Split, client):
    """``fredask compare --metric <metric> --split paper`` at atom level."""
    from fredask.compare.matrix import reconstruction_matrix

    rows = np.repeat(np.arange(store.n_structures), store.n_atoms_per_structure())
    return reconstruction_matrix(
        store.feature_arrays(list(MODELS)),
        metric,
        split=split,
        method="qr",
        client=client,
        estimator=exact_ridge(),
        row_structures=rows,
        progress=False,
    )


def write_all_cumulants(store: FeatureStore, client) -> list:
    """``fredask cumulants --order 8 --overwrite``: every model's cumulants into the store."""
    from fredask.structure.stored import write_cumulants

    return [write_cumulants(store, name, ORDER, client=client, overwrite=True) for name in MODELS]


def _structure_matrix(store: FeatureStore, metric: str, split: Split, client, model: str):
    from fredask.structure.compare import structure_comparisons

    names = list(MODELS) if not model else [model]
    [(_, result)] = structure_comparisons(
        store,
        [metric],
        names=names,
        order_model=model,
        split=split,
        client=client,
        estimator=exact_ridge(),
        row_structures=np.arange(store.n_structures),
        progress=False,
    )
    return result


def model_matrix(store: FeatureStore, metric: str, split: Split, client):
    """``fredask compare --level structure --order-matrix ''``: the models' cumulants."""
    return _structure_matrix(store, metric, split, client, "")


def order_matrices(store: FeatureStore, metric: str, split: Split, client, models=None) -> dict:
    """The 8 x 8 matrix of the orders of every model (``--order-matrix <model>``), or of
    ``models``."""
    return {m: _structure_matrix(store, metric, split, client, m) for m in models or MODELS}


def extrapolate(
    seconds: float, n_rows: int, n_full: int, half_s: float | None = None, n_half: int = 0
) -> dict:
    """Seconds for ``n_full`` test rows from a run on ``n_rows`` of them.

    Linear in the rows: ``seconds / n_rows`` per row (an upper bound, the fixed
    cost counted per row), or, with a run on ``n_half`` rows, the line through
    both points when its slope lies in ``(0, seconds / n_rows]``.

    Returns
    -------
    dict
        ``seconds`` (for ``n_full``), ``per_row_s``, ``fixed_s``,
        ``extrapolated`` (fewer rows timed than ``n_full``) and ``linearity``
        (``seconds / half_s x n_half / n_rows``; 1 = linear; None without a half run).
    """
    per_row, fixed, linearity = seconds / n_rows, 0.0, None
    if half_s is not None and 0 < n_half < n_rows:
        linearity = seconds / half_s * n_half / n_rows
        slope = (seconds - half_s) / (n_rows - n_half)
        if 0 < slope <= per_row:
            per_row, fixed = slope, seconds - slope * n_rows
    return {
        "seconds": fixed + per_row * n_full,
        "per_row_s": per_row,
        "fixed_s": fixed,
        "extrapolated": n_rows < n_full,
        "linearity": linearity,
        "rows_timed": n_rows,
        "rows_full": n_full,
    }


def sampled_run(client, call: Callable[[Split], object], splits: Splits) -> tuple[dict, object]:
    """``call(split)`` timed on the sample (and its half), extrapolated to the full test set.

    Returns
    -------
    record : dict
        :func:`fredask_record` of the runs, with the :func:`extrapolate` estimate.
    value : object
        What ``call`` returned for the sample.
    """
    runs: dict[str, Timing] = {}
    if splits.half is not None:
        runs["half"] = timed(client, lambda: call(splits.half))
    runs["sample"] = timed(client, lambda: call(splits.sample))
    half = runs.get("half")
    estimate = extrapolate(
        runs["sample"].seconds,
        splits.sample.test_idx.size,
        splits.structures.test_idx.size,
        None if half is None else half.seconds,
        0 if half is None else splits.half.test_idx.size,
    )
    return fredask_record(runs, estimate), runs["sample"].value


def fredask_record(runs: dict[str, Timing], estimate: dict | None = None) -> dict:
    """A step's fredask numbers: its seconds (measured, or ``estimate``'s) and peak RSS."""
    peaks = [p for run in runs.values() for p in run.worker_peak_rss.values()]
    record = {
        "seconds": sum(run.seconds for run in runs.values()),
        "extrapolated": False,
        "runs": {name: run.to_dict() for name, run in runs.items()},
        "peak_worker_rss": max(peaks, default=float("nan")),
    }
    if estimate is not None:
        record |= {"seconds": estimate["seconds"], "extrapolated": estimate["extrapolated"]}
        record["estimate"] = estimate
    return record


# ------------------------------------------------------------------------ floors


def _kernel(kind: str, shape: tuple, dtype: str) -> Callable[[], object]:
    """One dense kernel on random data: ``"gram"`` (``a.T @ a`` of an (n_rows, width)
    block), ``"product"`` ((n_test, p) @ (p, n_rows), a distance block) or ``"svd"``."""
    rng = np.random.default_rng(0)
    if kind == "product":
        n_test, p, n_rows = shape
        a = rng.standard_normal((n_test, p)).astype(dtype)
        b = rng.standard_normal((n_rows, p)).astype(dtype)
        return lambda: a @ b.T
    a = rng.standard_normal(shape).astype(dtype)
    if kind == "gram":
        return lambda: a.T @ a
    if kind == "svd":
        return lambda: np.linalg.svd(a, full_matrices=False)
    raise ValueError(f"unknown kernel {kind!r}")


def _kernel_seconds(kind: str, shape: tuple, dtype: str) -> float:
    """The fastest of a few calls of :func:`_kernel` (in this process)."""
    call = _kernel(kind, shape, dtype)
    best, spent = float("inf"), 0.0
    while spent < 0.2 and best > 0:  # repeat the fast ones, take the fastest
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        best, spent = min(best, seconds), spent + seconds
        if seconds > 0.1:
            break
    return best


class KernelClock:
    """Seconds of dense kernels at given shapes, timed on one worker (one BLAS thread).

    Every (kind, shape, dtype) is timed once per run and cached; a floor is
    such a time multiplied by how often the step needs the kernel, divided by
    the workers (the work is shared evenly in the best case).

    Parameters
    ----------
    client : distributed.Client
        The benchmark's cluster (its workers run one BLAS thread each).
    """

    def __init__(self, client):
        self.client = client
        workers = sorted(client.scheduler_info()["workers"])
        self.worker, self.n_workers = workers[0], len(workers)
        self.cache: dict[tuple, float] = {}
        self.seconds("svd", (64, 64))  # the first LAPACK call loads and warms it

    def seconds(self, kind: str, shape: tuple, dtype: str = "float64") -> float:
        """One call of ``kind`` (``"gram"``, ``"product"``, ``"svd"``) at ``shape``."""
        key = (kind, tuple(int(s) for s in shape), str(np.dtype(dtype)))
        if key not in self.cache:
            result = self.client.run(_kernel_seconds, *key, workers=[self.worker])
            self.cache[key] = float(next(iter(result.values())))
        return self.cache[key]

    def gram_s(self, n_rows: int, block_rows: int, width: int, dtype: str) -> float:
        """The Gram ``sum_c Z_c^T Z_c`` of ``n_rows`` rows, ``width`` columns, in blocks."""
        rows = max(1, min(block_rows, n_rows))
        return self.seconds("gram", (rows, width), dtype) * n_rows / rows / self.n_workers

    def distance_s(self, n_test: int, n_train: int, widths) -> float:
        """``test @ train.T`` of every source width, in fredask's slices of train rows."""
        from fredask.measures.neighbours import BLOCK_ROWS

        rows = max(1, min(BLOCK_ROWS, n_train))
        total = sum(self.seconds("product", (n_test, p, rows)) for p in widths)
        return total * n_train / rows / self.n_workers

    def local_fit_s(self, n_test: int, groups: dict) -> float:
        """Per test row and distinct (source, k) of ``groups`` (its value the source's p),
        the SVD of a k x min(k, p) block and two of ceil(k / 2) x min(k, p)."""
        per_row = 0.0
        for (_, k), p in groups.items():
            width = min(k, p)
            per_row += self.seconds("svd", (k, width)) + 2 * self.seconds(
                "svd", (-(-k // 2), width)
            )
        return n_test * per_row / self.n_workers

    def global_solve_s(self, widths: dict, n_train: int, n_columns: int) -> dict:
        """The solves of a GFRE matrix after its pass, for the off-diagonal pairs of
        ``widths`` (``{source: p}``).

        A subset's factor has ``min(rows, n_columns)`` rows (the pass's R factor,
        or the centred rows where they are fewer).  Per source: the thin SVDs of its
        columns in the two folds (``n_train / 2`` rows each) and in all train rows;
        per ordered pair: the target's projection on the source's left vectors in
        the three subsets, ``2 r p q`` flops each.
        """
        subsets = [min(n_train // 2, n_columns)] * 2 + [min(n_train, n_columns)]
        svd_s = sum(self.seconds("svd", (rows, p)) for p in widths.values() for rows in subsets)
        flops = sum(
            2 * rows * widths[s] * widths[t]
            for s in widths
            for t in widths
            if s != t
            for rows in subsets
        )
        return {"svd_s": svd_s / self.n_workers, "projection_s": self.flops_s(flops)}

    def flops_s(self, flops: float) -> float:
        """``flops`` at this machine's float64 GEMM rate (a 4096 x 768 Gram), all workers."""
        rate = 2 * 4096 * 768**2 / self.seconds("gram", (4096, 768))
        return flops / rate / self.n_workers


def lfre_groups(features: dict, split: Split) -> dict:
    """``{(source, k): p}`` of the off-diagonal pairs, with fredask's k (min(p, q), capped)."""
    from fredask.compare.matrix import check_comparison

    request = check_comparison(features, ["lfre"], split)
    widths = dict(zip(request.features.names, request.features.widths, strict=True))
    return {(s, k): widths[s] for (s, t), k in request.n_local_points.items() if s != t}


def read_seconds(arrays: list, client) -> float:
    """Read and decompress every chunk of the (Zarr) ``arrays`` once, on the cluster."""
    import dask.array as da

    from fredask.bench.floors import read_floor

    return read_floor([da.from_zarr(a) for a in arrays], client).seconds


def floor_record(read_s: float, **kernels: float) -> dict:
    """A step's floor: its read plus its kernels (seconds each, and the total)."""
    return {"read_s": read_s, **kernels, "seconds": read_s + sum(kernels.values())}


# ---------------------------------------------------------- the paper's pipeline


def visit_order(n: int, seed: int) -> np.ndarray:
    """The seeded order in which a reference visits ``n`` pairs."""
    return np.random.default_rng(seed).permutation(n)


def over_budget(seconds: list[float], n_pairs: int, budget_s: float) -> bool:
    """Whether one more pair at the mean time so far would pass the budget."""
    return len(seconds) < n_pairs and sum(seconds) * (1 + 1 / len(seconds)) > budget_s


class ReferenceArrays:
    """The store's arrays as the paper's scripts hold them: float64, in memory, loaded once."""

    def __init__(self, path: str):
        self.path = path
        self.store = FeatureStore.open(path)
        self.cache: dict[str, dict] = {}
        self.load_s: dict[str, float] = {}

    def get(self, level: str) -> dict[str, np.ndarray]:
        """``"atom"`` features, ``"structure"`` cumulants or ``"orders"`` (``model/order o``)."""
        if level not in self.cache:
            start = time.perf_counter()
            self.cache[level] = self._load(level)
            self.load_s[level] = time.perf_counter() - start
        return self.cache[level]

    def _load(self, level: str) -> dict[str, np.ndarray]:
        from fredask.structure.compare import order_descriptors
        from fredask.structure.stored import cumulants_array

        if level == "atom":
            return {n: self.store.features(n)[:].astype(np.float64) for n in MODELS}
        if level == "structure":
            return {n: cumulants_array(self.store, n)[:] for n in MODELS}
        cumulants = self.get("structure")
        return {
            f"{name}/{key}": values
            for name in MODELS
            for key, values in order_descriptors(cumulants[name], MODELS[name]).items()
        }


def skmatter_gfre(arrays: ReferenceArrays, spec: dict, budget_s: float, seed: int) -> dict:
    """``skmatter.metrics.global_reconstruction_error`` pair by pair, in a seeded order."""
    import skmatter.metrics

    data, pairs = arrays.get(spec["level"]), spec["pairs"]
    timed_pairs, seconds = [], []
    for index in visit_order(len(pairs), seed):
        source, target = pairs[index]
        start = time.perf_counter()
        value = skmatter.metrics.global_reconstruction_error(
            data[source], data[target], test_idx=spec["test_idx"], train_idx=spec["train_idx"]
        )
        seconds.append(time.perf_counter() - start)
        timed_pairs.append({"index": int(index), "value": float(value), "seconds": seconds[-1]})
        if over_budget(seconds, len(pairs), budget_s):
            break
    return {
        "pairs": timed_pairs,
        "pairs_timed": len(seconds),
        "n_pairs": len(pairs),
        "seconds_timed": sum(seconds),
        "extrapolated": len(seconds) < len(pairs),
        "total_s": sum(seconds) / len(seconds) * len(pairs),
    }


def _pointwise_lfre(data: dict, pair: dict, rows, train_idx) -> tuple[np.ndarray, float]:
    import skmatter.metrics

    start = time.perf_counter()
    errors = skmatter.metrics.pointwise_local_reconstruction_error(
        data[pair["source"]], data[pair["target"]], pair["k"], test_idx=rows, train_idx=train_idx
    )
    return errors, time.perf_counter() - start


def pair_estimate(first_s: float, rest_s: float | None, n_rest: int, n_test: int) -> float:
    """Seconds of one pair on ``n_test`` rows, from a call on 1 row and one on ``n_rest``.

    The two calls give the fixed cost and the cost per row; when they cannot
    (one row only, or the second call no slower per extra row), every call's
    time is counted per row (an upper bound).
    """
    if rest_s is None:
        return n_test * first_s
    if n_rest < 2:
        return n_test * min(first_s, rest_s)
    slope = (rest_s - first_s) / (n_rest - 1)
    if slope <= 0:
        slope = rest_s / n_rest
    return max(0.0, first_s - slope) + n_test * slope


def skmatter_lfre(arrays: ReferenceArrays, spec: dict, budget_s: float, seed: int) -> dict:
    """``skmatter.metrics.pointwise_local_reconstruction_error`` on a few test rows per pair.

    Per pair (seeded order, until the budget is spent): one call on its first
    row, one on the others (:func:`pair_estimate` extrapolates to
    ``spec["n_test"]`` rows); the total is the mean pair estimate x the pairs.
    """
    data, pairs = arrays.get(spec["level"]), spec["pairs"]
    timed_pairs, seconds = [], []
    for index in visit_order(len(pairs), seed):
        pair = pairs[index]
        rows = np.asarray(pair["rows"], dtype=np.int64)
        first, first_s = _pointwise_lfre(data, pair, rows[:1], spec["train_idx"])
        rest, rest_s = np.zeros(0), None
        if rows.size > 1:
            rest, rest_s = _pointwise_lfre(data, pair, rows[1:], spec["train_idx"])
        seconds.append(first_s + (rest_s or 0.0))
        timed_pairs.append(
            {
                "index": int(index),
                "errors": np.concatenate([first, rest]).tolist(),
                "seconds": seconds[-1],
                "estimate_s": pair_estimate(first_s, rest_s, rows.size - 1, spec["n_test"]),
            }
        )
        if over_budget(seconds, len(pairs), budget_s):
            break
    estimates = [p["estimate_s"] for p in timed_pairs]
    return {
        "pairs": timed_pairs,
        "pairs_timed": len(timed_pairs),
        "n_pairs": len(pairs),
        "rows_per_pair": max(len(p["rows"]) for p in pairs),
        "seconds_timed": sum(seconds),
        "extrapolated": True,
        "total_s": sum(estimates) / len(estimates) * len(pairs),
    }


def scipy_cumulant_loops(arrays: ReferenceArrays, spec: dict, budget_s: float, seed: int) -> dict:
    """:func:`fredask.bench.references.paper_cumulant_loop` of every model (a budget share
    each), compared with the cumulants fredask stored."""
    from fredask.bench.references import paper_cumulant_loop
    from fredask.structure.stored import cumulants_array

    loops, worst = {}, 0.0
    for name in MODELS:
        loop = paper_cumulant_loop(
            arrays.path, name, seed, budget_s / len(MODELS), ORDER, N_COMPARED
        )
        rows = np.array(loop.pop("compared_structures"))
        theirs = loop.pop("compared_values")
        ours = cumulants_array(arrays.store, name).get_orthogonal_selection((rows, slice(None)))
        scale = np.abs(theirs).max(axis=0)
        difference = np.abs(ours - theirs) / np.where(scale > 0, scale, 1.0)
        worst = max(worst, float(difference.max()))
        loops[name] = loop | {"compared": int(rows.size)}
    return {
        "models": loops,
        "seconds_timed": sum(loop["seconds_timed"] for loop in loops.values()),
        "extrapolated": any(loop["extrapolated"] for loop in loops.values()),
        "total_s": sum(loop["total_s"] for loop in loops.values()),
        "max_diff_over_column_scale": worst,
        "compared": sum(loop["compared"] for loop in loops.values()),
    }


REFERENCES = {"gfre": skmatter_gfre, "lfre": skmatter_lfre, "cumulants": scipy_cumulant_loops}


def paper_pipeline(path: str, plan: dict, budget_s: float, seed: int = 0) -> dict:
    """The paper's pipeline on the store at ``path``, step by step (run it in a child).

    Parameters
    ----------
    path : str
        The benchmark's store, with fredask's cumulants written.
    plan : dict of str to dict
        Per step a spec with ``kind`` (``"gfre"``, ``"lfre"`` or ``"cumulants"``),
        ``level`` (``"atom"``, ``"structure"``, ``"orders"``), ``pairs`` and the
        split (:func:`gfre_spec`, :func:`lfre_spec`).
    budget_s : float
        Seconds of each step before it extrapolates.
    seed : int
        Order of the pairs and structures visited.

    Returns
    -------
    dict
        Per step its reference's result, and ``load_s`` (loading each level's
        arrays, not timed in the steps).
    """
    import scipy.stats  # noqa: F401  (imports before the clocks)
    import skmatter.metrics  # noqa: F401

    arrays = ReferenceArrays(path)
    out = {
        step: REFERENCES[spec["kind"]](arrays, spec, budget_s, seed) for step, spec in plan.items()
    }
    return out | {"load_s": arrays.load_s}


def off_diagonal(names) -> list[tuple[str, str]]:
    """The ordered pairs of distinct ``names``."""
    return list(permutations(names, 2))


def gfre_spec(level: str, pairs: list, split: Split) -> dict:
    """A GFRE step of the plan."""
    return {
        "kind": "gfre",
        "level": level,
        "pairs": pairs,
        "train_idx": split.train_idx,
        "test_idx": split.test_idx,
    }


def lfre_spec(level: str, pairs: list, ks: list, rows: list, split: Split, n_test: int) -> dict:
    """An LFRE step of the plan: per pair its k and the test rows to compute."""
    return {
        "kind": "lfre",
        "level": level,
        "pairs": [
            {"source": s, "target": t, "k": int(k), "rows": list(r)}
            for (s, t), k, r in zip(pairs, ks, rows, strict=True)
        ],
        "train_idx": split.train_idx,
        "n_test": int(n_test),
    }


def relative_differences(ours, theirs) -> float:
    """Largest ``|ours - theirs| / max(|theirs|, ROUND_OFF)`` (NaN for none).

    Errors below :data:`fredask.compare.distribution.ROUND_OFF` are round-off
    (a target inside its source: order o from a higher order gives ~4e-15), whose
    relative differences mean nothing; they are compared to that floor instead.
    """
    from fredask.compare.distribution import ROUND_OFF

    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    if ours.size == 0:
        return float("nan")
    return float(np.max(np.abs(ours - theirs) / np.maximum(np.abs(theirs), ROUND_OFF)))
