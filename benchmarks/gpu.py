"""The GPU check: fredask's device path against the GPU's floor and the CPU, in one report.

One command, under 5 minutes on one H100/H200 including set-up
(:mod:`fredask.bench.gpu` holds the logic):

* (a) the all-pairs GFRE matrix of 10 models x 256 float32 features over as
  many atoms as fit (at least 4 x 10^6; ``--n-atoms``), ``method="qr"`` and
  ``"gram"``, ``device="gpu"``, against the floor (read + host-to-device copy
  of the data once, plus one Gram GEMM of the concatenated columns at the
  GPU's float64 and TF32 rates, timed on CuPy directly) and against
  ``device="cpu"`` on a ``LocalCluster`` of the machine's cores (on the first
  ``--cpu-rows`` rows, extrapolated linearly, marked ``*``);
* (b) the LFRE with 1000 test rows against 10^7 train rows, its neighbour
  search against its GEMM floor;
* (c) order-8 cumulants of 10^6 structures;
* (d) extraction atoms/s of CHGNet and SevenNet with ``device="cuda"`` and
  ``"cpu"`` (skipped, with the reason, where the preset has no ``device=`` or
  torch sees no CUDA);
* (e) the relative difference of every device number from the CPU path's on
  the same rows (float64 target 1e-10).

Device side: dask-cuda's ``LocalCUDACluster`` (one worker per GPU) if it
imports, else a ``LocalCluster`` of one worker.  A step that fails is recorded
(error type and message) and the next one runs; ``gpu.md`` and ``gpu.json``
in ``--output`` (default ``benchmarks/results``) are rewritten after every
step.  ``--dry-run`` runs the same steps at a tiny size on the CPU, torch CPU
tensors standing in for the GPU, in well under a minute.

Usage::

    .venv/bin/python benchmarks/gpu.py                     # on the GPU machine
    .venv/bin/python benchmarks/gpu.py --dry-run --output /tmp/gpu-check
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from pathlib import Path

from fredask.bench.driver import argument_values
from fredask.bench.gpu import DRY, FULL, STEPS, run_check

HERE = Path(__file__).resolve().parent


def count(text: str) -> int:
    """``1e7`` or ``10000000`` as an int."""
    return int(float(text))


#: Options that override a field of the sizes (None: the preset's value).
SIZE_OPTIONS = {
    "n_atoms": "GFRE atoms (default: as many as fit in the GPU and host memory, >= 4e6)",
    "n_models": "GFRE models",
    "n_features": "GFRE float32 features per model",
    "chunk_rows": "rows per chunk on the device side",
    "cpu_rows": "GFRE rows of the CPU run (extrapolated to all when fewer)",
    "lfre_train": "LFRE train rows",
    "lfre_test": "LFRE test rows",
    "lfre_features": "LFRE features of both models (k = this)",
    "lfre_cpu_train": "LFRE train rows of the CPU run",
    "lfre_check": "LFRE test rows the device recomputes for the agreement",
    "n_structures": "structures of the cumulant step",
    "cpu_structures": "structures of the CPU cumulant run",
    "check_structures": "structures whose cumulants are compared",
    "extraction_structures": "shipped structures the models extract",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="the same steps, tiny, on the CPU (torch stand-in)"
    )
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    for name, text in SIZE_OPTIONS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=count, help=text)
    parser.add_argument("--models", nargs="+", help="extraction presets")
    parser.add_argument("--cpu-workers", type=int, help="CPU cluster workers (default: cores)")
    parser.add_argument(
        "--time-limit", type=float, default=240.0,
        help="seconds after which no further step starts (each is then skipped)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--data-dir", type=Path, default=HERE / "_data",
        help="where the clusters' scratch directory goes (removed at the end)",
    )  # fmt: skip
    parser.add_argument("--output", "--results-dir", dest="results_dir", type=Path,
                        default=HERE / "results")  # fmt: skip
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # a time limit's SIGTERM ends the run through its finally blocks: the report is written
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sizes = DRY if args.dry_run else FULL
    changes = {name: getattr(args, name) for name in SIZE_OPTIONS if getattr(args, name)}
    if args.models:
        changes["models"] = tuple(args.models)
    sizes = dataclasses.replace(sizes, **changes)
    run_check(
        args.results_dir,
        sizes,
        dry_run=args.dry_run,
        steps=tuple(s for s in STEPS if s in args.steps),
        cpu_workers=args.cpu_workers,
        data_dir=args.data_dir,
        time_limit=args.time_limit,
        seed=args.seed,
        args=argument_values(args),
    )


if __name__ == "__main__":
    main()
