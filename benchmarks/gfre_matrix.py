"""Benchmark: the 4 x 4 GFRE matrix of fredask against its floor and scikit-matter.

For every requested number of rows N, on one synthetic Zarr v3 store
(:func:`fredask.bench.data.synthetic_store` under ``--data-dir``,
made once and reused), this script times

* fredask's :func:`fredask.compare.reconstruction_matrix` (``"gfre"``) with
  ``method="qr"`` and ``method="gram"`` on a ``LocalCluster`` of two
  single-threaded worker processes;
* the floor on the same cluster, defined as
  ``read floor + Gram floor``:

  - read floor: read and decompress every chunk of the 4 stored arrays once
    (:func:`fredask.bench.floors.read_floor`);
  - Gram floor: accumulate ``sum_c Z_c^T Z_c`` in float32 over the row blocks
    ``Z_c`` (32768 x 512, the concatenated features, N rows in all), from one
    block already held by each worker (no I/O; :func:`fredask.bench.floors.gram_floor`);

* scikit-matter's ``global_reconstruction_error`` on the 12 ordered pairs, on
  numpy arrays loaded from the store, in a child process (its memory is
  measured alone); if the pairs would take longer than ``--skmatter-budget``
  seconds, only the first pairs are timed and the total is extrapolated
  (:func:`fredask.bench.references.skmatter_gfre_pairs`).

Peak memory is the high-water mark of the resident set (``VmHWM``), reset
before each run through ``/proc/self/clear_refs`` (Linux only), for each
worker, for this (client) process and for the scikit-matter child.

Results are printed as a markdown page and written to ``gfre_matrix.md`` and
``gfre_matrix.json`` in ``--results-dir`` (default ``benchmarks/results``).

Usage::

    .venv/bin/python benchmarks/gfre_matrix.py --sizes 100000 1000000 4000000
"""

from __future__ import annotations

import argparse
import time
from itertools import product
from pathlib import Path

import dask.array as da
import numpy as np

from fredask.bench.data import synthetic_path, synthetic_store
from fredask.bench.driver import directory_arguments, log, run_benchmark
from fredask.bench.floors import gram_floor, read_floor
from fredask.bench.measure import MIB, directory_bytes, in_child, timed
from fredask.bench.references import skmatter_gfre_pairs
from fredask.bench.report import benchmark_page, fmt
from fredask.compare import reconstruction_matrix
from fredask.store.feature_store import group_features

HERE = Path(__file__).resolve().parent
N_MODELS = 4
N_FEATURES = 128
CHUNK_ROWS = 2**15
MODEL_NAMES = tuple(f"m{m}" for m in range(N_MODELS))
PAIRS = tuple((s, t) for s, t in product(MODEL_NAMES, MODEL_NAMES) if s != t)
METHODS = ("qr", "gram")
FLOOR_DEFINITION = (
    "floor = read floor + Gram floor. Read floor: wall time to read and decompress every "
    "chunk of the 4 stored arrays once on the cluster (a per-chunk sum). Gram floor: wall "
    "time for the same 2 workers to accumulate sum_c Z_c^T Z_c in float32 over N/32768 row "
    "blocks Z_c of the 512 concatenated columns, from a block each worker already holds "
    "(no I/O)."
)


def ensure_store(data_dir: Path, n_rows: int, seed: int) -> tuple[Path, float | None]:
    """The synthetic store of ``n_rows`` rows, and the seconds writing it took (None: reused)."""
    existed = synthetic_path(data_dir, n_rows, N_MODELS, N_FEATURES, CHUNK_ROWS, seed).exists()
    start = time.perf_counter()
    path = synthetic_store(data_dir, n_rows, N_MODELS, N_FEATURES, CHUNK_ROWS, seed)
    seconds = time.perf_counter() - start
    return path, (None if existed and seconds < 1 else seconds)


def fredask_matrix(client, features: dict, method: str):
    """The 4 x 4 GFRE matrix (rows source, columns target) from fredask."""
    return reconstruction_matrix(
        features, "gfre", method=method, client=client, progress=False
    ).matrix


