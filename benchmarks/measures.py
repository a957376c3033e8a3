"""Benchmark: the new global measures and the bootstrap, against the GFRE matrix alone.

For every requested number of rows N, on the synthetic Zarr v3 store of the
GFRE benchmark (4 models x 128 float32 features,
:func:`fredask.bench.data.synthetic_store`), this script times on a
``LocalCluster`` of two single-threaded worker processes:

* ``gfre``: the 4 x 4 GFRE matrix alone (:func:`fredask.compare.reconstruction_matrix`);
* ``all global``: GFRE plus CKA, CCA and the Procrustes distance from one pass
  (:func:`fredask.compare.matrix.global_matrices`);
* ``bootstrap``: the GFRE matrix with ``bootstrap=200`` over structures of 8
  consecutive rows (``--atoms-per-structure``), which adds one pass of
  per-group train moments and 200 weighted sums;
* ``cka_bootstrap``: the CKA matrix with ``bootstrap=200``: one pass of
  per-group test scatters (64 groups), 200 merges and re-solves.

The targets (issue 16): ``all global`` at most 1.2x ``gfre``, ``bootstrap`` at
most 2x.  Results are written to ``measures.md`` and ``measures.json`` in
``--results-dir``.

Usage::

    .venv/bin/python benchmarks/measures.py --sizes 100000 1000000
"""

from __future__ import annotations

import argparse
from pathlib import Path

import dask.array as da
import numpy as np

from fredask.bench.data import synthetic_store
from fredask.bench.driver import directory_arguments, log, run_benchmark
from fredask.bench.measure import timed
from fredask.bench.report import benchmark_page, fmt
from fredask.compare.matrix import global_matrices, reconstruction_matrix
from fredask.store.feature_store import group_features

HERE = Path(__file__).resolve().parent
N_MODELS = 4
N_FEATURES = 128
CHUNK_ROWS = 2**15
NEW_GLOBAL = ("gfre", "cka", "cca", "procrustes")
N_RESAMPLES = 200
TARGETS = {"all_global": 1.2, "bootstrap": 2.0}
KINDS = ("gfre", "all_global", "bootstrap", "cka_bootstrap")
HEADER = [
    "N", "structures", "gfre s", "all global s", "all global / gfre", "bootstrap s",
    "bootstrap / gfre", "CKA bootstrap s", "CKA bootstrap / gfre",
    "peak worker RSS MiB (gfre / all / boot / CKA boot)",
    "GFRE all-global vs alone (max abs)", "median 90% interval width",
]  # fmt: skip


def runs(client, features: dict, structures: np.ndarray) -> dict:
    """The three computations, as zero-argument calls."""
    return {
        "gfre": lambda: reconstruction_matrix(features, "gfre", client=client, progress=False),
        "all_global": lambda: global_matrices(features, NEW_GLOBAL, client=client, progress=False),
        "bootstrap": lambda: reconstruction_matrix(
            features,
            "gfre",
            client=client,
            progress=False,
            row_structures=structures,
            bootstrap=N_RESAMPLES,
        ),
        "cka_bootstrap": lambda: reconstruction_matrix(
            features,
            "cka",
            client=client,
            progress=False,
            row_structures=structures,
            bootstrap=N_RESAMPLES,
        ),
    }


def measure_size(client, n_rows: int, args) -> dict:
    """Every measurement for one N, on the same store."""
    path = synthetic_store(args.data_dir, n_rows, N_MODELS, N_FEATURES, CHUNK_ROWS, args.seed)
    log(f"N={n_rows:,}: store {path.name}")
    features = {name: da.from_zarr(x) for name, x in group_features(path).items()}
    structures = np.arange(n_rows) // args.atoms_per_structure
    head = {name: x[: 2 * CHUNK_ROWS] for name, x in features.items()}
    for call in runs(client, head, structures[: 2 * CHUNK_ROWS]).values():  # warm-up
        call()
    timings = {}
    for kind, call in runs(client, features, structures).items():
        timings[kind] = timed(client, call, args.repeats)
        log(f"  {kind}: {timings[kind].seconds:.2f} s")
    gfre = timings["gfre"].value.matrix
    together = timings["all_global"].value
    boot = timings["bootstrap"].value
    return {
        "n_rows": n_rows,
        "n_structures": int(structures[-1]) + 1,
        "seconds": {kind: t.seconds for kind, t in timings.items()},
        "peak_worker_mib": {
            kind: max(t.worker_peak_rss.values()) / 2**20 for kind, t in timings.items()
        },
        "gfre_agreement": float(np.max(np.abs(together["gfre"].matrix - gfre).to_numpy())),
        "cka_range": [float(together["cka"].matrix.min().min()), 1.0],
        "interval_width": float(
            np.median((boot.intervals.high - boot.intervals.low).to_numpy()[~np.eye(4, dtype=bool)])
        ),
    }


def page(results: list[dict], context: dict) -> str:
    """The markdown page."""
    rows = []
    for r in results:
        s = r["seconds"]
        rows.append([
            f"{r['n_rows']:,}", f"{r['n_structures']:,}", fmt(s["gfre"]), fmt(s["all_global"]),
            fmt(s["all_global"] / s["gfre"]), fmt(s["bootstrap"]), fmt(s["bootstrap"] / s["gfre"]),
            fmt(s["cka_bootstrap"]), fmt(s["cka_bootstrap"] / s["gfre"]),
            " / ".join(f"{r['peak_worker_mib'][k]:.0f}" for k in KINDS),
            f"{r['gfre_agreement']:.1e}", f"{r['interval_width']:.4f}",
        ])  # fmt: skip
    goals = [
        f"all global measures together <= {TARGETS['all_global']}x the GFRE matrix: "
        + ", ".join(
            f"N={r['n_rows']:,}: {r['seconds']['all_global'] / r['seconds']['gfre']:.2f}x"
            for r in results
        ),
        f"bootstrap B={N_RESAMPLES} <= {TARGETS['bootstrap']}x the GFRE matrix: "
        + ", ".join(
            f"N={r['n_rows']:,}: {r['seconds']['bootstrap'] / r['seconds']['gfre']:.2f}x"
            for r in results
        ),
    ]
    return benchmark_page(
        f"New global measures and the bootstrap ({N_MODELS} models x {N_FEATURES} float32 "
        "features, 16 pairs)",
        context,
        [
            "gfre: reconstruction_matrix(features, 'gfre') (method qr). all global: "
            "global_matrices(features, ('gfre', 'cka', 'cca', 'procrustes')), one pass. "
            f"bootstrap: the GFRE matrix with bootstrap={N_RESAMPLES} over structures of "
            f"{context['args']['atoms_per_structure']} consecutive rows; CKA bootstrap: the CKA "
            f"matrix with bootstrap={N_RESAMPLES} (64 groups of structures). Every time includes "
            f"reading the store. Timings: best of {context['repeats']}.",
        ],
        [("", HEADER, rows)],
        goals,
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--atoms-per-structure", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1, help="timings are the best of this")
    directory_arguments(parser, HERE)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    run_benchmark("measures", args, measure_size, page, repeats=args.repeats)


if __name__ == "__main__":
    main()
