"""Speed-up, efficiency, CSV, markdown table and the strong / weak scaling plots.

Speed-up at ``w`` workers is ``t(w0) / t(w)`` against the smallest worker count
``w0`` of the same (stage, atoms, features, chunk rows) point, efficiency is
``speed-up * w0 / w`` (1 = perfect).  The weak-scaling view is the cost per atom
per worker, ``t * w / N``: flat in ``N`` and ``w`` means that ``k`` times the
atoms on ``k`` times the workers take the same time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

POINT = ["stage", "n_atoms", "n_features", "chunk_rows"]


def with_scaling(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with ``speedup``, ``efficiency``, ``floor_speedup`` and ``us_per_atom_worker``.

    Parameters
    ----------
    results : pandas.DataFrame
        Rows of :func:`fredask.bench.run_study`.

    Returns
    -------
    pandas.DataFrame
    """
    out = results.reset_index(drop=True)
    first = out.groupby(POINT)["workers"].idxmin()
    base = out.loc[first, [*POINT, "workers", "seconds", "floor_s"]]
    base = base.rename(columns={"workers": "w0", "seconds": "t0", "floor_s": "f0"})
    base = out[POINT].merge(base, on=POINT, how="left")
    w0 = base["w0"].to_numpy()
    out["speedup"] = base["t0"].to_numpy() / out["seconds"].to_numpy()
    out["efficiency"] = out["speedup"] * w0 / out["workers"]
    out["floor_speedup"] = base["f0"].to_numpy() / out["floor_s"].to_numpy()
    out["us_per_atom_worker"] = out["seconds"] * out["workers"] / out["n_atoms"] * 1e6
    return out


def write_csv(results: pd.DataFrame, path: str | Path) -> Path:
    """Write the rows (with the scaling columns) as CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with_scaling(results).to_csv(path, index=False, float_format="%.6g")
    return path


def read_csv(path: str | Path) -> pd.DataFrame:
    """Read a study's CSV back."""
    return pd.read_csv(path, keep_default_na=True)


