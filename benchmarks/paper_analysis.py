"""Benchmark: the paper's whole analysis with fredask, against its floors and the paper's pipeline.

On a synthetic fredask store of the paper's shape (:func:`fredask.bench.paper.paper_store`
under ``--data-dir``: 9,461 structures of 4-60 atoms in 8 subsets, models ``mace144``,
``pet256``, ``uma128`` and ``dpa240`` of 144, 256, 128 and 240 float32 features per atom;
``--scale`` multiplies the structures), written once and reused, this script times on a
``LocalCluster`` of two single-threaded worker processes
(:func:`fredask.bench.driver.run_benchmark`), step by step as ``fredask compare`` and
``fredask cumulants`` run them (paper split: ``--n-test`` test atoms, then test
structures, stratified by subset, seed ``--seed``):

a. the atom GFRE of the 12 ordered pairs (``reconstruction_matrix``, method qr);
b. the atom LFRE of the 12 pairs (k = min(p, q));
c. the order-8 cumulants of the 4 models, written into the store (``write_cumulants``);
d. the structure GFRE of the 12 pairs (``structure_comparisons``);
e. the structure LFRE of the 12 pairs, timed on the first ``--structure-lfre-sample``
   test structures of the paper split (same train structures) and extrapolated
   linearly to the whole test set (marked ``*``);
f. the 8 x 8 order-by-order GFRE and LFRE of every model (descriptors of orders 1..o),
   the LFRE sampled and extrapolated as in e.

Beside each step: its floor (the read of its arrays once, on the cluster, plus its dense
kernels each timed once at its real shape on one worker and multiplied by its count:
:class:`fredask.bench.paper.KernelClock`), and the paper's pipeline
(:func:`fredask.bench.paper.paper_pipeline`, one spawned child after the fredask steps):
scikit-matter's GFRE / LFRE pair loops on float64 arrays in memory and the scipy
cumulant loop, on a seeded sample of pairs (``--paper-budget`` seconds per step) and,
for the LFRE, of test rows, extrapolated (marked ``*``).  fredask's numbers are compared
with scikit-matter's on those pairs and rows (the LFRE at the five test rows of each pair
with the largest errors, from the timed run), and its cumulants with the loop's.

Results: a markdown page on stdout, also written to ``paper_analysis.md`` in
``--results-dir`` (default ``benchmarks/results``), raw numbers in ``paper_analysis.json``.

Usage::

    .venv/bin/python benchmarks/paper_analysis.py                # the paper's size
    .venv/bin/python benchmarks/paper_analysis.py --scale 0.02 --n-test 60
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
from threadpoolctl import threadpool_limits

from fredask.bench.driver import directory_arguments, log, run_benchmark
from fredask.bench.measure import MIB, directory_bytes, in_child, load_average, timed
from fredask.bench.paper import (
    MODELS,
    ORDER,
    POWER_SUM_FLOPS,
    STEPS,
    KernelClock,
    atom_matrix,
    floor_record,
    fredask_record,
    gfre_spec,
    lfre_groups,
    lfre_spec,
    model_matrix,
    n_structures_at,
    off_diagonal,
    order_matrices,
    paper_pipeline,
    paper_splits,
    paper_store,
    read_seconds,
    relative_differences,
    sampled_run,
    store_path,
    write_all_cumulants,
)
from fredask.bench.report import benchmark_page, fmt
from fredask.compare.matrix import check_comparison, reconstruction_matrix
from fredask.measures.local_fit import NeighbourCapWarning
from fredask.structure.compare import order_descriptors
from fredask.structure.cumulants import structure_cumulants
from fredask.structure.stored import STRUCTURE_CHUNK_ROWS, cumulants_array, stored_cumulants

HERE = Path(__file__).resolve().parent
ORDERS = [f"order {o}" for o in range(1, ORDER + 1)]
TARGET = 1e-8
LABELS = {
    "atom_gfre": "a. atom GFRE",
    "atom_lfre": "b. atom LFRE",
    "cumulants": "c. cumulants (order 8, stored)",
    "structure_gfre": "d. structure GFRE",
    "structure_lfre": "e. structure LFRE",
    "order_gfre": "f. order GFRE",
    "order_lfre": "f. order LFRE",
}


def label(step: str, r: dict) -> str:
    """The step's row label (step f with the number of models whose orders it compares)."""
    if step.startswith("order"):
        n = len(r["order_models"])
        return f"{LABELS[step]} ({n} model{'s' * (n > 1)})"
    return LABELS[step]


