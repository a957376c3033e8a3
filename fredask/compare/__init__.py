"""All-pairs comparisons: reconstruction matrices of every ordered model pair, saved and plotted."""

from fredask.compare.matrix import (
    GLOBAL_METRICS,
    METRICS,
    ComparisonError,
    ReconstructionMatrix,
    check_comparison,
    reconstruction_matrix,
)

__all__ = [
    "GLOBAL_METRICS",
    "METRICS",
    "ComparisonError",
    "ReconstructionMatrix",
    "check_comparison",
    "reconstruction_matrix",
]
