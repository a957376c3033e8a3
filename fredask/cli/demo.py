"""``fredask demo``: the main job, real models over structures that ship with ASE and pymatgen."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fredask.cli.cluster import add_cluster_argument, cluster_client
from fredask.cli.compare import atom_split, save_and_print
from fredask.compare.matrix import METRICS, reconstruction_matrix
from fredask.solvers.settings import RidgeSettings
from fredask.store.feature_store import FeatureStore

DEMO_MODELS = ("chgnet:0.3.0", "sevenn:7net-0", "sevenn:7net-l3i5")


def demo(args: argparse.Namespace) -> None:
    """The main job: real structures, real models, a store, the all-pairs matrices."""
    from fredask.extract import get_extractor
    from fredask.extract.runner import extract as run
    from fredask.store.datasets import shipped_structures
    from fredask.store.structures import StructureTable

    output = args.output
    output.mkdir(parents=True, exist_ok=True)
    structures = shipped_structures()
    table = StructureTable.from_atoms(
        structures,
        source_file=[f"{a.info['subset']}:{a.info['name']}" for a in structures],
        source_index=range(len(structures)),
    )
    path = output / "store.zarr"
    store = FeatureStore.open_or_create(path, table, what="the shipped structures")
    print(f"1/3  store {path}: {store.n_structures} structures, {store.n_atoms} atoms")
    client = cluster_client(args.cluster)
    where = "the embedded LocalCluster" if args.cluster is None else f"cluster {args.cluster}"
    print(f"2/3  features of {', '.join(args.model)} on {where}")
    for spec in args.model:
        start = time.perf_counter()
        report = run(store, get_extractor(spec), client=client, skip_errors=True)
        print(
            f"     {report.name}: {report.chunks_computed}/{report.chunks_total} chunks in "
            f"{time.perf_counter() - start:.1f} s, {len(report.skipped)} structures skipped"
        )
    print(store.info())
    print(
        "3/3  all-pairs matrices, paper-style split stratified by subset; the float32 "
        "features are treated as exact (RidgeSettings(precision='float64'))"
    )
    features = store.feature_arrays([get_extractor(spec).name for spec in args.model])
    args.split, args.seed, args.n_test = "paper", 0, min(1000, store.n_atoms // 4)
    split = atom_split(args, store.n_atoms, store)
    ridge = RidgeSettings(precision="float64")
    for metric in METRICS:
        result = reconstruction_matrix(
            features, metric, split=split, estimator=ridge, client=client
        )
        save_and_print(result, output, metric)


def add_parser(sub) -> None:
    """Add ``demo`` to the CLI's subparsers."""
    p = sub.add_parser("demo", help="the main job: real models over shipped structures")
    p.add_argument("--model", action="append", help=f"model specs (default: {DEMO_MODELS})")
    p.add_argument("--output", type=Path, default=Path("fredask-results"))
    add_cluster_argument(p)
    p.set_defaults(func=demo)
