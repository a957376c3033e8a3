"""Benchmark: the 4 x 4 GFRE matrix of fredask against its floor and scikit-matter.

For every requested number of rows N, on one synthetic Zarr v3 store
(``benchmarks/_data/``, made once and reused), this script times

* fredask's :func:`fredask.compare.reconstruction_matrix` (``"gfre"``) with
  ``method="qr"`` and ``method="gram"`` on a ``LocalCluster`` of two
  single-threaded worker processes;
* the floor on the same cluster, defined as
  ``read floor + Gram floor``:

  - read floor: read and decompress every chunk of the 4 stored arrays once
    (``dask.compute(*[da.from_zarr(x).sum() for x in arrays])``);
  - Gram floor: accumulate ``sum_c Z_c^T Z_c`` in float32 over the row blocks
    ``Z_c`` (32768 x 512, the concatenated features, N rows in all), from one
    block already held by each worker (no I/O);

* scikit-matter's ``global_reconstruction_error`` on the 12 ordered pairs, on
  numpy arrays loaded from the store, in a child process (its memory is
  measured alone); if the pairs would take longer than ``--skmatter-budget``
  seconds, only the first pairs are timed and the total is extrapolated.

Peak memory is the high-water mark of the resident set (``VmHWM``), reset
before each run through ``/proc/self/clear_refs`` (Linux only), for each
worker, for this (client) process and for the scikit-matter child.

Results are printed as a markdown table and written to
``benchmarks/results/gfre_matrix.md`` and ``benchmarks/results/gfre_matrix.json``.

Usage::

    .venv/bin/python benchmarks/gfre_matrix.py --sizes 100000 1000000 4000000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path

import dask
import dask.array as da
import distributed
import numpy as np
import psutil
import zarr
from zarr.codecs import ZstdCodec

import fredask
from fredask.bench.measure import machine
from fredask.compare import reconstruction_matrix

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "_data"
RESULTS_DIR = HERE / "results"

N_MODELS = 4
N_FEATURES = 128
LATENT_DIM = 32
CHUNK_ROWS = 2**15
#: Per model: standard deviation of the noise added before the tanh, and how
#: many latent dimensions the model does not see.  Tuned so that the 12
#: off-diagonal GFREs lie between about 0.3 and 0.8.
NOISE = (0.02, 0.1, 0.4, 0.8)
HIDDEN_LATENTS = (0, 1, 4, 8)
GENERATOR_VERSION = 1
MODEL_NAMES = tuple(f"m{m}" for m in range(N_MODELS))
PAIRS = tuple((s, t) for s, t in product(MODEL_NAMES, MODEL_NAMES) if s != t)
MIB = 2**20


# --------------------------------------------------------------------------- data


def store_path(n_rows: int, seed: int) -> Path:
    """Where the store for ``n_rows`` rows and ``seed`` lives."""
    return DATA_DIR / f"gfre_n{n_rows}_seed{seed}.zarr"


def store_attributes(n_rows: int, seed: int) -> dict:
    """The group attributes that identify a complete store."""
    return {
        "n_rows": n_rows,
        "n_models": N_MODELS,
        "n_features": N_FEATURES,
        "latent_dim": LATENT_DIM,
        "chunk_rows": CHUNK_ROWS,
        "noise": list(NOISE),
        "hidden_latents": list(HIDDEN_LATENTS),
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "complete": True,
    }


def store_is_reusable(path: Path, attributes: dict) -> bool:
    """True if ``path`` holds a complete store written with ``attributes``."""
    if not path.exists():
        return False
    try:
        group = zarr.open_group(path, mode="r")
    except (FileNotFoundError, ValueError, zarr.errors.GroupNotFoundError):
        return False
    return dict(group.attrs) == attributes


def model_maps(seed: int) -> list[np.ndarray]:
    """The seeded ``(LATENT_DIM, N_FEATURES)`` map ``A_m`` of every model."""
    maps = []
    for m, hidden in enumerate(HIDDEN_LATENTS):
        rng = np.random.default_rng([seed, 1_000_000, m])
        a = rng.standard_normal((LATENT_DIM, N_FEATURES)) / np.sqrt(LATENT_DIM)
        a[rng.permutation(LATENT_DIM)[:hidden]] = 0.0
        maps.append(a.astype(np.float32))
    return maps


def generate_chunk(seed: int, index: int, rows: int, maps: list[np.ndarray]) -> list[np.ndarray]:
    """Features of all models for row chunk ``index``: ``tanh(L A_m + noise)``."""
    rng = np.random.default_rng([seed, index])
    latent = rng.standard_normal((rows, LATENT_DIM), dtype=np.float32)
    return [
        np.tanh(
            latent @ a + np.float32(sigma) * rng.standard_normal((rows, N_FEATURES), np.float32)
        )
        for a, sigma in zip(maps, NOISE, strict=True)
    ]


def chunk_sizes(n_rows: int) -> list[int]:
    """Row counts of the ``CHUNK_ROWS`` chunks of ``n_rows`` rows."""
    full, rest = divmod(n_rows, CHUNK_ROWS)
    return [CHUNK_ROWS] * full + ([rest] if rest else [])


def write_store(path: Path, n_rows: int, seed: int) -> None:
    """Write the synthetic features chunk by chunk (never the whole array in memory)."""
    group = zarr.open_group(path, mode="w")
    features = group.create_group("features")
    arrays = [
        features.create_array(
            name,
            shape=(n_rows, N_FEATURES),
            chunks=(CHUNK_ROWS, N_FEATURES),
            dtype="float32",
            compressors=ZstdCodec(),
        )
        for name in MODEL_NAMES
    ]
    maps = model_maps(seed)
    start = 0
    for index, rows in enumerate(chunk_sizes(n_rows)):
        for array, block in zip(arrays, generate_chunk(seed, index, rows, maps), strict=True):
            array[start : start + rows] = block
        start += rows
    group.attrs.update(store_attributes(n_rows, seed))


def ensure_store(n_rows: int, seed: int) -> tuple[Path, float | None]:
    """The store for ``n_rows``, written if missing; and the seconds writing took."""
    path = store_path(n_rows, seed)
    if store_is_reusable(path, store_attributes(n_rows, seed)):
        return path, None
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_store(path, n_rows, seed)
    return path, time.perf_counter() - start


def open_features(path: Path) -> dict[str, zarr.Array]:
    """The stored features of every model, as Zarr arrays."""
    group = zarr.open_group(path, mode="r")
    return {name: group[f"features/{name}"] for name in MODEL_NAMES}


def directory_size(path: Path) -> int:
    """Bytes of all files under ``path``."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def other_stores(requested: set[Path]) -> dict[str, int]:
    """Sizes of the stores under ``_data/`` that this run does not use (kept)."""
    if not DATA_DIR.exists():
        return {}
    return {
        p.name: directory_size(p)
        for p in sorted(DATA_DIR.glob("*.zarr"))
        if p.resolve() not in requested
    }


