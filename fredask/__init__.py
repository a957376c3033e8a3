"""fredask: feature reconstruction errors between interatomic potentials, out of core.

The public names are imported on first use (PEP 562, through ``lazy_loader``), so ``import fredask``
and the command line's ``--help`` do not import Dask, Zarr or the solvers.
"""

from __future__ import annotations

import lazy_loader

__version__ = "0.1.0"

#: Public names, by the module (relative to this package) that defines them.
_PUBLIC = {
    "solvers.settings": ["RidgeSettings"],
    "stats.scaler": ["ScalerSettings"],
    "stats.splits": ["Split", "resolve_split", "stratified_split"],
    "metrics": [
        "global_reconstruction_distortion",
        "global_reconstruction_error",
        "local_reconstruction_error",
        "pointwise_global_reconstruction_distortion",
        "pointwise_global_reconstruction_error",
        "pointwise_local_reconstruction_error",
    ],
}
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs=_PUBLIC)
