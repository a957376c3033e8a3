"""What the GPU check runs on: the full check's sizes and the dry run's, the GFRE's
methods, the atoms that fit the memory, the CPU side's chunks."""

from __future__ import annotations

from dataclasses import dataclass

#: The GFRE step's methods (``reconstruction_matrix(method=)``), each timed and compared.
METHODS = ("qr", "gram")


#: Shares of the GPU's and of the host's memory the GFRE features may take
#: (the device worker holds them in host memory; the pass streams them).
DEVICE_SHARE, HOST_SHARE = 0.5, 0.35


@dataclass(frozen=True)
class CheckSizes:
    """What each step runs on.

    Attributes
    ----------
    n_atoms : int or None
        GFRE rows; None: the most whose features fit in ``DEVICE_SHARE`` of
        the GPU memory and ``HOST_SHARE`` of the host's, at least ``min_atoms``.
    min_atoms : int
        Smallest GFRE size when sized from memory.
    n_models, n_features : int
        GFRE models and float32 features per model.
    chunk_rows : int
        Rows per chunk on the device side.
    cpu_chunk_rows : int
        Most rows per chunk on the CPU side (fewer so every worker gets one).
    cpu_rows : int
        GFRE rows of the CPU run (extrapolated to ``n_atoms`` when fewer).
    lfre_train, lfre_test, lfre_features : int
        LFRE train and test rows and features of both models (k = features).
    lfre_cpu_train : int
        Train rows of the CPU run (its first rows; extrapolated when fewer).
    lfre_check : int
        Test rows of the CPU run whose errors the device recomputes (each test
        row's error depends on the train rows only, so a few rows suffice).
    n_structures : int
        Structures of the cumulant step.
    structure_atoms : tuple of int
        Fewest and most atoms per structure (uniform).
    cumulant_features, cumulant_order : int
    cpu_structures : int
        Structures of the CPU cumulant run (the first; extrapolated by atoms).
    check_structures : int
        Structures whose cumulants are compared element by element.
    extraction_structures : int
        Shipped structures (G2, S22, dcdft, evenly spaced) the models extract.
    models : tuple of str
        Extraction presets.
    """

    n_atoms: int | None = None
    min_atoms: int = 4_000_000
    n_models: int = 10
    n_features: int = 256
    chunk_rows: int = 2**17
    cpu_chunk_rows: int = 2**15
    cpu_rows: int = 2**18
    lfre_train: int = 10**7
    lfre_test: int = 1000
    lfre_features: int = 256
    lfre_cpu_train: int = 10**6
    lfre_check: int = 100
    n_structures: int = 10**6
    structure_atoms: tuple[int, int] = (8, 64)
    cumulant_features: int = 128
    cumulant_order: int = 8
    cpu_structures: int = 10**5
    check_structures: int = 20_000
    extraction_structures: int = 160
    models: tuple[str, ...] = ("chgnet:0.3.0", "sevenn:7net-0")


#: The GPU check's sizes.
FULL = CheckSizes()


#: The dry run's: the same steps, tiny, every CPU run sampled (the extrapolation runs too).
DRY = CheckSizes(
    n_atoms=8192,
    min_atoms=0,
    n_models=3,
    n_features=8,
    chunk_rows=1024,
    cpu_chunk_rows=1024,
    cpu_rows=4096,
    lfre_train=8000,
    lfre_test=50,
    lfre_features=8,
    lfre_cpu_train=4000,
    lfre_check=20,
    n_structures=300,
    cumulant_features=8,
    cpu_structures=150,
    check_structures=100,
    extraction_structures=2,
)


def sized_atoms(
    bytes_per_atom: int, device_bytes: int, host_bytes: int, chunk_rows: int, minimum: int
) -> int:
    """The most atoms whose features fit the memory shares, whole chunks, at least ``minimum``."""
    fit = int(min(DEVICE_SHARE * device_bytes, HOST_SHARE * host_bytes) // bytes_per_atom)
    return max(int(minimum), fit - fit % chunk_rows)


def cpu_chunk_rows(n_rows: int, workers: int, largest: int) -> int:
    """Rows per CPU chunk: at most ``largest``, fewer so every worker gets a chunk."""
    smallest = min(1024, largest)
    return int(min(largest, max(smallest, -(-n_rows // max(1, workers)))))
