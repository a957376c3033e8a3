"""Command line: ``fredask extract | ingest | info | compare | cumulants | demo | bench``.

And ``fredask cluster``; every command that runs Dask work takes ``--cluster``.
Each module adds its commands to the parser: :mod:`.store` (extract, ingest,
info), :mod:`.compare` (compare, cumulants), :mod:`.demo`, :mod:`.bench`,
:mod:`.cluster`.
"""

from __future__ import annotations

import argparse
import sys

from fredask.cli import bench, cluster, compare, demo, store
from fredask.cluster.clients import close_embedded


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fredask",
        description="Feature reconstruction errors between interatomic potentials.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    store.add_parsers(sub)
    compare.add_parsers(sub)
    demo.add_parser(sub)
    bench.add_parser(sub)
    cluster.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "demo" and not args.model:
        args.model = list(demo.DEMO_MODELS)
    try:
        args.func(args)
    finally:
        close_embedded()


if __name__ == "__main__":
    sys.exit(main())
