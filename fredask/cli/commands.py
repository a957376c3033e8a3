"""Command line: ``fredask extract | ingest | info | compare | cumulants | demo | bench``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import zarr

from fredask.cli.bench import add_parser as add_bench_parser
from fredask.cli.cluster import add_cluster_argument, cluster_client
from fredask.cli.cluster import add_parser as add_cluster_parser
from fredask.cluster.clients import close_embedded
from fredask.compare.matrix import METRICS, reconstruction_matrix
from fredask.solvers.settings import RidgeSettings
from fredask.stats.splits import Split, split_usable
from fredask.store.feature_store import FeatureStore, StoreError


def _client(spec: str | None):
    """The client ``--cluster`` names (profile, address, scheduler file, threads/sync), or None."""
    return cluster_client(spec)


def _report(result, output: Path, stem: str) -> None:
    paths = result.save(output, stem)
    print(result.matrix.round(4).to_string())
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def store_features(store: str | Path) -> tuple[dict[str, zarr.Array], FeatureStore | None]:
    """Complete per-model arrays of a fredask store (or of any group's ``features/``)."""
    try:
        opened = FeatureStore.open(store)
    except StoreError as error:
        if "not a fredask store" not in str(error):
            raise SystemExit(str(error)) from None
        group = zarr.open_group(store, mode="r")
        if "features" not in group:
            raise SystemExit(f"{store}: no 'features' group; is this a fredask store?") from None
        return dict(sorted(group["features"].arrays())), None
    return opened.feature_arrays(), opened


def _split(args, n_rows: int, store: FeatureStore | None) -> Split:
    usable = np.arange(n_rows) if store is None else store.usable_rows()
    if args.split == "paper" and store is None:
        raise SystemExit("--split paper needs a fredask store (it stratifies by subset)")
    groups = None if store is None else store.atom_subsets()
    return split_usable(usable, groups, args.split or "default", args.n_test, args.seed)


def _open_store(path: Path, mode: str = "r") -> FeatureStore:
    try:
        return FeatureStore.open(path, mode=mode)
    except StoreError as error:
        raise SystemExit(str(error)) from None


def cumulants(args: argparse.Namespace) -> None:
    """Per-structure cumulants of every (or the named) model, into the store."""
    from fredask.structure.stored import write_cumulants

    store = _open_store(args.store, mode="a")
    client = _client(args.cluster)
    for name in args.model or store.feature_names():
        start = time.perf_counter()
        try:
            array = write_cumulants(
                store,
                name,
                args.order,
                root_scale=not args.no_root_scale,
                kappa8=args.kappa8,
                client=client,
                overwrite=args.overwrite,
            )
        except (StoreError, ValueError) as error:  # also NaN features, naming the structure
            raise SystemExit(str(error)) from None
        print(
            f"{name}: cumulants 1..{array.attrs['order']} ({array.attrs['kappa8']} kappa_8) "
            f"of {array.attrs['n_features']} features, {array.shape[0]} structures -> "
            f"{array.path} in {time.perf_counter() - start:.1f} s"
        )


def compare_structures(args: argparse.Namespace) -> None:
    """``compare --level structure``: models' cumulants, and one model's orders."""
    from fredask.structure.compare import structure_comparisons, structure_split
    from fredask.structure.stored import cumulant_names, write_cumulants

    store = _open_store(args.store, mode="a")
    names = store.feature_names()
    client = _client(args.cluster)
    for name in sorted(set(names) - set(cumulant_names(store))):
        print(f"{name}: no cumulants in the store yet, computing them (fredask cumulants)")
        write_cumulants(store, name, client=client)
    split = structure_split(store, names, args.split or "paper", args.n_test, args.seed)
    results = structure_comparisons(
        store,
        args.metric or ["gfre", "lfre"],
        names=names,
        order=args.order,
        order_model=args.order_matrix,
        split=split,
        method=args.method,
        client=client,
        n_local_points=args.n_local_points,
        estimator=RidgeSettings(precision=args.precision),
    )
    start = time.perf_counter()
    for stem, result in results:
        print(f"{stem} in {time.perf_counter() - start:.1f} s")
        _report(result, args.output, stem)
        start = time.perf_counter()


def compare(args: argparse.Namespace) -> None:
    if args.level == "structure":
        return compare_structures(args)
    features, store = store_features(args.store)
    if len(features) < 2:
        raise SystemExit(
            f"{args.store}: need features of at least two models, found {list(features)}"
        )
    client = _client(args.cluster)
    split = _split(args, next(iter(features.values())).shape[0], store)
    for metric in args.metric or ["gfre"]:
        start = time.perf_counter()
        result = reconstruction_matrix(
            features,
            metric,
            split=split,
            method=args.method,
            client=client,
            n_local_points=args.n_local_points,
            estimator=RidgeSettings(precision=args.precision),
        )
        print(f"{metric.upper()} of {len(features)} models in {time.perf_counter() - start:.1f} s")
        _report(result, args.output, metric)


def info(args: argparse.Namespace) -> None:
    try:
        print(FeatureStore.open(args.store).info())
    except StoreError as error:
        raise SystemExit(str(error)) from None


def _structures(paths: list[Path]):
    from fredask.store.structures import StructureFileError, read_structures

    try:
        return read_structures(paths)
    except StructureFileError as error:
        raise SystemExit(str(error)) from None


def _open_or_create(store: Path, paths: list[Path]) -> FeatureStore:
    return FeatureStore.open_or_create(store, _structures(paths), what=", ".join(map(str, paths)))


def extract(args: argparse.Namespace) -> None:
    from fredask.extract import get_extractor
    from fredask.extract.runner import extract as run

    store = _open_or_create(args.store, args.structures)
    client = _client(args.cluster)
    for spec in args.model:
        layer = int(args.layer) if args.layer and args.layer.lstrip("-").isdigit() else args.layer
        options = {} if layer is None else {"layer": layer}
        extractor = get_extractor(spec, **options)
        start = time.perf_counter()
        report = run(
            store,
            extractor,
            client=client,
            batch_atoms=args.batch_atoms,
            skip_errors=args.skip_errors,
        )
        seconds = time.perf_counter() - start
        print(
            f"{report.name}: {report.chunks_computed} of {report.chunks_total} chunks computed "
            f"in {seconds:.1f} s; {len(report.skipped)} structures skipped"
        )
    print(store.info())


def ingest(args: argparse.Namespace) -> None:
    from fredask.store.ingest import ingest as run

    features = {}
    for item in args.features:
        name, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--features takes NAME=PATH, got {item!r}")
        features[name] = Path(path)
    store = run(
        args.store,
        _structures(args.structures),
        features,
        key=args.key,
        command=shlex.join(sys.argv),
    )
    print(store.info())


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
    client = _client(args.cluster)
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
    split = _split(args, store.n_atoms, store)
    ridge = RidgeSettings(precision="float64")
    for metric in METRICS:
        result = reconstruction_matrix(
            features, metric, split=split, estimator=ridge, client=client
        )
        _report(result, output, metric)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fredask",
        description="Feature reconstruction errors between interatomic potentials.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="run models over structures into a store")
    p.add_argument("structures", type=Path, nargs="+", help="structure files ASE reads")
    p.add_argument(
        "--model",
        action="append",
        required=True,
        help="model spec, e.g. chgnet:0.3.0, sevenn:7net-0 (repeatable)",
    )
    p.add_argument("--store", type=Path, required=True)
    p.add_argument("--layer", help="layer (index, or e.g. 'readout'), for models with several")
    p.add_argument("--batch-atoms", type=int, default=512)
    p.add_argument(
        "--skip-errors",
        action="store_true",
        help="leave structures a model cannot handle NaN and record them",
    )
    add_cluster_argument(p)
    p.set_defaults(func=extract)

    p = sub.add_parser("ingest", help="bring existing feature files into a store")
    p.add_argument("structures", type=Path, nargs="+", help="structure files ASE reads")
    p.add_argument("--store", type=Path, required=True)
    p.add_argument(
        "--features",
        nargs="+",
        required=True,
        metavar="NAME=PATH",
        help=".npy, .npz, .pt or .h5 file per model, rows = atoms in order",
    )
    p.add_argument("--key", help="array name inside .npz/.pt/.h5 files with several")
    add_cluster_argument(p, note="ingest itself reads and writes in this process")
    p.set_defaults(func=ingest)

    p = sub.add_parser("info", help="what a store holds")
    p.add_argument("store", type=Path)
    add_cluster_argument(p, note="info itself runs no Dask work")
    p.set_defaults(func=info)

    p = sub.add_parser("compare", help="all-pairs errors of the models in a store")
    p.add_argument("store", type=Path, help="fredask store (or Zarr group with features/)")
    p.add_argument(
        "--metric",
        nargs="+",
        choices=METRICS,
        help="default: gfre; gfre lfre with --level structure",
    )
    p.add_argument(
        "--level",
        choices=("atom", "structure"),
        default="atom",
        help="compare atom features, or per-structure cumulants (computed into the store "
        "when missing) between models and between the orders of one model",
    )
    p.add_argument("--order", type=int, help="--level structure: use cumulants 1..ORDER")
    p.add_argument(
        "--order-matrix",
        metavar="MODEL",
        help="--level structure: the model whose orders are compared (default: the first; "
        "'' for none)",
    )
    p.add_argument(
        "--n-local-points", type=int, help="LFRE neighbours (default: min(p, q) per pair)"
    )
    p.add_argument(
        "--precision",
        choices=("input", "float64"),
        default="input",
        help="epsilon of the fold truncation: the input dtype's (scikit-matter's rule) "
        "or float64's (float32 features taken as exact)",
    )
    p.add_argument(
        "--method",
        choices=("qr", "gram"),
        default="qr",
        help="qr: exact (default); gram: faster, squares the condition number",
    )
    p.add_argument(
        "--split",
        choices=("default", "paper"),
        help="scikit-matter's 50/50 split (default for atoms), or the paper's stratified "
        "test set (default for structures)",
    )
    p.add_argument(
        "--n-test", type=int, default=1000, help="test atoms (or structures) of --split paper"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --split paper")
    add_cluster_argument(p)
    p.add_argument("--output", type=Path, default=Path("fredask-results"))
    p.set_defaults(func=compare)

    p = sub.add_parser("cumulants", help="per-structure cumulants of the models, into the store")
    p.add_argument("store", type=Path)
    p.add_argument("--order", type=int, default=8, help="highest cumulant, 1..8 (default 8)")
    p.add_argument(
        "--kappa8",
        choices=("textbook", "paper"),
        default="textbook",
        help="kappa_8 formula: textbook, or the paper script's (two coefficients swapped)",
    )
    p.add_argument("--no-root-scale", action="store_true", help="keep kappa_j, not its j-th root")
    p.add_argument("--model", action="append", help="features name (default: all; repeatable)")
    p.add_argument(
        "--overwrite", action="store_true", help="compute again, replacing stored cumulants"
    )
    add_cluster_argument(p)
    p.set_defaults(func=cumulants)

    p = sub.add_parser("demo", help="the main job: real models over shipped structures")
    p.add_argument("--model", action="append", help=f"model specs (default: {DEMO_MODELS})")
    p.add_argument("--output", type=Path, default=Path("fredask-results"))
    add_cluster_argument(p)
    p.set_defaults(func=demo)

    add_bench_parser(sub)
    add_cluster_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "demo" and not args.model:
        args.model = list(DEMO_MODELS)
    try:
        args.func(args)
    finally:
        close_embedded()


if __name__ == "__main__":
    sys.exit(main())
