"""Scaling studies: time a fredask stage over a grid of sizes and worker counts.

>>> from fredask.bench import Grid, run_study, write_csv, write_plots
>>> results = run_study(Grid("gfre", atoms=[10**5, 10**6], workers=[1, 2]))  # doctest: +SKIP
>>> write_csv(results, "scaling.csv"); write_plots(results, ".", "scaling")  # doctest: +SKIP

Stages: ``gfre`` (the all-pairs GFRE matrix), ``lfre`` (one LFRE pair),
``cumulants`` (structure cumulants of every model), ``extraction`` (a real
model over the shipped structures).  Each point records time, throughput, the
floor (read once + one GEMM) and the ratio to it, and peak memory per worker;
:mod:`fredask.bench.report` derives speed-up and efficiency, and plots strong
scaling (against workers) and time against atoms.  ``fredask bench`` is the
command line.
"""

from fredask.bench.data import StudyInputs, store_inputs, synthetic_store
from fredask.bench.report import (
    markdown_report,
    read_csv,
    strong_scaling_figure,
    sweep_figure,
    weak_scaling_figure,
    with_scaling,
    write_csv,
    write_plots,
)
from fredask.bench.stages import STAGES, StageOptions
from fredask.bench.study import Grid, run_study

__all__ = [
    "STAGES",
    "Grid",
    "StageOptions",
    "StudyInputs",
    "markdown_report",
    "read_csv",
    "run_study",
    "store_inputs",
    "strong_scaling_figure",
    "sweep_figure",
    "synthetic_store",
    "weak_scaling_figure",
    "with_scaling",
    "write_csv",
    "write_plots",
]
