"""Where the Dask work runs: clients, the embedded LocalCluster, cluster profiles.

:mod:`.clients` picks the scheduler of a pass (an explicit client, the active
one, or the embedded LocalCluster) and computes on it; :mod:`.profiles` reads
named cluster profiles (LocalCluster, SLURM and PBS through dask-jobqueue,
dask-cuda), including the ones shipped in ``fredask/cluster/shipped_profiles``;
:mod:`.progress` draws a pass's progress (live, or as log lines).

The names below are imported on first use (importing this package imports
neither Dask nor distributed), so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

#: Public name -> the module that defines it.
_EXPORTS = {
    "ClusterConnectionError": "fredask.cluster.clients",
    "check_scheduler": "fredask.cluster.clients",
    "close_embedded": "fredask.cluster.clients",
    "connect": "fredask.cluster.clients",
    "connect_timeout": "fredask.cluster.clients",
    "get_client": "fredask.cluster.clients",
    "is_address": "fredask.cluster.clients",
    "resolve_client": "fredask.cluster.clients",
    "shutdown": "fredask.cluster.clients",
    "ClusterProfile": "fredask.cluster.profiles",
    "ProfileError": "fredask.cluster.profiles",
    "available_profiles": "fredask.cluster.profiles",
    "load_profile": "fredask.cluster.profiles",
}

__all__ = [
    "ClusterConnectionError",
    "ClusterProfile",
    "ProfileError",
    "available_profiles",
    "check_scheduler",
    "close_embedded",
    "connect",
    "connect_timeout",
    "get_client",
    "is_address",
    "load_profile",
    "resolve_client",
    "shutdown",
]

if TYPE_CHECKING:
    from fredask.cluster.clients import (
        ClusterConnectionError,
        check_scheduler,
        close_embedded,
        connect,
        connect_timeout,
        get_client,
        is_address,
        resolve_client,
        shutdown,
    )
    from fredask.cluster.profiles import (
        ClusterProfile,
        ProfileError,
        available_profiles,
        load_profile,
    )


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