def fmt(value, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals; a dash for None and non-finite numbers."""
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _atoms(n: int) -> str:
    exponent = np.log10(n)
    if n >= 1000 and abs(exponent - round(exponent)) < 1e-9:
        return f"10^{round(exponent)}"
    return f"{n:,}"


def markdown_table(results: pd.DataFrame) -> str:
    """One line per point and worker count."""
    header = [
        "stage", "N atoms", "models x features", "chunk rows", "workers", "time s", "floor s",
        "time / floor", "speed-up", "efficiency", "floor speed-up", "atoms/s", "MiB/s",
        "peak worker RSS MiB", "load before / after",
    ]  # fmt: skip
    rows = []
    points = with_scaling(results).sort_values(["stage", *POINT[1:], "workers"])
    for _, r in points.iterrows():
        features = f"{int(r['n_features'])}" if r["n_features"] else "—"
        cells = [
            r["stage"],
            _atoms(int(r["n_atoms"])),
            f"{int(r['n_models'])} x {features}",
            f"{int(r['chunk_rows']):,}",
            str(int(r["workers"])),
            fmt(r["seconds"]),
            fmt(r["floor_s"]),
            fmt(r["ratio_to_floor"]),
            fmt(r["speedup"]),
            fmt(r["efficiency"]),
            fmt(r["floor_speedup"]),
            f"{r['atoms_per_s']:,.0f}",
            fmt(r["mib_per_s"], 0),
            fmt(r["peak_worker_rss_mib"], 0),
            f"{r['load_before']:.2f} / {r['load_after']:.2f}",
        ]
        rows.append(cells)
    return table(header, rows)


def _atoms_tex(n: int) -> str:
    """``$10^{6}$`` for powers of ten (matplotlib mathtext), else ``1,234``."""
    text = _atoms(n)
    return f"$10^{{{text[3:]}}}$" if text.startswith("10^") else text


def _label(r) -> str:
    features = f", {int(r['n_features'])} feat." if r["n_features"] else ""
    return f"N={_atoms_tex(int(r['n_atoms']))}{features}, chunk {int(r['chunk_rows']):,}"


def strong_scaling_figure(results: pd.DataFrame, title: str = "") -> Figure:
    """Speed-up and efficiency against workers, one line per point (floor dashed)."""
    table = with_scaling(results)
    figure = Figure(figsize=(10, 4), layout="constrained")
    speedup_ax, efficiency_ax = figure.subplots(1, 2)
    workers = np.sort(table["workers"].unique())
    for (_, group), colour in zip(table.groupby(POINT), _colours(table), strict=False):
        group = group.sort_values("workers")
        label = f"{group['stage'].iloc[0]} {_label(group.iloc[0])}"
        speedup_ax.plot(group["workers"], group["speedup"], "o-", color=colour, label=label)
        if np.isfinite(group["floor_speedup"]).all():
            speedup_ax.plot(
                group["workers"], group["floor_speedup"], "x--", color=colour, alpha=0.6
            )
        efficiency_ax.plot(group["workers"], group["efficiency"], "o-", color=colour, label=label)
    ideal = workers / workers[0]
    speedup_ax.plot(workers, ideal, ":", color="grey", label="ideal")
    efficiency_ax.axhline(1.0, linestyle=":", color="grey")
    speedup_ax.set(xlabel="workers", ylabel="speed-up (floor: dashed)", xticks=workers)
    top = max(1.2, float(np.nanmax(table["efficiency"])) + 0.1)
    efficiency_ax.set(xlabel="workers", ylabel="parallel efficiency", xticks=workers, ylim=(0, top))
    speedup_ax.legend(fontsize=7)
    figure.suptitle(title or "Strong scaling", fontsize=10)
    return figure


def weak_scaling_figure(results: pd.DataFrame, title: str = "") -> Figure:
    """Time and floor against atoms, time / floor, and cost per atom per worker."""
    table = with_scaling(results)
    figure = Figure(figsize=(14, 4), layout="constrained")
    time_ax, ratio_ax, cost_ax = figure.subplots(1, 3)
    keys = ["stage", "n_features", "chunk_rows", "workers"]
    for (key, group), colour in zip(table.groupby(keys), _colours(table, keys), strict=False):
        group = group.sort_values("n_atoms")
        stage, features, chunk, workers = key
        label = f"{stage}, {workers} worker{'s' * (workers > 1)}"
        if features:
            label += f", {int(features)} feat."
        if table["chunk_rows"].nunique() > 1:
            label += f", chunk {int(chunk):,}"
        time_ax.plot(group["n_atoms"], group["seconds"], "o-", color=colour, label=label)
        if np.isfinite(group["floor_s"]).all():
            time_ax.plot(group["n_atoms"], group["floor_s"], "x--", color=colour, alpha=0.6)
            ratio_ax.plot(group["n_atoms"], group["ratio_to_floor"], "o-", color=colour)
        cost_ax.plot(group["n_atoms"], group["us_per_atom_worker"], "o-", color=colour)
    time_ax.set(xscale="log", yscale="log", xlabel="atoms", ylabel="time s (floor: dashed)")
    ratio_ax.set(xscale="log", xlabel="atoms", ylabel="time / floor")
    ratio_ax.axhline(1.0, linestyle=":", color="grey")
    cost_ax.set(xscale="log", xlabel="atoms", ylabel="worker-µs per atom (flat = weak scaling)")
    time_ax.legend(fontsize=7)
    figure.suptitle(title or "Time against atoms", fontsize=10)
    return figure


PARAMETER_LABELS = {"chunk_rows": "rows per chunk", "n_features": "features per model"}


def sweep_figure(results: pd.DataFrame, parameter: str, title: str = "") -> Figure:
    """Time (floor dashed) and time / floor against ``chunk_rows`` or ``n_features``."""
    table = with_scaling(results)
    figure = Figure(figsize=(10, 4), layout="constrained")
    time_ax, ratio_ax = figure.subplots(1, 2)
    others = [k for k in ("stage", "n_atoms", "n_features", "chunk_rows") if k != parameter]
    keys = [*others, "workers"]
    for (key, group), colour in zip(table.groupby(keys), _colours(table, keys), strict=False):
        group = group.sort_values(parameter)
        label = f"{key[0]} N={_atoms_tex(int(key[1]))}, {key[-1]} worker{'s' * (key[-1] > 1)}"
        time_ax.plot(group[parameter], group["seconds"], "o-", color=colour, label=label)
        time_ax.plot(group[parameter], group["floor_s"], "x--", color=colour, alpha=0.6)
        ratio_ax.plot(group[parameter], group["ratio_to_floor"], "o-", color=colour)
    label = PARAMETER_LABELS.get(parameter, parameter)
    time_ax.set(xscale="log", xlabel=label, ylabel="time s (floor: dashed)")
    ratio_ax.set(xscale="log", xlabel=label, ylabel="time / floor")
    ratio_ax.axhline(1.0, linestyle=":", color="grey")
    for ax in (time_ax, ratio_ax):
        ticks = np.sort(table[parameter].unique())
        ax.set_xticks(ticks, [f"{int(t):,}" for t in ticks])
        ax.minorticks_off()
    time_ax.legend(fontsize=7)
    figure.suptitle(title or f"Time against {label}", fontsize=10)
    return figure


def _colours(table: pd.DataFrame, keys=POINT) -> list:
    from matplotlib import colormaps

    n = max(1, len(table.groupby(keys)))
    return [colormaps["viridis"](i / max(1, n - 1) * 0.9) for i in range(n)]


def write_plots(results: pd.DataFrame, directory: str | Path, stem: str, title: str = "") -> dict:
    """Write ``{stem}_strong.png`` and ``{stem}_weak.png``; returns their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "strong": directory / f"{stem}_strong.png",
        "weak": directory / f"{stem}_weak.png",
    }
    strong_scaling_figure(results, title and f"Strong scaling: {title}").savefig(
        paths["strong"], dpi=120
    )
    weak_scaling_figure(results, title and f"Time against atoms: {title}").savefig(
        paths["weak"], dpi=120
    )
    return paths


