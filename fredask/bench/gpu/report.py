"""The GPU check's report: the markdown page (``gpu.md``: steps, tables, agreement,
targets) and the raw numbers (``gpu.json``), of a whole run or a partial one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fredask.bench.gpu.agreement import EXTRACTION_TARGET, TARGET
from fredask.bench.gpu.run import error_record
from fredask.bench.gpu.sizes import METHODS
from fredask.bench.gpu.text import (
    byte_text,
    lookup,
    phases_text,
    rate_text,
    ratio_of,
    sci_text,
    status_text,
    value_text,
)
from fredask.bench.report import benchmark_page, write_results

#: The report's name: ``gpu.md`` and ``gpu.json``.
NAME = "gpu"


def gfre_sections(r: dict) -> list:
    """The GFRE step's tables."""
    if "n_atoms" not in r:
        return []
    floor = r.get("floor", {})
    rows = []
    for method in METHODS:
        device = lookup(r, "device", method, "seconds")
        estimate = lookup(r, "cpu", method, "estimate", default={})
        cpu, star = estimate.get("seconds"), estimate.get("extrapolated", False)
        rows.append(
            [
                method,
                value_text(device),
                value_text(floor.get("floor_float64_s")),
                value_text(floor.get("floor_tf32_s")),
                value_text(ratio_of(device, floor.get("floor_float64_s"))),
                value_text(ratio_of(device, floor.get("floor_tf32_s"))),
                value_text(lookup(r, "cpu", method, "seconds"), 1),
                value_text(cpu, 1, star),
                value_text(ratio_of(cpu, device), 1, star),
                sci_text(lookup(r, "agreement", method, "max_relative")),
            ]
        )
    lo, hi = r.get("gfre_range", [None, None])
    sentence = (
        f"(a) All-pairs GFRE, {r['n_models']} models x {r['n_features']} float32 features, "
        f"{r['n_atoms']:,} atoms ({byte_text(r['features_bytes'])}"
        + (", sized from the memory" if r.get("sized_from_memory") else "")
        + f"), chunks of {r['chunk_rows']:,} rows, drawn in "
        f"{value_text(r.get('generate_s'), 1)} s; "
        f"off-diagonal GFRE {value_text(lo)} .. {value_text(hi)}. CPU timed on the first "
        f"{lookup(r, 'cpu', 'rows', default=0):,} rows in chunks of "
        f"{lookup(r, 'cpu', 'chunk_rows', default=0):,} (CPU s), for all rows (CPU all s); "
        "relative difference device vs CPU on those rows."
    )
    out = [
        (
            sentence,
            ["method", "device s", "floor float64 s", "floor TF32 s", "device / floor float64",
             "device / floor TF32", "CPU s", "CPU all s", "CPU / device",
             "max rel diff device vs CPU"],
            rows,
        )
    ]  # fmt: skip
    if floor:
        f64, tf32 = floor["gram_float64"], floor["gram_tf32"]
        out.append(
            f"Floor parts: read + host-to-device copy of the {byte_text(floor['transfer_bytes'])} "
            f"once {value_text(floor['transfer_s'])} s "
            f"({byte_text(floor['transfer_bytes'] / floor['transfer_s'])}/s); Gram GEMM of the "
            f"{r['n_models'] * r['n_features']} concatenated columns over all rows, from a "
            f"{r['chunk_rows']:,}-row block held on the device: float64 "
            f"{value_text(f64['pass_s'])} s ({rate_text(f64['tflops'])}), "
            f"float32{' TF32' if tf32['tf32'] else ' (no TF32 here)'} "
            f"{value_text(tf32['pass_s'])} s ({rate_text(tf32['tflops'])})."
        )
    return out


