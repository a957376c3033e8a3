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

import asyncio
import atexit
import concurrent.futures
import contextlib
import json
import os
import re
import weakref
from collections.abc import Iterator
from pathlib import Path

import dask
import distributed
from threadpoolctl import threadpool_limits

from fredask.cluster.local import close_client, local_client
from fredask.cluster.profiles import (
    ClusterProfile,
    ProfileError,
    load_profile,
)
from fredask.cluster.progress import (
    WorkMeter,
    local_progress,
    wait_weighted,
    wait_with_progress,
    weighted_local_progress,
)
from fredask.errors import FredaskError


class ClusterConnectionError(FredaskError, OSError):
    """A scheduler address or file that does not lead to a Dask scheduler in time."""


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


def connect_timeout(timeout: float | str | None = None) -> float:
    """Seconds to wait for a scheduler: ``timeout``, else Dask's connect timeout (30 s).

    Parameters
    ----------
    timeout : float, str or None
        Seconds, or a Dask time string (``"5s"``); None reads
        ``distributed.comm.timeouts.connect`` from the Dask config.

    Returns
    -------
    float

    Raises
    ------
    ClusterConnectionError
        For a timeout that is not a positive time.
    """
    if timeout is None:
        timeout = dask.config.get("distributed.comm.timeouts.connect", "30s")
    try:
        seconds = dask.utils.parse_timedelta(timeout, default="s")
    except (TypeError, ValueError, KeyError):
        seconds = None
    if seconds is None or not seconds > 0:
        raise ClusterConnectionError(f"connect timeout must be a positive time, got {timeout!r}")
    return float(seconds)


async def _identity(address: str, seconds: float) -> dict:
    comm = await distributed.comm.connect(
        address, timeout=seconds, **distributed.Security().get_connection_args("client")
    )
    try:
        await comm.write({"op": "identity"})
        return await comm.read()
    finally:
        comm.abort()


def check_scheduler(address: str, timeout: float | str | None = None) -> dict:
    """Ask ``address`` for its identity; fail within ``timeout`` unless a scheduler answers.

    Parameters
    ----------
    address : str
        ``tcp://host:port`` (or any address ``distributed`` connects to).
    timeout : float, str or None
        See :func:`connect_timeout`.

    Returns
    -------
    dict
        The scheduler's identity (its ``type``, ``id``, ``address``, workers).

    Raises
    ------
    ClusterConnectionError
        Nothing listens, the connection closes, nothing answers in time, or
        what answers is not a Dask scheduler.
    """
    seconds = connect_timeout(timeout)

    def probe() -> dict:  # its own event loop: also works where one runs (Jupyter)
        return asyncio.run(asyncio.wait_for(_identity(address, seconds), seconds))

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fredask-probe") as pool:
        try:
            identity = pool.submit(probe).result()
        except TimeoutError:
            raise ClusterConnectionError(
                f"{address}: no Dask scheduler answered within {seconds:g} s (is something "
                "else listening there? set the time with --cluster-timeout or "
                "distributed.comm.timeouts.connect)"
            ) from None
        except distributed.comm.CommClosedError:
            raise ClusterConnectionError(
                f"{address}: the connection was closed without an answer; not a Dask scheduler?"
            ) from None
        except OSError as error:
            raise ClusterConnectionError(f"{address}: cannot connect ({error})") from None
        except Exception as error:  # e.g. bytes that do not deserialize
            raise ClusterConnectionError(
                f"{address}: answered, but not as a Dask scheduler ({type(error).__name__})"
            ) from None
    if not isinstance(identity, dict) or identity.get("type") != "Scheduler":
        raise ClusterConnectionError(f"{address}: answered, but is not a Dask scheduler")
    return identity