# ------------------------------------------------------------------------- memory


def reset_peak_rss() -> None:
    """Reset this process's resident-set high-water mark (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")


def peak_rss() -> int:
    """This process's resident-set high-water mark since the last reset, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def current_rss() -> int:
    """This process's resident set now, in bytes."""
    return psutil.Process().memory_info().rss


@dataclass
class Run:
    """Wall time, task activity and peak memory of one timed call.

    ``tasks_span_s`` runs from the start of the first task to the end of the
    last one on the cluster; ``worker_compute_s`` is the summed compute time of
    all tasks (worker-seconds).  The rest of the wall time is spent in this
    process (graph construction, scheduling, the small solves) or idle.
    """

    seconds: float
    tasks_span_s: float = 0.0
    worker_compute_s: float = 0.0
    worker_peak_rss: dict[str, int] = field(default_factory=dict)
    client_peak_rss: int = 0


def task_activity(records: list[dict]) -> tuple[float, float]:
    """Span of all task activity and summed compute time, from a task stream."""
    intervals = [s for r in records for s in r["startstops"]]
    if not intervals:
        return 0.0, 0.0
    span = max(s["stop"] for s in intervals) - min(s["start"] for s in intervals)
    compute = sum(s["stop"] - s["start"] for s in intervals if s["action"] == "compute")
    return span, compute


