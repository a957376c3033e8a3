"""Store commands: ``fredask extract``, ``fredask ingest``, ``fredask info``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from fredask.cli.cluster import add_cluster_argument, cluster_client
from fredask.store.feature_store import FeatureStore, StoreError


def open_store(path: Path, mode: str = "r") -> FeatureStore:
    try:
        return FeatureStore.open(path, mode=mode)
    except StoreError as error:
        raise SystemExit(str(error)) from None


def read_structure_files(paths: list[Path]):
    from fredask.store.structures import StructureFileError, read_structures

    try:
        return read_structures(paths)
    except StructureFileError as error:
        raise SystemExit(str(error)) from None


def open_or_create_store(store: Path, paths: list[Path]) -> FeatureStore:
    return FeatureStore.open_or_create(
        store, read_structure_files(paths), what=", ".join(map(str, paths))
    )


def info(args: argparse.Namespace) -> None:
    try:
        print(FeatureStore.open(args.store).info())
    except StoreError as error:
        raise SystemExit(str(error)) from None


def extract(args: argparse.Namespace) -> None:
    from fredask.extract import get_extractor
    from fredask.extract.runner import extract as run

    store = open_or_create_store(args.store, args.structures)
    client = cluster_client(args.cluster)
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
        read_structure_files(args.structures),
        features,
        key=args.key,
        command=shlex.join(sys.argv),
    )
    print(store.info())


def add_parsers(sub) -> None:
    """Add ``extract``, ``ingest`` and ``info`` to the CLI's subparsers."""
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
