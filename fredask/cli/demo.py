"""``fredask demo``: the main job, real models over structures that ship with ASE and pymatgen."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fredask.cli.checks import CommandError, writable_folder
from fredask.cli.cluster import add_cluster_argument, cluster_client

DEMO_MODELS = ("chgnet:0.3.0", "sevenn:7net-0", "sevenn:7net-l3i5")


#: The demo's metrics with bootstrap intervals over structures (the cheap ones: per-row values).
RESAMPLED = ("gfre", "gfrd", "lfre", "mutual_knn")
#: Resamples of the demo's intervals.
DEMO_RESAMPLES = 200


def demo(args: argparse.Namespace) -> None:
    """The main job: real structures, real models, a store, the all-pairs matrices.

    The shipped structures with unphysically short bonds are left out (one
    line says how many, by which rule, and the first few).
    """
    import numpy as np

    from fredask.cli.audit import left_out_line
    from fredask.cli.compare import (
        METRICS,
        save_and_print,
        split_metadata,
        split_of,
        with_metadata,
    )
    from fredask.cli.models import build_extractors
    from fredask.cli.store import target_store
    from fredask.compare.matrix import check_comparison, reconstruction_matrix
    from fredask.extract.runner import extract as run
    from fredask.solvers.settings import RidgeSettings
    from fredask.store.datasets import physical_structures, shipped_structures
    from fredask.store.feature_store import FeatureStore, StoreError
    from fredask.store.geometry import short_bond_rule
    from fredask.store.structures import StructureTable

    output = writable_folder(args.output)
    extractors = build_extractors(args.model, {})
    structures, left_out = physical_structures(shipped_structures())
    print(left_out_line(left_out, short_bond_rule()))
    table = StructureTable.from_atoms(
        structures,
        source_file=[f"{a.info['subset']}:{a.info['name']}" for a in structures],
        source_index=range(len(structures)),
    )
    path = output / "store.zarr"
    what = "the shipped structures without short bonds"
    try:
        target_store(path, table, what)
    except StoreError as error:  # e.g. a store of an older demo, short bonds included
        raise CommandError(
            f"{error}; remove {path} (an older demo's?) or choose another --output"
        ) from None
    client = cluster_client(args)
    output.mkdir(parents=True, exist_ok=True)
    store = FeatureStore.open_or_create(path, table, what=what)
    print(f"1/3  store {path}: {store.n_structures} structures, {store.n_atoms} atoms")
    where = "the embedded LocalCluster" if args.cluster is None else f"cluster {args.cluster}"
    print(f"2/3  features of {', '.join(args.model)} on {where}")
    for extractor in extractors:
        start = time.perf_counter()
        report = run(store, extractor, client=client, skip_errors=True)
        print(
            f"     {report.name}: {report.chunks_computed}/{report.chunks_total} chunks in "
            f"{time.perf_counter() - start:.1f} s, {len(report.skipped)} structures skipped"
        )
    print(store.info())
    print(
        "3/3  all-pairs matrices, paper-style split stratified by subset; the float32 "
        "features are treated as exact (RidgeSettings(precision='float64'))"
    )
    features = store.feature_arrays([extractor.name for extractor in extractors])
    args.split, args.seed, args.n_test, args.store = "paper", 0, min(1000, store.n_atoms // 4), path
    split = split_of(store, store.n_atoms, "paper", args.n_test, args.seed)
    rows = np.repeat(np.arange(store.n_structures), store.n_atoms_per_structure())
    check_comparison(features, METRICS, split, row_structures=rows)
    metadata = split_metadata(args, "paper", store, features)
    metadata["left_out"] = {
        "rule": short_bond_rule(),
        "structures": left_out["source_file"].tolist(),
    }
    ridge = RidgeSettings(precision="float64")
    for metric in METRICS:
        result = reconstruction_matrix(
            features,
            metric,
            split=split,
            estimator=ridge,
            client=client,
            row_structures=rows,
            bootstrap=DEMO_RESAMPLES if metric in RESAMPLED else None,
        )
        save_and_print(with_metadata(result, **metadata), output, metric)


def add_parser(sub) -> None:
    """Add ``demo`` to the CLI's subparsers."""
    p = sub.add_parser("demo", help="the main job: real models over shipped structures")
    p.add_argument("--model", action="append", help=f"model specs (default: {DEMO_MODELS})")
    p.add_argument("--output", type=Path, default=Path("fredask-results"))
    add_cluster_argument(p)
    p.set_defaults(func=demo)