def _scheduler_file_address(path: str) -> str:
    if not Path(path).is_file():
        raise ProfileError(f"scheduler file {path} does not exist (yet?)")
    try:
        address = json.loads(Path(path).read_text())["address"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ProfileError(
            f"scheduler file {path}: no scheduler address in it ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(address, str):
        raise ProfileError(f"scheduler file {path}: the address {address!r} is not a string")
    return address


def get_client(
    cluster: str | Path | ClusterProfile | None = None,
    *,
    set_as_default: bool = True,
    timeout: float | str | None = None,
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
    timeout : float, str or None
        Seconds a scheduler address or file has to answer as a Dask scheduler
        (default: Dask's ``distributed.comm.timeouts.connect``, 30 s).

    Returns
    -------
    distributed.Client
        Close it, and the cluster it started, with :func:`shutdown` (or use
        :func:`connect`); started clusters also close at interpreter exit.

    Raises
    ------
    ClusterConnectionError
        A scheduler address or file whose scheduler does not answer in time.
    ProfileError
        An unknown or malformed profile, or a missing scheduler file.

    Examples
    --------
    >>> client = get_client("slurm-cpu")  # doctest: +SKIP
    >>> result = reconstruction_matrix(features, "gfre", client=client)  # doctest: +SKIP
    """
    spec = "local" if cluster is None else cluster
    if not isinstance(spec, ClusterProfile):
        text = str(spec)
        if text.endswith(".json"):
            check_scheduler(_scheduler_file_address(text), timeout)
            return distributed.Client(
                scheduler_file=text, set_as_default=set_as_default, timeout=connect_timeout(timeout)
            )
        if is_address(text) and not text.endswith((".yaml", ".yml")):
            check_scheduler(text, timeout)
            return distributed.Client(
                text, set_as_default=set_as_default, timeout=connect_timeout(timeout)
            )
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
def connect(
    cluster: str | Path | ClusterProfile | None = None, *, timeout: float | str | None = None
) -> Iterator[distributed.Client]:
    """``with connect("slurm-cpu") as client:``, closing what it started on exit.

    Parameters are those of :func:`get_client`; the client is the active one
    inside the block.
    """
    client = get_client(cluster, timeout=timeout)
    try:
        yield client
    finally:
        shutdown(client)


def started_client(
    spec: str | Path | ClusterProfile, timeout: float | str | None = None
) -> distributed.Client:
    """The process-wide client a spec names, started on first use (see :func:`get_client`)."""
    key = repr(spec) if isinstance(spec, ClusterProfile) else str(spec)
    client = _started.get(key)
    if client is None or client.status in ("closed", "closing"):
        if not _started:
            atexit.register(close_embedded)
        client = get_client(spec, set_as_default=False, timeout=timeout)
        _started[key] = client
    return client


Scheduler = distributed.Client | str

LOCAL_SCHEDULERS = ("threads", "sync")


def resolve_client(
    client=None, embedded: bool = True, timeout: float | str | None = None
) -> Scheduler:
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
    timeout : float, str or None
        Seconds a scheduler address or file has to answer (see :func:`get_client`).

    Returns
    -------
    distributed.Client or str
    """
    if isinstance(client, str | Path | ClusterProfile):
        if client in LOCAL_SCHEDULERS:
            return client
        return started_client(client, timeout)
    if client is not None:
        return client
    return active_client() or (embedded_client() if embedded else "threads")


def task_memory(scheduler: Scheduler) -> int:
    """Bytes one task may hold at a time on ``scheduler``.

    A distributed cluster: the smallest worker memory limit over that
    worker's threads (each thread runs a task).  Dask's local schedulers (or
    workers without a limit): this machine's memory over the tasks that run at
    once (one for ``"sync"``, one per core otherwise).
    """
    import psutil

    total = psutil.virtual_memory().total
    cores = os.cpu_count() or 1
    if isinstance(scheduler, str):
        return total // (1 if scheduler == "sync" else cores)
    workers = scheduler.scheduler_info(n_workers=-1)["workers"].values()
    limits = [
        int(w["memory_limit"]) // max(1, int(w.get("nthreads", 1)))
        for w in workers
        if w.get("memory_limit")
    ]
    return min(limits) if limits else total // cores


def _local_blas(scheduler: str):
    """BLAS threads for a pass on Dask's local scheduler ``scheduler``.

    Dask's threads each call BLAS: under ``"threads"`` BLAS itself uses one
    thread, or the two levels of threading oversubscribe the cores (10x slower
    seen); ``"sync"`` leaves BLAS its own threads.
    """
    return threadpool_limits(limits=1 if scheduler == "threads" else None, user_api="blas")


def compute(obj, scheduler: Scheduler, progress: bool = False):
    """Compute a Dask collection or delayed object, with an optional progress bar.

    The bar (:mod:`fredask.cluster.progress`) is live where stderr is a
    terminal, and one line every few seconds where it is a log file.
    """
    if isinstance(scheduler, str):
        with _local_blas(scheduler):
            if not progress:
                return dask.compute(obj, scheduler=scheduler)[0]
            with local_progress():
                return dask.compute(obj, scheduler=scheduler)[0]
    futures = scheduler.compute(obj)  # a future, or a list of them for a list
    if progress:
        wait_with_progress(futures, scheduler.scheduler.address)
    return scheduler.gather(futures)


def compute_weighted(tasks: list, costs: list[float], scheduler: Scheduler, label: str) -> list:
    """Compute Dask delayed ``tasks`` of unequal ``costs``, showing a :class:`WorkMeter`.

    The meter estimates the time left from the cost of the tasks done, not
    their number.  Returns the results in the order of ``tasks``.
    """
    meter = WorkMeter({t.key: c for t, c in zip(tasks, costs, strict=True)}, label)
    if isinstance(scheduler, str):
        with _local_blas(scheduler), weighted_local_progress(meter):
            return list(dask.compute(tasks, scheduler=scheduler)[0])
    futures = scheduler.compute(tasks)
    wait_weighted(futures, meter, scheduler)
    return scheduler.gather(futures)
