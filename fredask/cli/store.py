"""Store commands: ``fredask extract``, ``fredask ingest``, ``fredask info``.

Everything that can be checked is checked before the store is created or
opened for writing: the input files, the model specs and their options, the
``--device`` (its spelling first of all; then that torch sees the CUDA device:
here, before any structure file is read, when the work runs in this process or
the embedded LocalCluster, else on the cluster's workers once connected), the
element coverage, the features files' row counts, the store folder, the
cluster.  A refused command leaves the disk as it was.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from fredask.cli.checks import CommandError, existing_files, new_store_path
from fredask.cli.cluster import LOCAL_SCHEDULERS, add_cluster_argument, cluster_client
from fredask.cli.models import (
    add_model_arguments,
    build_extractors,
    check_device_argument,
    check_elements,
    model_options,
)

#: Feature file types that hold several arrays (``--key`` picks one).
MULTI_ARRAY = (".npz", ".pt", ".pth", ".h5", ".hdf5")


def open_store(path: str | Path, mode: str = "r"):
    """An existing fredask store, or one line saying why it cannot be read.

    Parameters
    ----------
    path : path
    mode : {"r", "a"}

    Returns
    -------
    FeatureStore
    """
    path = Path(path)
    if not path.exists():
        raise CommandError(f"store {path} does not exist")
    from fredask.store.feature_store import FeatureStore

    store = FeatureStore.open(path, mode=mode)
    try:  # the parts every command reads: the structure table and the features group
        store.n_atoms_per_structure()
        store.feature_names(complete_only=False)
    except KeyError as error:
        raise CommandError(
            f"store {path} is damaged: it has no {error} group or array; "
            f"run `fredask verify {path}`"
        ) from None
    return store


def read_structure_files(paths: list[Path]):
    """The structure table of the files (missing or unreadable files: one line)."""
    from fredask.store.structures import read_structures

    return read_structures(existing_files(paths, "structure file"))


def target_store(path: Path, table, what: str):
    """The store at ``path`` if it exists (holding ``table``'s structures), else None.

    Checks only; the store is opened read-only, so nothing is written.
    """
    if not new_store_path(path).exists():
        return None
    store = open_store(path)
    store.check_fingerprints(table.fingerprint, what=what)
    return store


def info(args: argparse.Namespace) -> None:
    """Print what a store holds."""
    print(open_store(args.store).info())


def extract(args: argparse.Namespace) -> None:
    """Run models over structures into a store, resumably."""
    from fredask.extract.device import check_devices
    from fredask.extract.runner import extract as run
    from fredask.extract.runner import extraction_source
    from fredask.store.feature_store import FeatureStore

    check_device_argument(args)
    paths = existing_files(args.structures, "structure file")
    extractors = build_extractors(args.model, model_options(args))
    here = args.cluster is None or args.cluster in LOCAL_SCHEDULERS  # the embedded cluster: here
    if here:
        check_devices(extractors)
    new_store_path(args.store)
    table = read_structure_files(paths)
    what = ", ".join(map(str, paths))
    target_store(args.store, table, what)
    if not args.skip_errors:
        check_elements(extractors, table)
    client = cluster_client(args)
    if not here:
        check_devices(extractors, client)
    store = FeatureStore.open_or_create(args.store, table, what=what)
    for extractor in extractors:  # refuse any model before extracting the first
        store.check_source(extractor.name, extraction_source(extractor), args.overwrite)
    for extractor in extractors:
        start = time.perf_counter()
        report = run(
            store,
            extractor,
            client=client,
            batch_atoms=args.batch_atoms,
            skip_errors=args.skip_errors,
            overwrite=args.overwrite,
        )
        seconds = time.perf_counter() - start
        print(
            f"{report.name}: {report.chunks_computed} of {report.chunks_total} chunks computed "
            f"in {seconds:.1f} s; {len(report.skipped)} structures skipped"
        )
    print(store.info())


def feature_files(items: list[str]) -> dict[str, Path]:
    """``--features NAME=PATH ...`` as ``{name: path}``, each file existing."""
    features: dict[str, Path] = {}
    for item in items:
        name, _, path = item.partition("=")
        name = name.strip()
        if not path or not name:
            raise CommandError(f"--features takes NAME=PATH, got {item!r}")
        if name in features:
            raise CommandError(f"--features names {name!r} twice")
        features[name] = Path(path)
    existing_files(features.values(), "features file")
    return features


def check_feature_files(features: dict[str, Path], key: str | None, n_atoms: int) -> None:
    """Refuse a features file whose shape does not fit the structures, before any write."""
    from fredask.store.ingest import load_feature_file

    if key is not None and not any(p.suffix.lower() in MULTI_ARRAY for p in features.values()):
        raise CommandError("--key applies to .npz, .pt and .h5 files only; leave it out")
    for path in features.values():
        shape = tuple(load_feature_file(path, key).shape)
        if len(shape) != 2 or shape[0] != n_atoms:
            raise CommandError(
                f"features file {path}: shape {shape}; the structures have {n_atoms} atoms, "
                f"so expected ({n_atoms}, n_features)"
            )


def ingest(args: argparse.Namespace) -> None:
    """Bring existing feature files into a store."""
    from fredask.store.ingest import ingest as run

    features = feature_files(args.features)
    paths = existing_files(args.structures, "structure file")
    new_store_path(args.store)
    table = read_structure_files(paths)
    target_store(args.store, table, "the structure files")
    check_feature_files(features, args.key, table.n_atoms_total)
    store = run(
        args.store,
        table,
        features,
        key=args.key,
        command=shlex.join(sys.argv),
        overwrite=args.overwrite,
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
        help="model spec, e.g. chgnet:0.3.0, sevenn:7net-0, sevenn:7net-mf-0 with --modal PBE, "
        "mace:PATH (repeatable)",
    )
    p.add_argument("--store", type=Path, required=True)
    add_model_arguments(p)
    p.add_argument("--batch-atoms", type=int, default=512, help="atoms per model call")
    p.add_argument(
        "--skip-errors",
        action="store_true",
        help="leave structures a model cannot handle NaN and record them",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace features of the same name computed from another source",
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
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace features of the same name that came from another file",
    )
    add_cluster_argument(p, note="ingest itself reads and writes in this process")
    p.set_defaults(func=ingest)

    p = sub.add_parser("info", help="what a store holds")
    p.add_argument("store", type=Path)
    add_cluster_argument(p, note="info itself runs no Dask work")
    p.set_defaults(func=info)