def lfre_sections(r: dict) -> list:
    """The LFRE step's tables."""
    if "n_train" not in r:
        return []
    floor, device, cpu = r.get("floor", {}), r.get("device", {}), r.get("cpu", {})
    search = lookup(device, "phases_s", "neighbour search")
    star = cpu.get("extrapolated", False)
    rows = [
        [
            f"{r['n_train']:,}",
            value_text(device.get("seconds")),
            value_text(search),
            value_text(floor.get("transfer_s")),
            value_text(floor.get("gemm_s")),
            value_text(floor.get("gemm_sliced_s")),
            value_text(ratio_of(search, floor.get("floor_s"))),
            value_text(cpu.get("seconds"), 1),
            value_text(cpu.get("seconds_estimate"), 1, star),
            value_text(cpu.get("search_estimate_s"), 1, star),
            value_text(ratio_of(cpu.get("seconds_estimate"), device.get("seconds")), 1, star),
            sci_text(lookup(r, "agreement", "pointwise_max_relative")),
        ]
    ]
    sentence = (
        f"(b) LFRE of m1 from m0, {r['n_features']} float32 features each, k = {r['k']}, "
        f"{r['n_test']:,} test rows; floor of the neighbour search = source rows read and "
        "copied to the device once + the float64 GEMM test @ train.T (the faster of whole "
        "chunks and fredask's 4096-row slices). Device phases: "
        f"{phases_text(device.get('phases_s', {}))}. CPU timed on the first "
        f"{cpu.get('n_train', 0):,} train rows (CPU s), for all (CPU all s: its statistics and "
        "neighbour-search passes scaled linearly, the local fits as timed); relative "
        "difference of the pointwise errors, device vs CPU, on those rows."
    )
    return [
        (
            sentence,
            ["N_train", "device s", "device search s", "transfer s", "GEMM s", "GEMM sliced s",
             "search / floor", "CPU s", "CPU all s", "CPU all search s", "CPU / device",
             "max rel diff device vs CPU"],
            rows,
        )
    ]  # fmt: skip


def cumulant_sections(r: dict) -> list:
    """The cumulant step's table."""
    if "n_structures" not in r:
        return []
    device, cpu, floor = r.get("device", {}), r.get("cpu", {}), r.get("floor", {})
    estimate = cpu.get("estimate", {})
    star = estimate.get("extrapolated", False)
    rows = [
        [
            f"{r['n_structures']:,}",
            f"{r['n_atoms']:,}",
            value_text(device.get("seconds")),
            value_text(floor.get("floor_s")),
            value_text(ratio_of(device.get("seconds"), floor.get("floor_s"))),
            value_text(cpu.get("seconds"), 1),
            value_text(estimate.get("seconds"), 1, star),
            value_text(ratio_of(estimate.get("seconds"), device.get("seconds")), 1, star),
            sci_text(lookup(r, "agreement", "max_relative_to_column_max")),
        ]
    ]
    sentence = (
        f"(c) Structure cumulants of order {r['order']}, {r['n_features']} float32 features, "
        f"{r['structure_atoms'][0]} to {r['structure_atoms'][1]} atoms per structure; floor = "
        "the features read and copied to the device once. CPU: the first "
        f"{cpu.get('structures', 0):,} structures timed (CPU s), for all (CPU all s); "
        "difference over each column's "
        f"largest value on the first {lookup(r, 'agreement', 'structures', default=0):,}."
    )
    return [
        (
            sentence,
            ["structures", "atoms", "device s", "floor s", "device / floor", "CPU s",
             "CPU all s", "CPU / device", "max diff / column max, device vs CPU"],
            rows,
        )
    ]  # fmt: skip


def extraction_sections(r: dict, side: str) -> list:
    """The extraction step's table."""
    if "models" not in r:
        return []
    rows = []
    for spec, m in r["models"].items():
        if m.get("status") != "ok":
            rows.append([spec, "—", "—", "—", "—", "—", status_text(m)])
            continue
        rows.append(
            [
                spec,
                f"{m['cpu']['structures']} / {m['cpu']['atoms']:,}",
                f"{m['device']['atoms_per_s']:,.0f}",
                f"{m['cpu']['atoms_per_s']:,.0f}",
                value_text(m["speedup"], 1),
                sci_text(m["agreement"]["max_abs_over_max"]),
                "ok",
            ]
        )
    sentence = (
        f"(d) Extraction of {r['structures']} shipped structures ({r['atoms']:,} atoms), "
        f"one process, device={side!r} against device='cpu' (model loaded and first call "
        "made before timing)."
    )
    return [
        (
            sentence,
            [
                "model",
                "structures / atoms covered",
                "device atoms/s",
                "CPU atoms/s",
                "speed-up",
                "max diff / max",
                "status",
            ],
            rows,
        )
    ]