def timed(client: distributed.Client, call: Callable[[], object]) -> tuple[Run, object]:
    """Run ``call()`` once: wall time, task activity, peak RSS of workers and of this process."""
    client.run(reset_peak_rss)
    reset_peak_rss()
    with distributed.get_task_stream(client=client) as stream:
        start = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - start
    span, compute = task_activity(stream.data)
    return Run(seconds, span, compute, client.run(peak_rss), peak_rss()), value


def best_of(client: distributed.Client, call: Callable[[], object], repeats: int):
    """The fastest of ``repeats`` runs (peak memory: the largest over all runs)."""
    runs, value = [], None
    for _ in range(repeats):
        run, value = timed(client, call)
        runs.append(run)
    best = min(runs, key=lambda r: r.seconds)
    best.worker_peak_rss = {
        w: max(r.worker_peak_rss[w] for r in runs) for w in best.worker_peak_rss
    }
    best.client_peak_rss = max(r.client_peak_rss for r in runs)
    return best, value


# ------------------------------------------------------------------------- floors


def read_all(features: dict[str, zarr.Array]) -> None:
    """Read and decompress every chunk once (a per-chunk sum forces each read)."""
    arrays = [da.from_zarr(x) for x in features.values()]
    dask.compute(*[a.sum() for a in arrays])


def _block_gram(block: np.ndarray, rows: int) -> np.ndarray:
    part = block[:rows]
    return part.T @ part


def gram_of_blocks(client: distributed.Client, block, n_rows: int) -> np.ndarray:
    """``sum_c Z_c^T Z_c`` over the row blocks of ``n_rows`` rows, ``block`` reused."""
    parts = [client.submit(_block_gram, block, rows, pure=False) for rows in chunk_sizes(n_rows)]
    return client.submit(sum, parts, pure=False).result()


def scatter_block(client: distributed.Client, dtype) -> distributed.Future:
    """One ``CHUNK_ROWS x (N_MODELS * N_FEATURES)`` block, held by every worker."""
    rng = np.random.default_rng(0)
    block = rng.standard_normal((CHUNK_ROWS, N_MODELS * N_FEATURES)).astype(dtype)
    [future] = client.scatter([block], broadcast=True)
    return future


# ----------------------------------------------------------------------- fredask


def fredask_matrix(client: distributed.Client, features: dict, method: str):
    """The 4 x 4 GFRE matrix (rows source, columns target) from fredask."""
    return reconstruction_matrix(
        features, "gfre", method=method, client=client, progress=False
    ).matrix


def warm_up(client: distributed.Client, features: dict[str, zarr.Array]) -> None:
    """Tiny runs of every timed path, so imports and caches are not timed."""
    head = {name: da.from_zarr(x)[: 2 * CHUNK_ROWS] for name, x in features.items()}
    dask.compute(*[a.sum() for a in head.values()])
    for method in ("qr", "gram"):
        reconstruction_matrix(head, "gfre", method=method, client=client, progress=False)
    block = scatter_block(client, np.float32)
    gram_of_blocks(client, block, 4 * CHUNK_ROWS)
    del block


# ---------------------------------------------------------------------- skmatter


