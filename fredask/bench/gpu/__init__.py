"""The GPU check: fredask's device path against the GPU's floor and the CPU, in one report.

``benchmarks/gpu.py`` is its command and ``benchmarks/README.md`` ("GPU check") says what
it measures and how to run it; :func:`~fredask.bench.gpu.check.run_check` runs it.
"""

from fredask.bench.gpu.agreement import column_relative, max_relative
from fredask.bench.gpu.check import STEPS, run_check
from fredask.bench.gpu.device import GPU, STAND_IN, DeviceSide
from fredask.bench.gpu.sizes import DRY, FULL, CheckSizes, cpu_chunk_rows, sized_atoms

__all__ = [
    "DRY",
    "FULL",
    "GPU",
    "STAND_IN",
    "STEPS",
    "CheckSizes",
    "DeviceSide",
    "column_relative",
    "cpu_chunk_rows",
    "max_relative",
    "run_check",
    "sized_atoms",
]
