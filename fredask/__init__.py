"""fredask: feature reconstruction errors between interatomic potentials, out of core."""

from fredask.metrics import (
    global_reconstruction_distortion,
    global_reconstruction_error,
    local_reconstruction_error,
    pointwise_global_reconstruction_distortion,
    pointwise_global_reconstruction_error,
    pointwise_local_reconstruction_error,
)
from fredask.solvers.settings import RidgeSettings
from fredask.stats.scaler import ScalerSettings
from fredask.stats.splits import Split, resolve_split, stratified_split

__version__ = "0.1.0"

__all__ = [
    "RidgeSettings",
    "ScalerSettings",
    "Split",
    "global_reconstruction_distortion",
    "global_reconstruction_error",
    "local_reconstruction_error",
    "pointwise_global_reconstruction_distortion",
    "pointwise_global_reconstruction_error",
    "pointwise_local_reconstruction_error",
    "resolve_split",
    "stratified_split",
]