def _skmatter_child(path: str, budget_s: float, connection) -> None:
    """In a fresh process: load the store, time skmatter's GFRE pair by pair."""
    import skmatter.metrics

    reset_peak_rss()
    baseline = current_rss()
    start = time.perf_counter()
    data = {name: x[:] for name, x in open_features(Path(path)).items()}
    load_s = time.perf_counter() - start
    values, seconds = {}, []
    for source, target in PAIRS:
        start = time.perf_counter()
        gfre = skmatter.metrics.global_reconstruction_error(data[source], data[target])
        seconds.append(time.perf_counter() - start)
        values[f"{source}->{target}"] = float(gfre)
        mean = sum(seconds) / len(seconds)
        if len(seconds) < len(PAIRS) and sum(seconds) + mean > budget_s:
            break
    connection.send(
        {
            "load_s": load_s,
            "pair_seconds": seconds,
            "values": values,
            "baseline_rss": baseline,
            "peak_rss": peak_rss(),
        }
    )
    connection.close()


def run_skmatter(path: Path, budget_s: float) -> dict:
    """scikit-matter on the 12 pairs in a spawned child; the total extrapolated if cut."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_skmatter_child, args=(str(path), budget_s, sender))
    child.start()
    sender.close()
    try:
        result = receiver.recv()
    except EOFError:
        child.join()
        return {"error": f"child exited with code {child.exitcode}"}
    child.join()
    measured = len(result["pair_seconds"])
    result["pairs_timed"] = measured
    result["extrapolated"] = measured < len(PAIRS)
    result["total_s"] = sum(result["pair_seconds"]) / measured * len(PAIRS)
    return result


def max_relative_difference(matrix, values: dict[str, float]) -> float:
    """Largest ``|fredask - skmatter| / |skmatter|`` over the pairs skmatter ran."""
    differences = []
    for key, reference in values.items():
        source, target = key.split("->")
        differences.append(abs(matrix.loc[source, target] - reference) / abs(reference))
    return max(differences)


# ------------------------------------------------------------------------- report


def machine_info() -> dict:
    """CPU model, core count and memory of this machine (from ``fredask.bench``)."""
    host = machine()
    return {
        "cpu": host["cpu"],
        "cores": os.cpu_count(),
        "usable_cores": host["cores"],
        "memory_gib": host["memory_gib"],
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }


def source_revision() -> str:
    """The git commit of the working tree (``+dirty`` when fredask/ has changes)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "fredask"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (commit or "unknown") + ("+dirty" if dirty else "")


def library_versions() -> dict:
    """Versions of Python and the libraries that matter here."""
    import skmatter

    blas = np.__config__.CONFIG["Build Dependencies"]["blas"]
    return {
        "python": platform.python_version(),
        "fredask": f"{fredask.__version__} ({source_revision()})",
        "numpy": np.__version__,
        "blas": f"{blas.get('name')} {blas.get('version')}",
        "dask": dask.__version__,
        "distributed": distributed.__version__,
        "zarr": zarr.__version__,
        "skmatter": skmatter.__version__,
    }


FLOOR_DEFINITION = (
    "floor = read floor + Gram floor. Read floor: wall time to read and decompress every "
    "chunk of the 4 stored arrays once on the cluster (a per-chunk sum). Gram floor: wall "
    "time for the same 2 workers to accumulate sum_c Z_c^T Z_c in float32 over N/32768 row "
    "blocks Z_c of the 512 concatenated columns, from a block each worker already holds "
    "(no I/O)."
)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def size_row(r: dict) -> list[str]:
    """One row of the main table."""
    floor, qr, gram = r["floor_s"], r["fredask"]["qr"], r["fredask"]["gram"]
    sk = r.get("skmatter") or {}
    sk_total, speedup = sk.get("total_s"), None
    sk_text = "—" if sk_total is None else f"{sk_total:.1f}"
    if sk.get("extrapolated"):
        sk_text = f"~{sk_text}* ({sk['pairs_timed']}/12 timed)"
    if sk_total is not None:
        speedup = sk_total / qr["seconds"]
    return [
        f"{r['n_rows']:,}",
        f"{r['store_bytes'] / MIB:.0f} MiB",
        _fmt(r["read_floor_s"]),
        _fmt(r["gram_floor_s"]),
        _fmt(floor),
        _fmt(qr["seconds"]),
        _fmt(gram["seconds"]),
        _fmt(qr["seconds"] / floor),
        _fmt(gram["seconds"] / floor),
        sk_text,
        _fmt(speedup, 1),
        f"{max(qr['worker_peak_rss'].values()) / MIB:.0f}",
        f"{max(gram['worker_peak_rss'].values()) / MIB:.0f}",
    ]


