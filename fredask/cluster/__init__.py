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

import lazy_loader

#: Public names, by the module (relative to this package) that defines them.
_PUBLIC = {
    "clients": [
        "ClusterConnectionError",
        "check_scheduler",
        "close_embedded",
        "connect",
        "connect_timeout",
        "get_client",
        "is_address",
        "resolve_client",
        "shutdown",
    ],
    "profiles": ["ClusterProfile", "ProfileError", "available_profiles", "load_profile"],
}
__getattr__, __dir__, __all__ = lazy_loader.attach(__name__, submod_attrs=_PUBLIC)