FLOOR_DEFINITION = (
    "floor = read floor + GEMM floor, on the same workers as the stage. Read floor: read "
    "and decompress every chunk of the stage's inputs once (a per-chunk sum). GEMM floor: "
    "the one product the stage cannot avoid, over all rows, from a block each worker already "
    "holds (no I/O): for gfre the float32 Gram sum_c Z_c^T Z_c of all models' concatenated "
    "columns in blocks of chunk rows; for lfre the float64 product test x train^T of the "
    "test rows against every train row; none for cumulants; extraction has no floor."
)


def markdown_report(
    results: pd.DataFrame,
    title: str,
    notes: list[str] | None = None,
    sections: dict[str, pd.DataFrame] | None = None,
) -> str:
    """A markdown page: title, machine, notes, definitions and the table(s).

    Parameters
    ----------
    results : pandas.DataFrame
        All rows (for the machine line, and the table when no sections).
    title : str
        Page title.
    notes : list of str, optional
        Paragraphs after the machine line.
    sections : dict of str to pandas.DataFrame, optional
        One table per heading instead of one table of all rows.
    """
    machines = ", ".join(sorted(results["machine"].unique()))
    lines = [
        f"# {title}",
        "",
        f"Machine: {machines}.",
        "",
        *(notes or []),
        "",
        f"Definitions: {FLOOR_DEFINITION} Speed-up: t(w0) / t(w) against the fewest "
        "workers w0 of the same point; efficiency: speed-up x w0 / w; floor speed-up: the "
        "same for the floor (what the machine allows). Load: 1-minute load average before "
        "and after each point (the machine may be shared).",
        "",
    ]
    if sections is None:
        lines.append(markdown_table(results))
    for heading, rows in (sections or {}).items():
        lines += [f"## {heading}", "", markdown_table(rows), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def benchmark_page(
    title: str,
    context: dict,
    definitions: list[str],
    sections: list,
    targets: list[str] = (),
) -> str:
    """A benchmark's markdown page: title, machine and versions, definitions, tables, targets.

    Parameters
    ----------
    title : str
    context : dict
        With ``machine`` (:func:`fredask.bench.measure.machine`), ``versions``,
        ``cluster`` and ``load_average`` (at the start).
    definitions : list of str
        Paragraphs after the machine line (what is timed, the floor).
    sections : list of str or (str, list, list)
        Paragraphs, or ``(sentence, header, rows)`` tables.
    targets : list of str
        The goals, checked against the numbers, as a list at the end.
    """
    host = context["machine"]
    lines = [
        f"# {title}",
        "",
        f"Machine: {host['cpu']}, {host['cores_total']} cores ({host['cores']} usable), "
        f"{host['memory_gib']} GiB, {host['gpu']}, load average "
        f"{context['load_average']:.2f} at start; {context['cluster']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in context["versions"].items()) + ".",
        "",
        *definitions,
        "",
    ]
    for section in sections:
        if isinstance(section, str):
            lines += [section, ""]
        else:
            sentence, header, rows = section
            lines += [sentence, ""] if sentence else []
            lines += [table(header, rows), ""]
    if targets:
        lines += ["Targets:", "", *(f"- {line}" for line in targets)]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_results(directory: str | Path, name: str, markdown: str, raw: dict) -> dict[str, Path]:
    """``name.md`` (the page) and ``name.json`` (the raw numbers) in ``directory``."""
    import json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"md": directory / f"{name}.md", "json": directory / f"{name}.json"}
    paths["md"].write_text(markdown)
    paths["json"].write_text(json.dumps(raw, indent=2, default=_json_default) + "\n")
    return paths


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
