"""Which Dask scheduler runs a pass.

* a ``distributed.Client`` passed by the user is used as is;
* otherwise the client that is active in this process (``Client(...)`` made
  in a notebook, a ``dask-jobqueue`` cluster's client, ...);
* otherwise, for whole comparisons, an embedded :class:`distributed.LocalCluster`
  started once per process (one single-threaded worker per core); the
  scikit-matter drop-in functions instead run on Dask's local threads, so a
  one-off call costs no cluster start-up.

Wherever a client is taken, a string also names one: ``"threads"`` or ``"sync"``
(Dask's local schedulers), a scheduler address (``tcp://host:8786``), a scheduler
file (``scheduler.json``, as ``dask scheduler --scheduler-file`` writes), or a
cluster profile (``local``, ``slurm``, ``pbs``, ``local-cuda``, the profiles of
the shipped ones and those of the user's Dask config, or a profile ``.yaml``; see
:mod:`fredask.cluster.profiles`).  Such a cluster is started once per process and shut
down with the embedded one; :func:`get_client` and :func:`connect` give a client
of one's own.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import weakref
from collections.abc import Iterator
from pathlib import Path

import dask
import distributed
from dask.diagnostics import ProgressBar
from threadpoolctl import threadpool_limits

from fredask.cluster.local import close_client, local_client
from fredask.cluster.profiles import (
    ClusterProfile,
    ProfileError,
    load_profile,
)

_embedded: distributed.Client | None = None
#: Clients of the clusters that string specs started in this process, by spec.
_started: dict[str, distributed.Client] = {}
#: Clusters fredask started (closed with their client by :func:`shutdown`).
_owned = weakref.WeakSet()


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
        _embedded = local_client(n_workers)
        atexit.register(close_embedded)
    return _embedded


def close_embedded() -> None:
    """Shut the embedded LocalCluster and the clusters named by string down.

    They restart on next use.
    """
    global _embedded
    if _embedded is not None:
        close_client(_embedded)
        _embedded = None
    while _started:
        shutdown(_started.popitem()[1])


_ADDRESS = re.compile(r"^[\w.\-]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$")


def is_address(spec: str) -> bool:
    """Whether ``spec`` is a scheduler address (``proto://...`` or ``host:port``)."""
    return "://" in spec or bool(_ADDRESS.match(spec))


def get_client(
    cluster: str | Path | ClusterProfile | None = None, *, set_as_default: bool = True
) -> distributed.Client:
    """A new client of a profile's cluster, a scheduler address or a scheduler file.

    Parameters
    ----------
    cluster : str, path or ClusterProfile, optional
        A profile name or ``.yaml`` file (the cluster is started, and its jobs
        submitted), ``tcp://host:port`` / ``host:port``, or a ``.json``
        scheduler file.  Default: the ``local`` profile.
    set_as_default : bool
        Make it the active client (what fredask and Dask use when given none).

    Returns
    -------
    distributed.Client
        Close it, and the cluster it started, with :func:`shutdown` (or use
        :func:`connect`); started clusters also close at interpreter exit.

    Examples
    --------
    >>> client = get_client("slurm-cpu")  # doctest: +SKIP
    >>> result = reconstruction_matrix(features, "gfre", client=client)  # doctest: +SKIP
    """
    spec = "local" if cluster is None else cluster
    if not isinstance(spec, ClusterProfile):
        text = str(spec)
        if text.endswith(".json"):
            if not Path(text).is_file():
                raise ProfileError(f"scheduler file {text} does not exist (yet?)")
            return distributed.Client(scheduler_file=text, set_as_default=set_as_default)
        if is_address(text) and not text.endswith((".yaml", ".yml")):
            return distributed.Client(text, set_as_default=set_as_default)
    started = load_profile(spec).start()
    _owned.add(started)
    try:
        return distributed.Client(started, set_as_default=set_as_default)
    except BaseException:
        started.close()
        raise


def shutdown(client: distributed.Client) -> None:
    """Close a client, and the cluster :func:`get_client` started for it (if any)."""
    close_client(client, close_cluster=client.cluster in _owned)


@contextlib.contextmanager
def connect(cluster: str | Path | ClusterProfile | None = None) -> Iterator[distributed.Client]:
    """``with connect("slurm-cpu") as client:``, closing what it started on exit.

    Parameters are those of :func:`get_client`; the client is the active one
    inside the block.
    """
    client = get_client(cluster)
    try:
        yield client
    finally:
        shutdown(client)


def started_client(spec: str | Path | ClusterProfile) -> distributed.Client:
    """The process-wide client a spec names, started on first use (see :func:`get_client`)."""
    key = repr(spec) if isinstance(spec, ClusterProfile) else str(spec)
    client = _started.get(key)
    if client is None or client.status in ("closed", "closing"):
        if not _started:
            atexit.register(close_embedded)
        client = _started[key] = get_client(spec, set_as_default=False)
    return client


Scheduler = distributed.Client | str

LOCAL_SCHEDULERS = ("threads", "sync")


def resolve_client(client=None, embedded: bool = True) -> Scheduler:
    """The scheduler a pass should use.

    Parameters
    ----------
    client : distributed.Client, str or None
        An explicit client; the name of one of Dask's local schedulers
        ("threads", "sync"); or a profile name, profile ``.yaml``, scheduler
        address or scheduler file (:func:`started_client`).
    embedded : bool
        With nothing given or active, start the embedded LocalCluster (True)
        or use Dask's local threads (False).

    Returns
    -------
    distributed.Client or str
    """
    if isinstance(client, str | Path | ClusterProfile):
        if client in LOCAL_SCHEDULERS:
            return client
        return started_client(client)
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
        # a text bar also in Jupyter, where the widget needs ipywidgets
        distributed.progress(futures, scheduler=scheduler.scheduler.address, notebook=False)
    return scheduler.gather(futures)
