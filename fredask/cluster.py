"""Which Dask scheduler runs a pass.

* a ``distributed.Client`` passed by the user is used as is;
* otherwise the client that is active in this process (``Client(...)`` made
  in a notebook, a ``dask-jobqueue`` cluster's client, ...);
* otherwise, for whole comparisons, an embedded :class:`distributed.LocalCluster`
  started once per process (one single-threaded worker per core); the
  scikit-matter drop-in functions instead run on Dask's local threads, so a
  one-off call costs no cluster start-up.
"""

from __future__ import annotations

import atexit
import os

import dask
import distributed
from dask.diagnostics import ProgressBar
from threadpoolctl import threadpool_limits

_embedded: distributed.Client | None = None


def active_client() -> distributed.Client | None:
    """The distributed client active in this process, if any."""
    try:
        return distributed.default_client()
    except ValueError:
        return None


def embedded_client(n_workers: int | None = None) -> distributed.Client:
    """The process-wide embedded LocalCluster's client, started on first use."""
    global _embedded
    if _embedded is None or _embedded.status in ("closed", "closing"):
        cluster = distributed.LocalCluster(
            n_workers=n_workers or os.cpu_count() or 1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
        )
        _embedded = distributed.Client(cluster, set_as_default=False)
        atexit.register(close_embedded)
    return _embedded


def close_embedded() -> None:
    """Shut the embedded LocalCluster down (it restarts on next use)."""
    global _embedded
    if _embedded is not None:
        cluster = _embedded.cluster
        _embedded.close()
        if cluster is not None:
            cluster.close()
        _embedded = None


Scheduler = distributed.Client | str

LOCAL_SCHEDULERS = ("threads", "sync")


def resolve_client(client=None, embedded: bool = True) -> Scheduler:
    """The scheduler a pass should use.

    Parameters
    ----------
    client : distributed.Client, "threads", "sync" or None
        An explicit client, or the name of one of Dask's local schedulers.
    embedded : bool
        With nothing given or active, start the embedded LocalCluster (True)
        or use Dask's local threads (False).

    Returns
    -------
    distributed.Client or str
    """
    if isinstance(client, str):
        if client not in LOCAL_SCHEDULERS:
            raise ValueError(f"unknown scheduler {client!r}; use one of {LOCAL_SCHEDULERS}")
        return client
    if client is not None:
        return client
    return active_client() or (embedded_client() if embedded else "threads")


def compute(obj, scheduler: Scheduler, progress: bool = False):
    """Compute a Dask collection or delayed object, with an optional progress bar."""
    if isinstance(scheduler, str):
        # Dask's threads each call BLAS: let BLAS itself use one thread, or the
        # two levels of threading oversubscribe the cores (10x slower seen).
        blas_threads = 1 if scheduler == "threads" else None
        with threadpool_limits(limits=blas_threads, user_api="blas"):
            if not progress:
                return dask.compute(obj, scheduler=scheduler)[0]
            with ProgressBar():
                return dask.compute(obj, scheduler=scheduler)[0]
    futures = scheduler.compute(obj)  # a future, or a list of them for a list
    if progress:
        distributed.progress(futures, scheduler=scheduler.scheduler.address)
    return scheduler.gather(futures)
