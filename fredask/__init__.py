"""fredask: feature reconstruction errors between interatomic potentials, out of core.

The public names are imported on first use (PEP 562), so ``import fredask``
and the command line's ``--help`` do not import Dask, Zarr or the solvers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "RidgeSettings": "fredask.solvers.settings",
    "ScalerSettings": "fredask.stats.scaler",
    "Split": "fredask.stats.splits",
    "global_reconstruction_distortion": "fredask.metrics",
    "global_reconstruction_error": "fredask.metrics",
    "local_reconstruction_error": "fredask.metrics",
    "pointwise_global_reconstruction_distortion": "fredask.metrics",
    "pointwise_global_reconstruction_error": "fredask.metrics",
    "pointwise_local_reconstruction_error": "fredask.metrics",
    "resolve_split": "fredask.stats.splits",
    "stratified_split": "fredask.stats.splits",
}

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

if TYPE_CHECKING:
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


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
