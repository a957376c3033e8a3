"""The local cluster recipe: one single-threaded worker process per core, safe in plain scripts.

Every LocalCluster fredask starts (the embedded one, the ``local`` profile,
the benchmarks' clusters) comes from :func:`local_cluster`, and every client
it made is closed by :func:`close_client`.

Worker processes are started by ``multiprocessing``'s *spawn* method, which
re-runs the main script in every new process unless it is guarded by ``if
__name__ == "__main__":``; a plain script (or ``python - <<EOF``) then dies
with ``Nanny failed to start`` and pages of tracebacks.  Workers never need
the main module (Dask pickles what it defines by value), so while the workers
start, :func:`main_module_hidden` hides the main module's path from the
process start, and an unguarded script works as a guarded one does.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import distributed

#: What fredask's LocalClusters are, unless the caller says otherwise.
LOCAL_DEFAULTS = {"threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """Hide ``__main__.__file__`` and ``__spec__`` from processes spawned inside.

    ``multiprocessing.spawn`` re-imports the parent's main module in a new
    process from exactly these two attributes; both are restored on exit.
    """
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {key: main.__dict__[key] for key in ("__file__", "__spec__") if key in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


def local_cluster(n_workers: int | None = None, cluster_class=None, **options):
    """A new LocalCluster of ``n_workers`` (default: one per core) single-threaded processes.

    Parameters
    ----------
    n_workers : int, optional
    cluster_class : type, optional
        ``distributed.LocalCluster`` (default) or another local cluster class
        with its keywords (dask-cuda's ``LocalCUDACluster``).
    **options
        Keywords of the cluster class; they override :data:`LOCAL_DEFAULTS`.

    Returns
    -------
    distributed.LocalCluster
    """
    if cluster_class is None:
        cluster_class = distributed.LocalCluster
        options = LOCAL_DEFAULTS | {"n_workers": n_workers or os.cpu_count() or 1} | options
    elif n_workers is not None:
        options["n_workers"] = n_workers
    with main_module_hidden():
        return cluster_class(**options)


def local_client(
    n_workers: int | None = None, set_as_default: bool = False, **options
) -> distributed.Client:
    """A client of a new :func:`local_cluster` (the default client only if asked)."""
    cluster = local_cluster(n_workers, **options)
    try:
        return distributed.Client(cluster, set_as_default=set_as_default)
    except BaseException:
        cluster.close()
        raise


def close_client(client: distributed.Client, close_cluster: bool = True) -> None:
    """Close ``client`` and (by default) the cluster it was made for."""
    cluster = client.cluster
    client.close()
    if close_cluster and cluster is not None:
        cluster.close()
