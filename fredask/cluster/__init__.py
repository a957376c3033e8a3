"""Where the Dask work runs: clients, the embedded LocalCluster, cluster profiles.

:mod:`.clients` picks the scheduler of a pass (an explicit client, the active
one, or the embedded LocalCluster) and computes on it; :mod:`.profiles` reads
named cluster profiles (LocalCluster, SLURM and PBS through dask-jobqueue,
dask-cuda), including the ones shipped in ``fredask/cluster/shipped_profiles``.
"""

from fredask.cluster.clients import (
    close_embedded,
    connect,
    get_client,
    is_address,
    resolve_client,
    shutdown,
)
from fredask.cluster.profiles import ClusterProfile, ProfileError, available_profiles, load_profile

__all__ = [
    "ClusterProfile",
    "ProfileError",
    "available_profiles",
    "close_embedded",
    "connect",
    "get_client",
    "is_address",
    "load_profile",
    "resolve_client",
    "shutdown",
]