def measure_size(client, n_rows: int, args) -> dict:
    """Every measurement for one N, on the same store."""
    path, generate_s = ensure_store(args.data_dir, n_rows, args.seed)
    written = "reused" if generate_s is None else f"written in {generate_s:.1f} s"
    log(f"N={n_rows:,}: store {path.name} {written}")
    features = group_features(path)
    head = {name: da.from_zarr(x)[: 2 * CHUNK_ROWS] for name, x in features.items()}
    for method in METHODS:  # warm-up: imports and first calls on the workers
        fredask_matrix(client, head, method)
    arrays = [da.from_zarr(x) for x in features.values()]
    read = read_floor(arrays, client, args.repeats)
    width = N_MODELS * N_FEATURES
    gram = {
        dtype: gram_floor(client, n_rows, CHUNK_ROWS, width, dtype, args.repeats)
        for dtype in (np.float32, np.float64)
    }
    floor = read.seconds + gram[np.float32].seconds
    log(f"  floor {floor:.2f} s (read {read.seconds:.2f} s)")
    runs = {}
    for method in METHODS:
        runs[method] = timed(
            client, lambda m=method: fredask_matrix(client, features, m), args.repeats
        )
        log(f"  fredask {method}: {runs[method].seconds:.2f} s")
    skmatter = None
    if n_rows <= max(args.skmatter_max, 100_000):
        log("  scikit-matter ...")
        skmatter = in_child(skmatter_gfre_pairs, str(path), PAIRS, args.skmatter_budget)
        if "error" in skmatter:
            log(f"  scikit-matter failed: {skmatter['error']}")
        else:
            log(f"  scikit-matter: {skmatter['total_s']:.1f} s for 12 pairs")
    matrices = {method: run.value for method, run in runs.items()}
    return {
        "n_rows": n_rows,
        "store": path.name,
        "store_bytes": directory_bytes(path),
        "generate_s": generate_s,
        "read_floor_s": read.seconds,
        "gram_floor_s": gram[np.float32].seconds,
        "gram_floor_f64_s": gram[np.float64].seconds,
        "floor_s": floor,
        "fredask": {
            method: {**run.to_dict(), "matrix": matrices[method].to_dict()}
            for method, run in runs.items()
        },
        "skmatter": skmatter,
        "agreement": agreement(matrices, skmatter),
    }


def agreement(matrices: dict, skmatter: dict | None) -> dict:
    """How the fredask matrices agree with each other and with scikit-matter."""
    qr, gram = matrices["qr"], matrices["gram"]
    off_diagonal = [qr.loc[s, t] for s, t in PAIRS]
    out = {
        "qr_vs_gram": float(
            max(abs(qr.loc[s, t] - gram.loc[s, t]) / qr.loc[s, t] for s, t in PAIRS)
        ),
        "gfre_min": float(min(off_diagonal)),
        "gfre_max": float(max(off_diagonal)),
    }
    if skmatter and "values" in skmatter:
        out["pairs_compared"] = len(skmatter["values"])
        for method, matrix in matrices.items():
            out[f"{method}_vs_skmatter"] = max(
                abs(matrix.loc[key.split("->")[0], key.split("->")[1]] - value) / abs(value)
                for key, value in skmatter["values"].items()
            )
    return out


# ------------------------------------------------------------------------- page


def _peak(run: dict) -> str:
    return f"{max(run['worker_peak_rss'].values()) / MIB:.0f}"


def size_row(r: dict) -> list[str]:
    floor, qr, gram = r["floor_s"], r["fredask"]["qr"], r["fredask"]["gram"]
    sk = r.get("skmatter") or {}
    sk_total = sk.get("total_s")
    sk_text = fmt(sk_total, 1)
    if sk.get("extrapolated"):
        sk_text = f"~{sk_text}* ({sk['pairs_timed']}/12 timed)"
    return [
        f"{r['n_rows']:,}",
        f"{r['store_bytes'] / MIB:.0f} MiB",
        fmt(r["read_floor_s"]),
        fmt(r["gram_floor_s"]),
        fmt(floor),
        fmt(qr["seconds"]),
        fmt(gram["seconds"]),
        fmt(qr["seconds"] / floor),
        fmt(gram["seconds"] / floor),
        sk_text,
        fmt(None if sk_total is None else sk_total / qr["seconds"], 1),
        _peak(qr),
        _peak(gram),
    ]


def memory_row(r: dict) -> list[str]:
    qr, gram = r["fredask"]["qr"], r["fredask"]["gram"]
    sk = r.get("skmatter") or {}

    def workers(run: dict) -> str:
        return " / ".join(f"{v / MIB:.0f}" for v in sorted(run["worker_peak_rss"].values()))

    sk_text = "—"
    if "peak_rss" in sk:
        sk_text = f"{sk['peak_rss'] / MIB:.0f} (baseline {sk['baseline_rss'] / MIB:.0f})"
    return [
        f"{r['n_rows']:,}",
        workers(qr),
        workers(gram),
        f"{qr['client_peak_rss'] / MIB:.0f}",
        f"{gram['client_peak_rss'] / MIB:.0f}",
        sk_text,
    ]


def breakdown_rows(r: dict) -> list[list[str]]:
    return [
        [
            f"{r['n_rows']:,}",
            method,
            fmt(run["seconds"]),
            fmt(run["tasks_span_s"]),
            fmt(run["seconds"] - run["tasks_span_s"]),
            fmt(run["worker_compute_s"]),
        ]
        for method, run in r["fredask"].items()
    ]


