"""Command line: ``fredask compare`` and the ``fredask demo`` main job."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import zarr

from fredask.cluster import LOCAL_SCHEDULERS
from fredask.compare import GLOBAL_METRICS, reconstruction_matrix


def _client(address: str | None):
    """A client for a scheduler address, or a local scheduler name, or None."""
    if address is None or address in LOCAL_SCHEDULERS:
        return address
    import distributed

    return distributed.Client(address)


def _report(result, output: Path, stem: str) -> None:
    paths = result.save(output, stem)
    print(result.matrix.round(4).to_string())
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def store_features(store: str | Path) -> dict[str, zarr.Array]:
    """The per-model arrays under ``features/`` of a Zarr group."""
    group = zarr.open_group(store, mode="r")
    if "features" not in group:
        raise SystemExit(f"{store}: no 'features' group; is this a fredask store?")
    arrays = dict(sorted(group["features"].arrays()))
    if len(arrays) < 2:
        raise SystemExit(f"{store}: need features of at least two models, found {list(arrays)}")
    return arrays


def compare(args: argparse.Namespace) -> None:
    features = store_features(args.store)
    client = _client(args.scheduler)
    for metric in args.metric:
        start = time.perf_counter()
        result = reconstruction_matrix(features, metric, method=args.method, client=client)
        print(f"{metric.upper()} of {len(features)} models in {time.perf_counter() - start:.1f} s")
        _report(result, args.output, metric)


def demo(args: argparse.Namespace) -> None:
    from fredask.demo import ch4_features, write_synthetic_store

    output = args.output
    print("1/2  scikit-matter's degenerate CH4 environments (162 rows)")
    for metric in GLOBAL_METRICS:
        result = reconstruction_matrix(ch4_features(), metric, client="threads", progress=False)
        _report(result, output, f"ch4_{metric}")
    print(f"2/2  synthetic model zoo, {args.rows} atoms in a Zarr store, embedded LocalCluster")
    group = write_synthetic_store(output / "synthetic.zarr", n_rows=args.rows)
    features = dict(sorted(group["features"].arrays()))
    for metric in GLOBAL_METRICS:
        start = time.perf_counter()
        result = reconstruction_matrix(features, metric)
        print(f"{metric.upper()}: {time.perf_counter() - start:.1f} s")
        _report(result, output, f"synthetic_{metric}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fredask",
        description="Feature reconstruction errors between interatomic potentials.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compare", help="all-pairs errors of the models in a Zarr store")
    p.add_argument("store", type=Path, help="Zarr group with per-model arrays under features/")
    p.add_argument("--metric", nargs="+", choices=GLOBAL_METRICS, default=["gfre"])
    p.add_argument(
        "--method",
        choices=("qr", "gram"),
        default="qr",
        help="qr: exact (default); gram: faster, squares the condition number",
    )
    p.add_argument(
        "--scheduler",
        help="address of a running Dask scheduler, or 'threads' / 'sync' "
        "(default: the active client, else the embedded LocalCluster)",
    )
    p.add_argument("--output", type=Path, default=Path("fredask-results"))
    p.set_defaults(func=compare)

    p = sub.add_parser(
        "demo", help="the main job: all-pairs matrices on shipped and generated data"
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="atoms of the synthetic store")
    p.add_argument("--output", type=Path, default=Path("fredask-results"))
    p.set_defaults(func=demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