def memory_row(r: dict) -> list[str]:
    """One row of the memory table."""
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
    """Rows of the fredask time breakdown table, one per method."""
    return [
        [
            f"{r['n_rows']:,}",
            method,
            _fmt(run["seconds"]),
            _fmt(run["tasks_span_s"]),
            _fmt(run["seconds"] - run["tasks_span_s"]),
            _fmt(run["worker_compute_s"]),
        ]
        for method, run in r["fredask"].items()
    ]


def agreement_row(r: dict) -> list[str]:
    """One row of the agreement table."""
    agreement = r["agreement"]
    return [
        f"{r['n_rows']:,}",
        str(agreement.get("pairs_compared", 0)),
        _sci(agreement, "qr_vs_skmatter"),
        _sci(agreement, "gram_vs_skmatter"),
        _sci(agreement, "qr_vs_gram"),
        f"{agreement['gfre_min']:.3f} .. {agreement['gfre_max']:.3f}",
    ]


def _sci(mapping: dict, key: str) -> str:
    value = mapping.get(key)
    return "—" if value is None else f"{value:.1e}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def targets(results: list[dict]) -> list[str]:
    """The issue's targets, checked against the measurements."""
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
    if len(results) > 1:
        by_n = {r["n_rows"]: r for r in results}
        largest = max(by_n)
        reference = 1_000_000 if 1_000_000 in by_n and largest > 1_000_000 else min(by_n)
        for method in ("qr", "gram"):

            def peak(n: int, method: str = method) -> float:
                return max(by_n[n]["fredask"][method]["worker_peak_rss"].values())

            lines.append(
                f"peak worker RSS ({method}) at N={largest:,} / at N={reference:,}: "
                f"{peak(largest) / peak(reference):.2f} (target <= 1.5)"
            )
    return lines


def report(results: list[dict], context: dict) -> str:
    """The whole markdown report."""
    machine, versions = context["machine"], context["versions"]
    main_header = [
        "N",
        "store",
        "read floor s",
        "Gram floor s",
        "floor total s",
        "fredask qr s",
        "fredask gram s",
        "qr/floor",
        "gram/floor",
        "skmatter s (12 pairs)",
        "skmatter/fredask-qr",
        "peak worker RSS qr MiB",
        "peak worker RSS gram MiB",
    ]
    memory_header = [
        "N",
        "worker peaks qr MiB",
        "worker peaks gram MiB",
        "client peak qr MiB",
        "client peak gram MiB",
        "skmatter child peak MiB",
    ]
    agreement_header = [
        "N",
        "pairs vs skmatter",
        "max rel diff qr vs skmatter",
        "gram vs skmatter",
        "qr vs gram (12 pairs)",
        "GFRE range",
    ]
    breakdown_header = [
        "N",
        "method",
        "wall s",
        "tasks span s",
        "outside tasks s",
        "worker compute s (summed)",
    ]
    f64 = ", ".join(f"N={r['n_rows']:,}: {r['gram_floor_f64_s']:.2f} s" for r in results)
    lines = [
        f"# GFRE matrix benchmark ({N_MODELS} models x {N_FEATURES} float32 features, "
        f"{len(PAIRS)} ordered pairs)",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores "
        f"({machine['usable_cores']} usable), {machine['memory_gib']} GiB, load average "
        f"{machine['load_average_at_start'][0]:.2f} at start; {context['cluster']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "",
        f"Definitions: {FLOOR_DEFINITION}",
        "fredask times include reading the store; scikit-matter times do not (its data is "
        "loaded into memory first, in a child process with default BLAS threading). "
        f"Timings: best of {context['repeats']}.",
        "",
        markdown_table(main_header, [size_row(r) for r in results]),
        "",
    ]
    if any((r.get("skmatter") or {}).get("extrapolated") for r in results):
        lines += [
            "\\* extrapolated: only the first pairs were timed (budget "
            f"{context['skmatter_budget_s']:.0f} s); total = mean time per pair x 12.",
            "",
        ]
    lines += [
        "fredask time breakdown (task stream: first task start to last task end; the rest is "
        "graph building, scheduling and the small solves in the client):",
        "",
        markdown_table(breakdown_header, [row for r in results for row in breakdown_rows(r)]),
        "",
        "Peak RSS (VmHWM reset before each run), MiB:",
        "",
        markdown_table(memory_header, [memory_row(r) for r in results]),
        "",
        "Agreement (max relative difference of the GFREs):",
        "",
        markdown_table(agreement_header, [agreement_row(r) for r in results]),
        "",
        "Gram floor in float64 instead (fredask computes in float64): " + f64 + ".",
        "",
        "Targets:",
        "",
        *[f"- {line}" for line in targets(results)],
    ]
    if context["other_stores"]:
        kept = ", ".join(f"{k} ({v / MIB:.0f} MiB)" for k, v in context["other_stores"].items())
        lines += ["", f"Other stores kept in {DATA_DIR.name}/: {kept}."]
    return "\n".join(lines) + "\n"