def agreement_row(r: dict) -> list[str]:
    a = r["agreement"]

    def sci(key: str) -> str:
        return "—" if a.get(key) is None else f"{a[key]:.1e}"

    return [
        f"{r['n_rows']:,}",
        str(a.get("pairs_compared", 0)),
        sci("qr_vs_skmatter"),
        sci("gram_vs_skmatter"),
        sci("qr_vs_gram"),
        f"{a['gfre_min']:.3f} .. {a['gfre_max']:.3f}",
    ]


def targets(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        qr, gram = r["fredask"]["qr"]["seconds"], r["fredask"]["gram"]["seconds"]
        line = (
            f"N={r['n_rows']:,}: gram/floor {gram / r['floor_s']:.2f} (target <= 2), "
            f"qr/floor {qr / r['floor_s']:.2f} (target <= 4)"
        )
        sk = r.get("skmatter") or {}
        if "total_s" in sk:
            line += f", skmatter/qr {sk['total_s'] / qr:.1f} (target >= 10)"
        lines.append(line)
    by_n = {r["n_rows"]: r for r in results}
    if len(by_n) > 1:
        largest = max(by_n)
        reference = 1_000_000 if 1_000_000 in by_n and largest > 1_000_000 else min(by_n)
        for method in METHODS:
            peaks = [
                max(by_n[n]["fredask"][method]["worker_peak_rss"].values())
                for n in (largest, reference)
            ]
            lines.append(
                f"peak worker RSS ({method}) at N={largest:,} / at N={reference:,}: "
                f"{peaks[0] / peaks[1]:.2f} (target <= 1.5)"
            )
    return lines


def page(results: list[dict], context: dict) -> str:
    """The whole markdown page."""
    f64 = ", ".join(f"N={r['n_rows']:,}: {r['gram_floor_f64_s']:.2f} s" for r in results)
    sections = [
        (
            "",
            ["N", "store", "read floor s", "Gram floor s", "floor total s", "fredask qr s",
             "fredask gram s", "qr/floor", "gram/floor", "skmatter s (12 pairs)",
             "skmatter/fredask-qr", "peak worker RSS qr MiB", "peak worker RSS gram MiB"],
            [size_row(r) for r in results],
        ),
    ]  # fmt: skip
    if any((r.get("skmatter") or {}).get("extrapolated") for r in results):
        sections.append(
            "\\* extrapolated: only the first pairs were timed (budget "
            f"{context['skmatter_budget_s']:.0f} s); total = mean time per pair x 12."
        )
    sections += [
        (
            "fredask time breakdown (task stream: first task start to last task end; the rest "
            "is graph building, scheduling and the small solves in the client):",
            ["N", "method", "wall s", "tasks span s", "outside tasks s",
             "worker compute s (summed)"],
            [row for r in results for row in breakdown_rows(r)],
        ),
        (
            "Peak RSS (VmHWM reset before each run), MiB:",
            ["N", "worker peaks qr MiB", "worker peaks gram MiB", "client peak qr MiB",
             "client peak gram MiB", "skmatter child peak MiB"],
            [memory_row(r) for r in results],
        ),
        (
            "Agreement (max relative difference of the GFREs):",
            ["N", "pairs vs skmatter", "max rel diff qr vs skmatter", "gram vs skmatter",
             "qr vs gram (12 pairs)", "GFRE range"],
            [agreement_row(r) for r in results],
        ),
        "Gram floor in float64 instead (fredask computes in float64): " + f64 + ".",
    ]  # fmt: skip
    return benchmark_page(
        f"GFRE matrix benchmark ({N_MODELS} models x {N_FEATURES} float32 features, "
        f"{len(PAIRS)} ordered pairs)",
        context,
        [
            f"Definitions: {FLOOR_DEFINITION}",
            "fredask times include reading the store; scikit-matter times do not (its data is "
            "loaded into memory first, in a child process with default BLAS threading). "
            f"Timings: best of {context['repeats']}.",
        ],
        sections,
        targets(results),
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 4_000_000],
        help="numbers of rows (atoms) N to benchmark",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument(
        "--skmatter-max", type=int, default=1_000_000,
        help="largest N to run scikit-matter on (it always runs at N <= 100000)",
    )  # fmt: skip
    parser.add_argument(
        "--skmatter-budget", type=float, default=600.0,
        help="seconds of scikit-matter pairs per N before extrapolating the rest",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=1, help="timings are the best of this")
    directory_arguments(parser, HERE)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    run_benchmark(
        "gfre_matrix",
        args,
        measure_size,
        page,
        repeats=args.repeats,
        skmatter_budget_s=args.skmatter_budget,
    )


if __name__ == "__main__":
    main()