# ------------------------------------------------------------------------ steps


def ensure_store(args):
    """The benchmark store (written, and timed, when missing)."""
    n_structures = n_structures_at(args.scale)
    existed = store_path(args.data_dir, n_structures, args.seed).exists()
    start = time.perf_counter()
    store = paper_store(args.data_dir, args.scale, args.seed)
    seconds = time.perf_counter() - start
    written = "reused" if existed and seconds < 5 else f"written in {seconds:.1f} s"
    size = f"{store.n_structures:,} structures, {store.n_atoms:,} atoms"
    log(f"store {store.path.name}: {size}, {written}")
    return store


def warm_up(client, store) -> None:
    """Imports, first calls and the compiled cumulant kernel on the workers, on a head."""
    n_atoms = store.n_atoms_per_structure()
    keep = max(2, int(np.searchsorted(np.cumsum(n_atoms), 2 * store.chunk_rows, "right")))
    rows = int(n_atoms[:keep].sum())
    head = {n: da.from_zarr(store.features(n))[:rows] for n in list(MODELS)[:2]}
    test = np.arange(0, rows, max(1, rows // 40))
    for metric in ("gfre", "lfre"):
        reconstruction_matrix(
            head, metric, test_idx=test, n_local_points=8, client=client, progress=False
        )
    client.compute(structure_cumulants(head["mace144"], n_atoms[:keep]).sum(), sync=True)


def lfre_kernels(clock, features: dict, split, n_test: int) -> dict:
    """The LFRE's distance GEMMs and local-fit SVDs for ``n_test`` test rows."""
    widths = [a.shape[1] for a in features.values()]
    return {
        "distance_s": clock.distance_s(n_test, split.train_idx.size, widths),
        "svd_s": clock.local_fit_s(n_test, lfre_groups(features, split)),
    }


def add(*records: dict) -> dict:
    """Kernel seconds summed key by key."""
    return {key: sum(r[key] for r in records) for key in records[0]}


def cumulant_read(ctx, models=tuple(MODELS)) -> float:
    """The read floor of the stored cumulants of ``models`` (measured once)."""
    key = ("cumulants", *models)
    if key not in ctx["read"]:
        arrays = [cumulants_array(ctx["store"], n) for n in models]
        ctx["read"][key] = read_seconds(arrays, ctx["client"])
    return ctx["read"][key]


def step_atom_gfre(ctx):
    store, client = ctx["store"], ctx["client"]
    run = timed(client, lambda: atom_matrix(store, "gfre", ctx["splits"].atoms, client))
    width = sum(MODELS.values())
    gram = ctx["clock"].gram_s(store.n_atoms, store.chunk_rows, width, "float32")
    solves = ctx["clock"].global_solve_s(MODELS, ctx["splits"].atoms.train_idx.size, width)
    return (
        fredask_record({"run": run}),
        floor_record(ctx["read"]["features"], gram_s=gram, **solves),
        run.value,
    )


def step_atom_lfre(ctx):
    store, client, split = ctx["store"], ctx["client"], ctx["splits"].atoms
    run = timed(client, lambda: atom_matrix(store, "lfre", split, client))
    features = store.feature_arrays(list(MODELS))
    kernels = lfre_kernels(ctx["clock"], features, split, split.test_idx.size)
    return fredask_record({"run": run}), floor_record(ctx["read"]["features"], **kernels), run.value


def step_cumulants(ctx):
    store, client = ctx["store"], ctx["client"]
    run = timed(client, lambda: write_all_cumulants(store, client))
    flops = POWER_SUM_FLOPS * store.n_atoms * sum(MODELS.values())
    power_sums = ctx["clock"].flops_s(flops)
    return (
        fredask_record({"run": run}),
        floor_record(ctx["read"]["features"], power_sums_s=power_sums),
        None,
    )


def step_structure_gfre(ctx):
    store, client = ctx["store"], ctx["client"]
    run = timed(client, lambda: model_matrix(store, "gfre", ctx["splits"].structures, client))
    width = ORDER * sum(MODELS.values())
    gram = ctx["clock"].gram_s(store.n_structures, STRUCTURE_CHUNK_ROWS, width, "float64")
    widths = {m: ORDER * p for m, p in MODELS.items()}
    n_train = ctx["splits"].structures.train_idx.size
    solves = ctx["clock"].global_solve_s(widths, n_train, width)
    floor = floor_record(cumulant_read(ctx), gram_s=gram, **solves)
    return fredask_record({"run": run}), floor, run.value


def step_structure_lfre(ctx):
    store, client, splits = ctx["store"], ctx["client"], ctx["splits"]
    record, value = sampled_run(client, lambda s: model_matrix(store, "lfre", s, client), splits)
    features = stored_cumulants(store, list(MODELS))
    n_test = splits.structures.test_idx.size
    kernels = lfre_kernels(ctx["clock"], features, splits.structures, n_test)
    return record, floor_record(cumulant_read(ctx), **kernels), value


def step_order_gfre(ctx):
    store, client = ctx["store"], ctx["client"]
    split, models = ctx["splits"].structures, ctx["order_models"]
    run = timed(client, lambda: order_matrices(store, "gfre", split, client, models))
    clock, n_train = ctx["clock"], split.train_idx.size
    kernels = []
    for m in models:
        width = ORDER * MODELS[m]  # the descriptors are prefixes of the order-8 columns
        widths = {o: o * MODELS[m] for o in range(1, ORDER + 1)}
        gram = clock.gram_s(store.n_structures, STRUCTURE_CHUNK_ROWS, width, "float64")
        kernels.append({"gram_s": gram, **clock.global_solve_s(widths, n_train, width)})
    return (
        fredask_record({"run": run}),
        floor_record(cumulant_read(ctx, tuple(models)), **add(*kernels)),
        run.value,
    )


def step_order_lfre(ctx):
    store, client, splits = ctx["store"], ctx["client"], ctx["splits"]
    models = ctx["order_models"]
    record, value = sampled_run(
        client, lambda s: order_matrices(store, "lfre", s, client, models), splits
    )
    n_test = splits.structures.test_idx.size
    kernels = [
        lfre_kernels(ctx["clock"], descriptors(store, name), splits.structures, n_test)
        for name in models
    ]
    return record, floor_record(cumulant_read(ctx, tuple(models)), **add(*kernels)), value


STEP_RUNS = {
    "atom_gfre": step_atom_gfre,
    "atom_lfre": step_atom_lfre,
    "cumulants": step_cumulants,
    "structure_gfre": step_structure_gfre,
    "structure_lfre": step_structure_lfre,
    "order_gfre": step_order_gfre,
    "order_lfre": step_order_lfre,
}


def descriptors(store, name: str) -> dict:
    """The order descriptors of one model, as ``structure_comparisons`` builds them."""
    return order_descriptors(stored_cumulants(store, [name])[name], MODELS[name])


# ----------------------------------------------------------- the paper's pipeline


def lfre_plan(features: dict, split, results, prefix: str = "") -> tuple:
    """Pairs, k, worst test rows and fredask's errors there, of one LFRE matrix."""
    ks = check_comparison(features, ["lfre"], split).n_local_points
    pairs = off_diagonal(features)
    summary = results.errors
    rows = [summary.loc[pair, "worst_rows"] for pair in pairs]
    errors = [summary.loc[pair, "worst_errors"] for pair in pairs]
    named = [(prefix + s, prefix + t) for s, t in pairs]
    return named, [ks[p] for p in pairs], rows, errors


def gfre_plans(splits, values: dict, models: list[str]) -> tuple[dict, dict]:
    """The GFRE steps of the paper's pipeline, and fredask's values on their pairs."""
    plan, expected = {}, {}
    pairs = off_diagonal(MODELS)
    for step, level, split in (("atom_gfre", "atom", splits.atoms),
                               ("structure_gfre", "structure", splits.structures)):  # fmt: skip
        plan[step] = gfre_spec(level, pairs, split)
        expected[step] = [values[step].matrix.loc[s, t] for s, t in pairs]
    order_pairs = [(m, a, b) for m in models for a, b in off_diagonal(ORDERS)]
    named = [(f"{m}/{a}", f"{m}/{b}") for m, a, b in order_pairs]
    plan["order_gfre"] = gfre_spec("orders", named, splits.structures)
    expected["order_gfre"] = [values["order_gfre"][m].matrix.loc[a, b] for m, a, b in order_pairs]
    return plan, expected


def lfre_plans(store, splits, values: dict, models: list[str]) -> tuple[dict, dict]:
    """The LFRE steps of the paper's pipeline, and fredask's errors at their rows."""
    n_test = splits.structures.test_idx.size
    atom = lfre_plan(store.feature_arrays(list(MODELS)), splits.atoms, values["atom_lfre"])
    structure = lfre_plan(stored_cumulants(store), splits.sample, values["structure_lfre"])
    parts = [
        lfre_plan(descriptors(store, m), splits.sample, values["order_lfre"][m], f"{m}/")
        for m in models
    ]
    orders = [[x for part in parts for x in part[i]] for i in range(4)]
    plan = {
        "atom_lfre": lfre_spec("atom", *atom[:3], splits.atoms, splits.atoms.test_idx.size),
        "structure_lfre": lfre_spec("structure", *structure[:3], splits.sample, n_test),
        "order_lfre": lfre_spec("orders", *orders[:3], splits.sample, n_test),
    }
    expected = {"atom_lfre": atom[3], "structure_lfre": structure[3], "order_lfre": orders[3]}
    return plan, expected


def paper_plan(store, splits, values: dict, models: list[str]) -> tuple[dict, dict]:
    """What the paper's pipeline runs per step (in the order of :data:`STEPS`), and
    fredask's numbers to compare with (``models``: those whose orders are compared)."""
    gfre, gfre_expected = gfre_plans(splits, values, models)
    lfre, lfre_expected = lfre_plans(store, splits, values, models)
    plan = gfre | lfre | {"cumulants": {"kind": "cumulants"}}
    return {step: plan[step] for step in STEPS}, gfre_expected | lfre_expected


def agreement(reference: dict, expected: list | None) -> dict:
    """Max relative difference of fredask's numbers from the reference's, on its pairs."""
    if "models" in reference:  # the cumulant loops compare against the store themselves
        return {
            "compared": f"{reference['compared']:,} structures",
            "max_relative_difference": reference["max_diff_over_column_scale"],
        }
    pairs = reference["pairs"]
    if "errors" in pairs[0]:
        ours = np.concatenate([expected[p["index"]] for p in pairs])
        theirs = np.concatenate([p["errors"] for p in pairs])
        what = f"{len(pairs)} pairs x {theirs.size // len(pairs)} test rows"
    else:
        ours = [expected[p["index"]] for p in pairs]
        theirs = [p["value"] for p in pairs]
        what = f"{len(pairs)} pairs"
    return {
        "compared": what,
        "max_relative_difference": relative_differences(ours, theirs),
        "fredask": np.asarray(ours, dtype=float).tolist(),
    }


def run_paper_pipeline(store, splits, values: dict, steps: dict, args) -> dict:
    """The paper's pipeline in a child; its results and the agreement added to ``steps``."""
    plan, expected = paper_plan(store, splits, values, args.order_models)
    log(f"paper pipeline (scikit-matter, scipy; budget {args.paper_budget:g} s per step) ...")
    reference = in_child(paper_pipeline, str(store.path), plan, args.paper_budget, args.seed)
    if "error" in reference:
        log(f"  paper pipeline failed: {reference['error']}")
        return reference
    for step in STEPS:
        steps[step]["paper"] = reference[step]
        steps[step]["agreement"] = agreement(reference[step], expected.get(step))
        mark = "*" if reference[step]["extrapolated"] else ""
        difference = steps[step]["agreement"]["max_relative_difference"]
        log(f"  {step}: {reference[step]['total_s']:.1f} s{mark}, max rel diff {difference:.1e}")
    return {k: reference[k] for k in ("load_s", "peak_rss", "baseline_rss")}


def value_ranges(values: dict) -> dict:
    """Off-diagonal ranges of the models' matrices (the data's shape)."""
    out = {}
    for step in ("atom_gfre", "atom_lfre", "structure_gfre", "structure_lfre"):
        matrix = values[step].matrix.to_numpy()
        off = matrix[~np.eye(len(matrix), dtype=bool)]
        out[step] = [float(off.min()), float(off.max()), float(off.mean())]
    return out


def fredask_steps(ctx) -> tuple[dict, dict]:
    """Every step of :data:`STEPS`, timed with its floor, after a warm-up; and its values."""
    log("warm-up")
    warm_up(ctx["client"], ctx["store"])
    steps, values = {}, {}
    for step in STEPS:
        load = load_average()
        start = time.perf_counter()
        fredask, step_floor, values[step] = STEP_RUNS[step](ctx)
        steps[step] = {
            "fredask": fredask,
            "floor": step_floor,
            "load_before": load,
            "load_after": load_average(),
        }
        mark = "*" if fredask["extrapolated"] else ""
        log(
            f"{step}: fredask {fredask['seconds']:.2f} s{mark}, floor "
            f"{step_floor['seconds']:.2f} s ({time.perf_counter() - start:.0f} s in all)"
        )
    return steps, values


def measure_size(client, scale: float, args) -> dict:
    """The whole analysis on the store at ``scale``: every step, its floor, the paper's pipeline."""
    warnings.filterwarnings("ignore", category=NeighbourCapWarning)  # k capped on tiny runs
    store = ensure_store(args)
    splits = paper_splits(
        store, args.n_test, args.structure_lfre_sample, args.half_sample, args.seed
    )
    clock = KernelClock(client)
    read = {"features": read_seconds([store.features(n) for n in MODELS], client)}
    ctx = {"store": store, "client": client, "splits": splits, "clock": clock, "read": read}
    ctx["order_models"] = args.order_models
    with threadpool_limits(limits=args.client_blas_threads, user_api="blas"):
        steps, values = fredask_steps(ctx)
    child = run_paper_pipeline(store, splits, values, steps, args)
    return {
        "scale": scale,
        "order_models": list(args.order_models),
        "n_structures": store.n_structures,
        "n_atoms": store.n_atoms,
        "chunk_rows": store.chunk_rows,
        "store_bytes": directory_bytes(store.path),
        "store": store.path.name,
        "split": {
            "atoms": [int(splits.atoms.train_idx.size), int(splits.atoms.test_idx.size)],
            "structures": [
                int(splits.structures.train_idx.size),
                int(splits.structures.test_idx.size),
            ],
            "sample": int(splits.sample.test_idx.size),
            "half": None if splits.half is None else int(splits.half.test_idx.size),
        },
        "value_ranges": value_ranges(values),
        "kernel_seconds": [[*key, s] for key, s in clock.cache.items()],
        "steps": steps,
        "paper_child": child,
    }


# ------------------------------------------------------------------------- page


def _marked(seconds, extrapolated: bool, digits: int = 1) -> str:
    return fmt(seconds, digits) + ("*" if extrapolated and seconds is not None else "")


def _paper(step: dict) -> tuple[float | None, bool]:
    paper = step.get("paper") or {}
    return paper.get("total_s"), bool(paper.get("extrapolated"))


def step_row(label: str, step: dict) -> list[str]:
    f, fl = step["fredask"], step["floor"]
    paper_s, paper_x = _paper(step)
    return [
        label,
        _marked(f["seconds"], f["extrapolated"], 2),
        fmt(fl["seconds"]),
        fmt(f["seconds"] / fl["seconds"], 1),
        _marked(paper_s, paper_x),
        fmt(None if paper_s is None else paper_s / f["seconds"], 1),
        f"{f['peak_worker_rss'] / MIB:.0f}",
        f"{step['load_before']:.2f} / {step['load_after']:.2f}",
    ]


def whole_row(steps: dict) -> list[str]:
    fredask = sum(s["fredask"]["seconds"] for s in steps.values())
    floor_s = sum(s["floor"]["seconds"] for s in steps.values())
    papers = [_paper(s) for s in steps.values()]
    paper_s = None if any(p is None for p, _ in papers) else sum(p for p, _ in papers)
    peak = max(s["fredask"]["peak_worker_rss"] for s in steps.values())
    return [
        "**whole analysis**",
        _marked(fredask, any(s["fredask"]["extrapolated"] for s in steps.values()), 2),
        fmt(floor_s),
        fmt(fredask / floor_s, 1),
        _marked(paper_s, any(x for _, x in papers)),
        fmt(None if paper_s is None else paper_s / fredask, 1),
        f"{peak / MIB:.0f}",
        "",
    ]


def floor_row(label: str, step: dict) -> list[str]:
    keys = ("read_s", "gram_s", "distance_s", "svd_s", "projection_s", "power_sums_s", "seconds")
    return [label, *(fmt(step["floor"].get(k), 3) for k in keys)]


def sample_row(label: str, step: dict) -> list[str]:
    e, runs = step["fredask"]["estimate"], step["fredask"]["runs"]
    half = runs.get("half")
    return [
        label,
        f"{e['rows_timed']} of {e['rows_full']}",
        fmt(runs["sample"]["seconds"]),
        "—" if half is None else fmt(half["seconds"]),
        fmt(e["per_row_s"], 3),
        fmt(e["fixed_s"]),
        fmt(e["linearity"]),
        _marked(e["seconds"], e["extrapolated"]),
    ]


def paper_row(label: str, step: dict) -> list[str]:
    paper = step.get("paper") or {}
    if not paper:
        return [label, "—", "—", "—", "—"]
    if "models" in paper:
        timed_ = sum(m["structures_timed"] for m in paper["models"].values())
        what = f"{timed_:,} structures of 4 models"
    else:
        what = f"{paper['pairs_timed']} of {paper['n_pairs']} pairs"
        if "rows_per_pair" in paper:
            what += f", {paper['rows_per_pair']} test rows each"
    total = _marked(paper["total_s"], paper["extrapolated"])
    return [label, what, fmt(paper["seconds_timed"]), total, "yes" if paper["extrapolated"] else ""]


def agreement_row(label: str, step: dict) -> list[str]:
    a = step.get("agreement")
    if not a:
        return [label, "—", "—", "—"]
    difference = a["max_relative_difference"]
    met = "yes" if difference <= TARGET else "no"
    return [label, a["compared"], f"{difference:.1e}", met]


def data_lines(r: dict) -> list[str]:
    atoms, structures = r["split"]["atoms"], r["split"]["structures"]
    ranges = r["value_ranges"]
    text = ", ".join(f"{name} ({width})" for name, width in MODELS.items())
    lines = [
        f"Data: {r['n_structures']:,} structures, {r['n_atoms']:,} atoms (scale {r['scale']}), "
        f"8 subsets, models {text}, float32, chunks of {r['chunk_rows']:,} rows; store "
        f"{r['store']} ({r['store_bytes'] / MIB:.0f} MiB). Paper split: {atoms[1]:,} test / "
        f"{atoms[0]:,} train atoms, {structures[1]:,} test / {structures[0]:,} train "
        f"structures; structure-level LFREs timed on the first {r['split']['sample']} test "
        "structures" + (f" (and on the first {r['split']['half']})" if r["split"]["half"] else "")
        + ".",
        "Off-diagonal values (min .. max, mean): "
        + "; ".join(f"{LABELS[k][3:]} {v[0]:.3f} .. {v[1]:.3f} ({v[2]:.3f})"
                    for k, v in ranges.items()) + ".",
    ]  # fmt: skip
    return lines


DEFINITIONS = (
    "fredask: the public calls of `fredask compare --split paper` and `fredask cumulants` "
    "(reconstruction_matrix / structure_comparisons with the float64-exact RidgeSettings, "
    "write_cumulants --overwrite), on the store, after a warm-up; the time includes reading "
    "the store. Floor = read once (every chunk of the step's arrays read and decompressed on "
    "the cluster: the atom features for a-c, the stored cumulants for d-f) + the step's dense "
    "kernels, each timed once at its real shape on one single-threaded worker, multiplied by "
    "its count and divided by the 2 workers: GFRE, the Gram of the concatenated columns over "
    "all rows (atoms: float32, blocks of the store's chunk rows; structures: float64, blocks of "
    "2048, for f the 8d distinct columns of each model), plus its solves: per source (model or "
    "order descriptor) the thin SVDs of its columns in the two folds and in all train rows "
    "(min(rows, concatenated columns) rows: the pass's factor), per off-diagonal pair the "
    "target's projections on the source's left vectors in those three subsets (2 r p q flops "
    "each at the float64 GEMM rate); LFRE, the distance GEMMs "
    "(n_test x p by p x n_train, float64, per source model or order descriptor) plus, per test "
    "row and distinct (source, k) of the 12 (f: 56 per model) off-diagonal pairs, the SVD of a "
    "k x min(k, p) block and two of ceil(k/2) x min(k, p); cumulants, 16 flops per feature "
    "value at the float64 GEMM rate. Structure-level LFRE floors are for the whole test set. "
    "Paper pipeline: scikit-matter 0.4 global_reconstruction_error / "
    "pointwise_local_reconstruction_error pair by pair on float64 arrays in memory (loading "
    "not timed), and the scipy.stats.moment cumulant loop (fredask.bench.references), in one "
    "spawned child with default BLAS threads; pairs in a seeded random order until the "
    "budget, then the mean per pair x the pairs; LFRE per pair one call on 1 test row and one "
    "on 4 more (fixed cost and cost per row), extrapolated to the whole test set."
)


def page(results: list[dict], context: dict) -> str:
    """The whole markdown page."""
    [r] = results
    steps = r["steps"]
    labels = [(label(s, r), steps[s]) for s in STEPS]
    sampled = [(label, step) for label, step in labels if "estimate" in step["fredask"]]
    sections = [
        *data_lines(r),
        ("", ["step", "fredask s", "floor s", "fredask / floor", "paper pipeline s",
              "paper / fredask", "peak worker RSS MiB", "load before / after"],
         [step_row(label, step) for label, step in labels] + [whole_row(steps)]),
        "\\* extrapolated (see the tables below); the whole-analysis row sums the steps.",
        ("Floors, seconds:",
         ["step", "read", "Gram", "distance GEMMs", "SVDs", "projections", "power sums",
          "floor"],
         [floor_row(label, step) for label, step in labels]),
        ("fredask's structure-level LFREs, timed on a sample of the test structures and "
         "extrapolated linearly (per row = sample s / rows, or the slope through the half "
         "sample when it is in range; linearity = sample s / half s x half rows / rows, 1 = "
         "linear):",
         ["step", "test rows timed", "sample s", "half s", "per row s", "fixed s",
          "linearity", "whole test set s"],
         [sample_row(label, step) for label, step in sampled]),
        ("The paper's pipeline (one child process; load "
         + ", ".join(f"{k} {v:.1f} s" for k, v in r["paper_child"].get("load_s", {}).items())
         + f", child peak RSS {r['paper_child'].get('peak_rss', float('nan')) / MIB:.0f} MiB):",
         ["step", "timed", "seconds timed", "estimate s", "extrapolated"],
         [paper_row(label, step) for label, step in labels]),
        (f"Agreement in float64 (max relative difference; target {TARGET:.0e}); LFRE at the "
         "five test rows of each pair with the largest errors in fredask's timed run; "
         "cumulants: max difference over each column's largest value:",
         ["step", "compared", "max relative difference", f"<= {TARGET:.0e}"],
         [agreement_row(label, step) for label, step in labels]),
    ]  # fmt: skip
    n = f"{r['n_structures']:,} structures, {r['n_atoms']:,} atoms"
    threads = context["args"]["client_blas_threads"]
    client = f"BLAS threads of the client during the fredask steps: {threads or 'its default'}."
    return benchmark_page(
        f"The paper's whole analysis ({n}, 4 models)", context, [DEFINITIONS, "", client], sections
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--scale", type=float, default=1.0, help="multiplies the paper's 9,461 structures")
    add("--n-test", type=int, default=1000, help="test atoms and structures of the paper split")
    add("--structure-lfre-sample", type=int, default=40,
        help="test structures the structure-level LFREs are timed on")  # fmt: skip
    add("--half-sample", action="store_true",
        help="also time the structure-level LFREs on half the sample")  # fmt: skip
    add("--paper-budget", type=float, default=120.0,
        help="seconds of the paper's pipeline per step before extrapolating")  # fmt: skip
    add("--client-blas-threads", type=int, default=None,
        help="BLAS threads of this (client) process during the fredask steps (default: "
        "its own)")  # fmt: skip
    add("--order-models", nargs="+", choices=list(MODELS), default=list(MODELS),
        help="the models whose 8 x 8 order matrices step f computes (default: all)")  # fmt: skip
    add("--seed", type=int, default=0, help="seed of the data and the split")
    directory_arguments(parser, HERE)
    args = parser.parse_args(argv)
    args.sizes = [args.scale]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    run_benchmark("paper_analysis", args, measure_size, page)


if __name__ == "__main__":
    main()