def write_results(
    markdown: str, results: list[dict], context: dict, name: str = "gfre_matrix"
) -> None:
    """Write the markdown report and the raw numbers under ``benchmarks/results``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.md").write_text(markdown)
    raw = {"context": context, "results": results}
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(raw, indent=2) + "\n")


# -------------------------------------------------------------------------- main


def log(message: str) -> None:
    """Progress on stderr, so stdout holds the report only."""
    print(message, file=sys.stderr, flush=True)


def measure_floors(client: distributed.Client, features: dict, n_rows: int, repeats: int) -> dict:
    """Read floor, float32 Gram floor (the definition) and float64 Gram floor (for context)."""
    read, _ = best_of(client, lambda: read_all(features), repeats)
    gram = {}
    for dtype in (np.float32, np.float64):
        block = scatter_block(client, dtype)
        gram[dtype], _ = best_of(
            client, lambda block=block: gram_of_blocks(client, block, n_rows), repeats
        )
        del block
    return {
        "read_floor_s": read.seconds,
        "gram_floor_s": gram[np.float32].seconds,
        "gram_floor_f64_s": gram[np.float64].seconds,
        "floor_s": read.seconds + gram[np.float32].seconds,
    }


def measure_fredask(client: distributed.Client, features: dict, repeats: int):
    """Timed fredask matrices for both methods: (runs, matrices) keyed by method."""
    runs, matrices = {}, {}
    for method in ("qr", "gram"):
        runs[method], matrices[method] = best_of(
            client, lambda method=method: fredask_matrix(client, features, method), repeats
        )
        log(f"  fredask {method}: {runs[method].seconds:.2f} s")
    return runs, matrices


def agreement_of(matrices: dict, skmatter: dict | None) -> dict:
    """How the fredask matrices agree with each other and with scikit-matter."""
    qr, gram = matrices["qr"], matrices["gram"]
    off_diagonal = [qr.loc[s, t] for s, t in PAIRS]
    agreement = {
        "qr_vs_gram": float(
            max(abs(qr.loc[s, t] - gram.loc[s, t]) / qr.loc[s, t] for s, t in PAIRS)
        ),
        "gfre_min": float(min(off_diagonal)),
        "gfre_max": float(max(off_diagonal)),
    }
    if skmatter and "values" in skmatter:
        agreement["pairs_compared"] = len(skmatter["values"])
        for method, matrix in matrices.items():
            agreement[f"{method}_vs_skmatter"] = max_relative_difference(matrix, skmatter["values"])
    return agreement


def measure_skmatter(path: Path, n_rows: int, args) -> dict | None:
    """scikit-matter's timing at this N, or None where ``--skmatter-max`` excludes it."""
    if n_rows > max(args.skmatter_max, 100_000):
        return None
    log("  scikit-matter ...")
    skmatter = run_skmatter(path, args.skmatter_budget)
    if "error" in skmatter:
        log(f"  scikit-matter failed: {skmatter['error']}")
    else:
        timed_pairs = f"{skmatter['pairs_timed']}/{len(PAIRS)} pairs timed"
        log(f"  scikit-matter: {skmatter['total_s']:.1f} s for 12 pairs ({timed_pairs})")
    return skmatter


