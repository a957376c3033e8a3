"""The GPU check's numbers as the page writes them: values, ratios, bytes, rates, phases,
statuses and errors."""

from __future__ import annotations

import numpy as np

from fredask.bench.report import fmt

GB = 1e9


def value_text(value, digits: int = 2, star: bool = False) -> str:
    """A number as the page shows it (``fmt``), ``*`` after it when ``star`` (extrapolated)."""
    text = fmt(value, digits)
    return text + ("*" if star and text != "—" else "")


def ratio_of(a, b) -> float | None:
    """``a / b``, None where either is missing or not a number."""
    try:
        return a / b if a is not None and b else None
    except TypeError:
        return None


def sci_text(value) -> str:
    """A relative difference in scientific notation (``—`` where there is none)."""
    return "—" if value is None or not np.isfinite(value) else f"{value:.1e}"


def byte_text(n: float) -> str:
    """Bytes in GB, or MiB below 0.1 GB."""
    return f"{n / GB:.1f} GB" if n >= 0.1 * GB else f"{n / 2**20:.1f} MiB"


def rate_text(tflops: float) -> str:
    """TFLOP/s, or GFLOP/s below 0.1 TFLOP/s."""
    return f"{tflops:.1f} TFLOP/s" if tflops >= 0.1 else f"{tflops * 1e3:.1f} GFLOP/s"


def phases_text(phases: dict) -> str:
    """A pass's phases and their seconds, in one line."""
    return ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())


def error_text(error: dict) -> str:
    """An error record in one line: its type and the start of its message."""
    return f"{error['type']}: {' '.join(error['message'].split())[:300]}"


def status_text(record: dict) -> str:
    """A step's or a model's status, with its reason or its errors."""
    status = record.get("status", "not run")
    if status in ("skipped", "interrupted"):
        return f"{status}: {record['reason']}"
    errors = [f"{name}: {error_text(e)}" for name, e in record.get("errors", {}).items()]
    if "error" in record:
        errors.append(error_text(record["error"]))
    return "; ".join([status, *errors]) if errors else status


def lookup(record: dict, *keys, default=None):
    """``record[key0][key1]..``, ``default`` where a key is missing."""
    for key in keys:
        if not isinstance(record, dict) or key not in record:
            return default
        record = record[key]
    return record
