"""``fredask bench``: a scaling study from the command line."""

from __future__ import annotations

import argparse
from pathlib import Path

from fredask.cli.checks import CommandError, writable_folder

#: fredask.bench.stages.STAGES, spelled here so that ``--help`` imports nothing heavy.
STAGES = ("gfre", "lfre", "cumulants", "extraction")


def _count(text: str) -> int:
    """An integer that may be written as ``1e6``."""
    value = float(text)
    if value != int(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"not a positive integer: {text!r}")
    return int(value)


def add_parser(sub) -> argparse.ArgumentParser:
    """Add the ``bench`` subcommand to ``fredask``'s subparsers."""
    p = sub.add_parser(
        "bench",
        help="scaling study: time a stage over atoms, features, chunk sizes and workers",
    )
    p.add_argument("--stage", choices=STAGES, default="gfre")
    p.add_argument("--atoms", type=_count, nargs="+", default=[100_000], help="e.g. 1e5 1e6")
    p.add_argument("--features", type=_count, nargs="+", default=[128], help="per model")
    p.add_argument("--chunk-rows", type=_count, nargs="+", default=[32_768])
    p.add_argument("--workers", type=_count, nargs="+", default=[1, 2])
    p.add_argument("--models", type=_count, default=4, help="models of the synthetic data")
    p.add_argument(
        "--store", type=Path, help="time prefixes of this fredask store instead of synthetic data"
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path("benchmarks/_data"),
        help="where synthetic stores are written and reused",
    )
    p.add_argument("--repeats", type=_count, default=1, help="timings are the best of this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=("qr", "gram"), default="qr", help="gfre statistics")
    p.add_argument("--n-test", type=_count, default=1000, help="lfre test rows")
    p.add_argument("--order", type=_count, default=8, help="cumulant order")
    p.add_argument("--model", default="chgnet:0.3.0", help="extraction model spec")
    p.add_argument("--output", type=Path, default=Path("fredask-results/bench"))
    p.add_argument("--name", help="file stem of the outputs (default: the stage)")
    p.add_argument(
        "--cluster",
        metavar="PROFILE",
        help="a cluster profile (e.g. slurm-cpu) scaled to each --workers count "
        "(default: a LocalCluster per count)",
    )
    p.set_defaults(func=bench)
    return p


def _scaled(profile: str):
    """``clients(n)``: a new cluster of ``profile`` with ``n`` workers."""
    from fredask.cluster.clients import get_client

    def clients(n_workers: int):
        client = get_client(profile, set_as_default=False)
        if client.cluster is None:
            raise CommandError(f"--cluster {profile}: bench needs a profile it can scale")
        client.cluster.scale(n_workers)
        client.wait_for_workers(n_workers)
        return client

    return clients


def bench(args: argparse.Namespace) -> None:
    """Run the grid; write CSV, markdown and the two plots."""
    writable_folder(args.output)
    writable_folder(args.data_dir, "--data-dir")
    if args.store is not None and not args.store.exists():
        raise CommandError(f"store {args.store} does not exist")
    from fredask.bench.measure import load_average
    from fredask.bench.report import markdown_report, write_csv, write_plots
    from fredask.bench.stages import StageOptions
    from fredask.bench.study import Grid, run_study

    grid = Grid(
        stage=args.stage,
        atoms=args.atoms,
        features=args.features,
        chunk_rows=args.chunk_rows,
        workers=args.workers,
        n_models=args.models,
        store=None if args.store is None else str(args.store),
        data_dir=str(args.data_dir),
        repeats=args.repeats,
        seed=args.seed,
        options=StageOptions(args.method, args.n_test, args.order, args.model),
    )
    name = args.name or args.stage
    before = load_average()
    results = run_study(grid, clients=None if args.cluster is None else _scaled(args.cluster))
    after = load_average()
    csv = write_csv(results, args.output / f"{name}.csv")
    plots = write_plots(results, args.output, name, title=args.stage)
    notes = [f"Load average (1 min) {before:.2f} at start, {after:.2f} at end."]
    markdown = markdown_report(results, f"Scaling study: {args.stage}", notes)
    (args.output / f"{name}.md").write_text(markdown)
    print(markdown)
    print("wrote " + ", ".join(str(p) for p in (csv, args.output / f"{name}.md", *plots.values())))
