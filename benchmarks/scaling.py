"""Benchmark: the committed scaling study of fredask on this machine.

Runs :mod:`fredask.bench` (the library behind ``fredask bench``) over

* ``gfre``: the all-pairs GFRE matrix (exact ``qr`` statistics) of 4 synthetic
  models x 128 float32 features at 10^5, 10^6 and 10^7 atoms, chunks of 32768
  rows, on 1 and 2 workers;
* ``chunks``: the same at 10^6 atoms with chunks of 8192 and 131072 rows;
* ``features``: the same at 10^6 atoms with 64 and 256 features per model;
* ``lfre``: the LFRE of model m1 from m0 (1000 test rows, k = 128) at 10^5
  and 10^6 atoms;
* ``cumulants``: the order-8 structure cumulants of the 4 models (structures
  of 16 atoms) at 10^5 and 10^6 atoms;

each on 1 and 2 single-threaded worker processes (both clusters open, each point
measured on one then the other), best of 2 up to 10^6 atoms, with the floor of
``gfre_matrix.py`` generalised (read once + one GEMM; see
``fredask/bench/stages.py``).  The synthetic data is ``gfre_matrix.py``'s
generator (:func:`fredask.bench.data.synthetic_store`), in stores
``scaling_n{N}_m{M}_f{F}_c{C}_s0.zarr`` in ``--data-dir`` (default
``benchmarks/_data``) written once and reused (10^7 x 4 x 128: 17 GiB).

Output in ``--results-dir`` (default ``benchmarks/results``): ``scaling.csv``
(one row per point and worker count, with the machine and the load average
before and after), ``scaling.md`` and the plots ``scaling_*.png``.

Usage::

    .venv/bin/python benchmarks/scaling.py
    .venv/bin/python benchmarks/scaling.py --atoms 1e4 1e5 --sweep-atoms 1e5 \\
        --results-dir /tmp/scaling   # a quick try
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from fredask.bench import (
    Grid,
    StageOptions,
    markdown_report,
    run_study,
    sweep_figure,
    write_csv,
    write_plots,
)
from fredask.bench.driver import log
from fredask.bench.measure import load_average, machine, versions

HERE = Path(__file__).resolve().parent
PARTS = ("gfre", "chunks", "features", "lfre", "cumulants")
CHUNK_ROWS = 32_768
N_FEATURES = 128


def study_grids(args: argparse.Namespace) -> list[tuple[str, Grid]]:
    """The grids of the study with their part; best of ``--repeats`` up to
    ``--repeats-max-atoms`` atoms, one run above."""
    common = {
        "workers": [1, 2],
        "n_models": 4,
        "data_dir": str(args.data_dir),
        "repeats": args.repeats,
    }
    sweep = [args.sweep_atoms]
    small = sorted(n for n in args.atoms if n <= args.repeats_max_atoms)
    large = sorted(n for n in args.atoms if n > args.repeats_max_atoms)
    grids = {
        "gfre": [Grid("gfre", atoms=small, **common)]
        + ([Grid("gfre", atoms=large, **common | {"repeats": 1})] if large else []),
        "chunks": [
            Grid("gfre", atoms=sweep, chunk_rows=[CHUNK_ROWS // 4, CHUNK_ROWS * 4], **common)
        ],
        "features": [
            Grid("gfre", atoms=sweep, features=[N_FEATURES // 2, N_FEATURES * 2], **common)
        ],
        "lfre": [Grid("lfre", atoms=small, options=StageOptions(n_test=1000), **common)],
        "cumulants": [Grid("cumulants", atoms=small, options=StageOptions(order=8), **common)],
    }
    return [(part, grid) for part in args.parts for grid in grids[part] if grid.atoms]


def main_part(results: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The rows of ``stage`` outside the chunk and feature sweeps."""
    return results[(results["stage"] == stage) & ~results["part"].isin(["chunks", "features"])]


def sweep_part(results: pd.DataFrame, part: str, parameter: str, atoms: int) -> pd.DataFrame:
    """The sweep's rows and the main grid's row at the same atoms."""
    same = (results["stage"] == "gfre") & (results["n_atoms"] == atoms)
    default = (results["chunk_rows"] == CHUNK_ROWS) & (results["n_features"] == N_FEATURES)
    return results[same & ((results["part"] == part) | default)].drop_duplicates(
        subset=[parameter, "workers"]
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    count = lambda text: int(float(text))  # noqa: E731
    parser.add_argument("--atoms", type=count, nargs="+", default=[10**5, 10**6, 10**7])
    parser.add_argument("--sweep-atoms", type=count, default=10**6)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=2, help="timings are the best of this")
    parser.add_argument(
        "--repeats-max-atoms", type=count, default=10**6, help="larger N are timed once"
    )
    parser.add_argument("--data-dir", type=Path, default=HERE / "_data")
    parser.add_argument("--results-dir", "--output", type=Path, default=HERE / "results")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    host = machine()
    start_load, start = load_average(), time.perf_counter()
    parts = []
    for part, grid in study_grids(args):
        log(f"--- {part}: {grid.stage}, atoms {grid.atoms}, workers {grid.workers}")
        parts.append(run_study(grid).assign(part=part))
    results = pd.concat(parts, ignore_index=True)
    end_load, minutes = load_average(), (time.perf_counter() - start) / 60
    output = args.results_dir
    write_csv(results, output / "scaling.csv")
    images = []
    for stage in results["stage"].unique():
        rows = main_part(results, stage)
        paths = write_plots(
            rows, output, f"scaling_{stage}", title=f"{stage}, {host['description']}"
        )
        images += list(paths.values())
    for part, parameter in (("chunks", "chunk_rows"), ("features", "n_features")):
        if part in args.parts:
            rows = sweep_part(results, part, parameter, args.sweep_atoms)
            path = output / f"scaling_{part}.png"
            sweep_figure(rows, parameter, title=f"gfre, {host['description']}").savefig(
                path, dpi=120
            )
            images.append(path)
    libraries = ", ".join(f"{k} {v}" for k, v in versions().items())
    notes = [
        f"Load average (1 min): {start_load:.2f} at start, {end_load:.2f} at end of the "
        f"{minutes:.0f}-minute study; per point in the last column. The study itself "
        "keeps about one run queue busy per working worker (1 or 2); more means other "
        "processes were running on this shared machine. The worker counts of a point are "
        "measured one after the other on clusters kept open for the whole study, so they "
        f"see similar load; timings are the best of {args.repeats} up to "
        f"{args.repeats_max_atoms:,} atoms and single runs above (column `repeats`).",
        "",
        f"Versions: {libraries}.",
        "",
        "Command: `.venv/bin/python benchmarks/scaling.py` (parts: "
        + ", ".join(args.parts)
        + "). Data: synthetic float32 features (the generator of `gfre_matrix.py`) in "
        "zstd-compressed Zarr stores under `benchmarks/_data/`; fredask times include reading "
        "them; cold or warm page cache as left by the previous point (a 10^7 x 4 x 128 store, "
        "17 GiB, does not fit in this machine's page cache next to the others).",
        "",
        "Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in images) + ".",
    ]
    sections = {part: results[results["part"] == part] for part in args.parts}
    markdown = markdown_report(results, "Scaling study", notes, sections)
    (output / "scaling.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