def agreement_rows(steps: dict) -> list[list[str]]:
    """(e) Every device number against the CPU path."""
    rows = []

    def add(what: str, on: str, value, target: float) -> None:
        ok = value is not None and np.isfinite(value) and value <= target
        rows.append([what, on, sci_text(value), f"{target:.0e}", "yes" if ok else "no"])

    g = steps.get("gfre", {})
    for method in METHODS:
        if lookup(g, "agreement", method) is not None:
            on = f"{g['agreement']['rows']:,} atoms"
            add(f"GFRE matrix ({method}), off-diagonal", on, g["agreement"][method]["max_relative"],
                TARGET)  # fmt: skip
    lf = steps.get("lfre", {})
    if "agreement" in lf:
        a = lf["agreement"]
        on = f"{a['n_test']:,} test rows against {a['n_train']:,} train rows"
        add("LFRE pointwise errors", on, lf["agreement"]["pointwise_max_relative"], TARGET)
    c = steps.get("cumulants", {})
    if "agreement" in c:
        on = f"{c['agreement']['structures']:,} structures"
        add("cumulants (over column max)", on, c["agreement"]["max_relative_to_column_max"],
            TARGET)  # fmt: skip
    for spec, m in lookup(steps, "extraction", "models", default={}).items():
        if m.get("status") == "ok":
            on = f"{m['cpu']['atoms']:,} atoms (float32 models)"
            add(f"{spec} features", on, m["agreement"]["max_abs_over_max"], EXTRACTION_TARGET)
    return rows


def targets(report: dict) -> list[str]:
    """The goals against the numbers."""
    steps = report["steps"]
    lines = []
    total = report.get("wall_s")
    if total is not None:
        lines.append(
            f"whole check {total:.0f} s with the clusters' start (target < 300 s on one GPU)"
        )
    g = steps.get("gfre", {})
    for method in METHODS:
        ratio = ratio_of(
            lookup(g, "device", method, "seconds"), lookup(g, "floor", "floor_float64_s")
        )
        if ratio is not None:
            lines.append(f"GFRE {method}: device / floor float64 {ratio:.2f}")
    lf = steps.get("lfre", {})
    ratio = ratio_of(
        lookup(lf, "device", "phases_s", "neighbour search"), lookup(lf, "floor", "floor_s")
    )
    if ratio is not None:
        lines.append(f"LFRE neighbour search / GEMM floor {ratio:.2f}")
    rows = agreement_rows(steps)
    if rows:
        met = sum(row[-1] == "yes" for row in rows)
        lines.append(f"agreement with the CPU path: {met} of {len(rows)} within target")
    return lines


def page(report: dict) -> str:
    """The markdown page of a (possibly partial) report."""
    context, steps = report["context"], report["steps"]
    info = context.get("device_info") or {}
    status = [[name, status_text(r), value_text(r.get("wall_s"), 1)] for name, r in steps.items()]
    definitions = [
        f"Device side: {context['side']}"
        + (f": {info['name']}, {info['memory_bytes'] / 2**30:.0f} GiB" if info else "")
        + ". "
        + (
            "**Dry run**: tiny sizes on the CPU; the numbers test the code, not a GPU. "
            if context.get("dry_run")
            else ""
        )
        + "Data: the benchmarks' synthetic zoo (fredask.bench.data: tanh(L A_m + noise_m), a "
        "shared 32-dim latent L), drawn on the device side's workers and held in their host "
        "memory; fredask times include the host-to-device copies. CPU: the same fredask call "
        "with device='cpu' on the CPU cluster, on the first rows when the whole would take "
        "too long (\\* = extrapolated linearly to all rows; for the LFRE only its statistics "
        "and neighbour-search passes are scaled). Timings: one run after a warm-up. A step "
        "'running' was still running when this page was written (the run was stopped in it).",
    ]
    sections = [
        ("Steps:", ["step", "status", "wall s"], status),
        *gfre_sections(steps.get("gfre", {})),
        *lfre_sections(steps.get("lfre", {})),
        *cumulant_sections(steps.get("cumulants", {})),
        *extraction_sections(steps.get("extraction", {}), context.get("extraction_device", "")),
    ]
    rows = agreement_rows(steps)
    if rows:
        sections.append(
            (
                "(e) Agreement of the device path with the CPU path on the same rows (relative "
                "difference):",
                ["quantity", "compared on", "max relative difference", "target", "met"],
                rows,
            )
        )
    return benchmark_page("GPU check", context, definitions, sections, targets(report))


def write_report(directory: Path, report: dict) -> dict[str, Path]:
    """``gpu.md`` and ``gpu.json`` in ``directory``; a page that fails to render says so."""
    try:
        markdown = page(report)
    except Exception as error:  # the numbers must still be written
        markdown = (
            f"# GPU check\n\nThe page failed to render ({error_record(error)}); see gpu.json.\n"
        )
    return write_results(directory, NAME, markdown, report)
