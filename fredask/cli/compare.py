"""Comparison commands: ``fredask compare`` (atoms or structures) and ``fredask cumulants``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import zarr

from fredask.cli.cluster import add_cluster_argument, cluster_client
from fredask.cli.store import open_store
from fredask.compare.matrix import METRICS, reconstruction_matrix
from fredask.solvers.settings import RidgeSettings
from fredask.stats.splits import Split, split_usable
from fredask.store.feature_store import FeatureStore, StoreError, group_features


def save_and_print(result, output: Path, stem: str) -> None:
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
        try:
            return group_features(store), None
        except StoreError as error:
            raise SystemExit(str(error)) from None
    return opened.feature_arrays(), opened


def atom_split(args, n_rows: int, store: FeatureStore | None) -> Split:
    usable = np.arange(n_rows) if store is None else store.usable_rows()
    if args.split == "paper" and store is None:
        raise SystemExit("--split paper needs a fredask store (it stratifies by subset)")
    groups = None if store is None else store.atom_subsets()
    return split_usable(usable, groups, args.split or "default", args.n_test, args.seed)


def cumulants(args: argparse.Namespace) -> None:
    """Per-structure cumulants of every (or the named) model, into the store."""
    from fredask.structure.stored import write_cumulants

    store = open_store(args.store, mode="a")
    client = cluster_client(args.cluster)
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

    store = open_store(args.store, mode="a")
    names = store.feature_names()
    client = cluster_client(args.cluster)
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
        save_and_print(result, args.output, stem)
        start = time.perf_counter()


def compare(args: argparse.Namespace) -> None:
    if args.level == "structure":
        return compare_structures(args)
    features, store = store_features(args.store)
    if len(features) < 2:
        raise SystemExit(
            f"{args.store}: need features of at least two models, found {list(features)}"
        )
    client = cluster_client(args.cluster)
    split = atom_split(args, next(iter(features.values())).shape[0], store)
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
        save_and_print(result, args.output, metric)


def add_parsers(sub) -> None:
    """Add ``compare`` and ``cumulants`` to the CLI's subparsers."""
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
