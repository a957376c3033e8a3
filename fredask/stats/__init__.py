"""Streamed statistics: aligned feature sets, splits, chunk kernels, passes and moments.

A pass reads every row chunk of all models once and reduces it to small
statistics (counts, means, R factors or Gram matrices of row subsets) that the
solvers and measures work from.
"""

from fredask.stats.features import FeatureSet, as_feature_set
from fredask.stats.scaler import ScalerSettings
from fredask.stats.splits import Split, resolve_split, stratified_split

__all__ = [
    "FeatureSet",
    "ScalerSettings",
    "Split",
    "as_feature_set",
    "resolve_split",
    "stratified_split",
]
