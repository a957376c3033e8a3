"""The stages a scaling study times, and the floor of each.

Floor = read floor + GEMM floor, both measured on the same cluster as the stage
(the ``gfre_matrix.py`` benchmark's definition, generalised):

* read floor: read and decompress every chunk of the stage's inputs once (a
  per-chunk sum);
* GEMM floor: the one dense product the stage cannot avoid, over all rows, on
  a block every worker already holds (no I/O):

  - ``gfre``: the float32 Gram ``sum_c Z_c^T Z_c`` of the concatenated columns
    of all models, in row blocks of ``chunk_rows``;
  - ``lfre``: the float64 distances' product ``test @ block.T`` of the test
    rows against every train row, in slices of ``fredask.measures.neighbours.BLOCK_ROWS``
    rows as fredask's search works;
  - ``cumulants``: none (elementwise powers only; the floor is the read);
  - ``extraction``: no floor (model inference dominates; NaN).
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from fredask.bench.data import StudyInputs
from fredask.bench.floors import distance_floor, gram_floor, read_floor

STAGES = ("gfre", "lfre", "cumulants", "extraction")
N_TEST = 1000


@dataclass(frozen=True)
class StageOptions:
    """Settings of the timed stages.

    Attributes
    ----------
    method : {"qr", "gram"}
        Statistics of the GFRE matrix.
    n_test : int
        LFRE test rows (at most a tenth of the rows); the others are train rows.
    order : int
        Cumulant order.
    model : str
        Extraction model spec.
    """

    method: str = "qr"
    n_test: int = N_TEST
    order: int = 8
    model: str = "chgnet:0.3.0"


# ----------------------------------------------------------------------- stages


def run_gfre(inputs: StudyInputs, client, options: StageOptions) -> float:
    """The all-pairs GFRE matrix; returns its mean off-diagonal value."""
    from fredask.compare.matrix import reconstruction_matrix

    matrix = reconstruction_matrix(
        inputs.features, "gfre", method=options.method, client=client, progress=False
    ).matrix.to_numpy()
    return float(matrix[~np.eye(len(matrix), dtype=bool)].mean())


def lfre_rows(n_atoms: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded test rows (at most a tenth of the rows) and all other rows as train rows."""
    n_test = max(1, min(n_test, n_atoms // 10))
    test_idx = np.sort(np.random.default_rng(0).choice(n_atoms, n_test, replace=False))
    return test_idx, np.setdiff1d(np.arange(n_atoms), test_idx)


def _pair(inputs: StudyInputs) -> tuple[da.Array, da.Array]:
    if len(inputs.features) < 2:
        raise ValueError("the lfre stage needs features of two models")
    x, y = list(inputs.features.values())[:2]
    return x, y


def run_lfre(inputs: StudyInputs, client, options: StageOptions) -> float:
    """LFRE of the second model from the first, k = min(p, q) neighbours."""
    from fredask.metrics import local_reconstruction_error

    x, y = _pair(inputs)
    test_idx, train_idx = lfre_rows(inputs.n_atoms, options.n_test)
    k = min(x.shape[1], y.shape[1])
    return float(
        local_reconstruction_error(x, y, k, test_idx=test_idx, train_idx=train_idx, client=client)
    )


def run_cumulants(inputs: StudyInputs, client, options: StageOptions) -> float:
    """Structure cumulants of every model (``fredask.structure.cumulants``), reduced on the cluster.

    Returns the sum of all cumulants (so the full result is computed but
    never gathered).
    """
    try:
        from fredask.structure.cumulants import structure_cumulants
    except ImportError as error:
        raise RuntimeError("the cumulants stage needs fredask.structure.cumulants") from error
    sums = [
        da.nansum(structure_cumulants(features, inputs.structure_sizes, order=options.order))
        for features in inputs.features.values()
    ]
    return float(sum(client.compute(sums, sync=True)))


def run_extraction(inputs: StudyInputs, client, options: StageOptions) -> float:
    """Features of ``options.model`` for ``inputs.structures`` into a fresh store.

    The time includes creating the store and loading the model on each
    worker.  Returns the number of structures skipped (elements not covered).
    """
    import tempfile

    from fredask.extract import get_extractor
    from fredask.extract.runner import extract
    from fredask.store.feature_store import FeatureStore

    with tempfile.TemporaryDirectory(prefix="fredask-bench-") as scratch:
        store = FeatureStore.create(
            f"{scratch}/store.zarr", inputs.structures, chunk_rows=inputs.chunk_rows
        )
        report = extract(
            store, get_extractor(options.model), client=client, skip_errors=True, progress=False
        )
    return float(len(report.skipped))


RUNNERS = {
    "gfre": run_gfre,
    "lfre": run_lfre,
    "cumulants": run_cumulants,
    "extraction": run_extraction,
}


# ----------------------------------------------------------------------- floors


def stage_inputs(stage: str, inputs: StudyInputs) -> list[da.Array]:
    """The arrays a stage reads (the LFRE: its two models)."""
    if stage == "lfre":
        return list(_pair(inputs))
    return list(inputs.features.values())


def measure_floor(
    stage: str, inputs: StudyInputs, client, options: StageOptions, repeats: int = 1
) -> dict[str, float]:
    """Read floor, GEMM floor and their sum (seconds; NaN for extraction)."""
    if stage == "extraction":
        nan = float("nan")
        return {"read_floor_s": nan, "gemm_floor_s": nan, "floor_s": nan}
    arrays = stage_inputs(stage, inputs)
    read = read_floor(arrays, client, repeats).seconds
    gemm = 0.0
    if stage == "gfre":
        width = sum(a.shape[1] for a in arrays)
        gemm = gram_floor(client, inputs.n_atoms, inputs.chunk_rows, width, np.float32, repeats)
        gemm = gemm.seconds
    elif stage == "lfre":
        from fredask.measures.neighbours import BLOCK_ROWS

        n_test = lfre_rows(inputs.n_atoms, options.n_test)[0].size
        width = arrays[0].shape[1]
        gemm = distance_floor(
            client, inputs.n_atoms, inputs.chunk_rows, width, n_test, BLOCK_ROWS, repeats
        ).seconds
    return {"read_floor_s": read, "gemm_floor_s": gemm, "floor_s": read + gemm}


def warm_up(stage: str, inputs: StudyInputs, client, options: StageOptions) -> None:
    """A small run of the stage (whole structures of the first two chunks), untimed."""
    if stage == "extraction":
        return
    ends = np.cumsum(inputs.structure_sizes)
    keep = max(1, int(np.searchsorted(ends, min(ends[-1], 2 * inputs.chunk_rows), "right")))
    rows = int(ends[keep - 1])
    head = {name: a[:rows] for name, a in inputs.features.items()}
    sizes = inputs.structure_sizes[:keep]
    RUNNERS[stage](
        StudyInputs(head, sizes, inputs.source, chunk_rows=inputs.chunk_rows), client, options
    )