def benchmark_size(client: distributed.Client, n_rows: int, args) -> dict:
    """Every measurement for one N, on the same store."""
    path, generate_s = ensure_store(n_rows, args.seed)
    written = "reused" if generate_s is None else f"written in {generate_s:.1f} s"
    log(f"N={n_rows:,}: store {path.name} {written}")
    features = open_features(path)
    warm_up(client, features)
    floors = measure_floors(client, features, n_rows, args.repeats)
    log(f"  floor {floors['floor_s']:.2f} s (read {floors['read_floor_s']:.2f} s)")
    runs, matrices = measure_fredask(client, features, args.repeats)
    skmatter = measure_skmatter(path, n_rows, args)
    return {
        "n_rows": n_rows,
        "store": str(path.relative_to(HERE)),
        "store_bytes": directory_size(path),
        "generate_s": generate_s,
        **floors,
        "fredask": {
            method: {**asdict(run), "matrix": matrices[method].to_dict()}
            for method, run in runs.items()
        },
        "skmatter": skmatter,
        "agreement": agreement_of(matrices, skmatter),
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100_000, 1_000_000, 4_000_000],
        help="numbers of rows (atoms) N to benchmark",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument(
        "--skmatter-max",
        type=int,
        default=1_000_000,
        help="largest N to run scikit-matter on (it always runs at N <= 100000)",
    )
    parser.add_argument(
        "--skmatter-budget",
        type=float,
        default=600.0,
        help="seconds of scikit-matter pairs per N before extrapolating the rest",
    )
    parser.add_argument("--repeats", type=int, default=1, help="timings are the best of this")
    return parser.parse_args(argv)


CLUSTER = "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)"


def run_benchmark(
    args: argparse.Namespace,
    benchmark_size: Callable,
    report: Callable[[list[dict], dict], str],
    used_stores: set[Path],
    name: str = "gfre_matrix",
    **context,
) -> None:
    """``benchmark_size(client, n, args)`` for every size on the benchmarks' cluster, reported.

    The cluster (:data:`CLUSTER`) is made here and closed even on failure; the
    report (printed and written by :func:`write_results`) gets a context of
    the arguments, the machine, the versions, the cluster, the other stores
    kept and the client's peak memory, updated with ``context``.
    """
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    context = {
        "args": vars(args),
        "machine": machine_info(),
        "versions": library_versions(),
        "cluster": CLUSTER,
    } | context
    try:
        results = [benchmark_size(client, n, args) for n in sorted(set(args.sizes))]
    finally:
        client.close()
        cluster.close()
    context["other_stores"] = other_stores(used_stores)
    context["client_lifetime_peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    markdown = report(results, context)
    print(markdown)
    write_results(markdown, results, context, name=name)


def main(argv=None) -> None:
    args = parse_args(argv)
    run_benchmark(
        args,
        benchmark_size,
        report,
        {store_path(n, args.seed).resolve() for n in args.sizes},
        repeats=args.repeats,
        skmatter_budget_s=args.skmatter_budget,
    )


if __name__ == "__main__":
    main()
