"""Comparisons: all-pairs matrices and model-vs-reference curves, saved and plotted."""

from fredask.compare.matrix import (
    GLOBAL_METRICS,
    METRICS,
    ComparisonError,
    ReconstructionMatrix,
    check_comparison,
    reconstruction_matrix,
)
from fredask.compare.reference import ReferenceCurve, reference_curve

__all__ = [
    "GLOBAL_METRICS",
    "METRICS",
    "ComparisonError",
    "ReconstructionMatrix",
    "ReferenceCurve",
    "check_comparison",
    "reconstruction_matrix",
    "reference_curve",
]
