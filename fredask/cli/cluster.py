"""Command line of clusters: the ``--cluster`` option of every command, ``fredask cluster``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from fredask.cli.checks import CommandError
from fredask.errors import FredaskError

#: Dask's local schedulers, named without a cluster (as in fredask.cluster.clients).
LOCAL_SCHEDULERS = ("threads", "sync")

CLUSTER_HELP = (
    "where the Dask work runs: a cluster profile (local, slurm, pbs, local-cuda, the "
    "shipped slurm-cpu/slurm-gpu/pbs-cpu/pbs-gpu, jobqueue sections of your Dask config; "
    "'fredask cluster' lists them), a profile .yaml file, a scheduler address "
    "(tcp://HOST:PORT), a scheduler file (.json), or 'threads' / 'sync' (default: the "
    "active client, else the embedded LocalCluster); --scheduler is the old spelling"
)


TIMEOUT_HELP = (
    "seconds a scheduler address or file has to answer as a Dask scheduler (default: "
    "Dask's distributed.comm.timeouts.connect, 30 s)"
)


def add_timeout_argument(parser: argparse.ArgumentParser) -> None:
    """Give a command ``--cluster-timeout SECONDS`` (``args.cluster_timeout``)."""
    parser.add_argument(
        "--cluster-timeout", type=float, metavar="SECONDS", default=None, help=TIMEOUT_HELP
    )


def add_cluster_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """Give a command ``--cluster PROFILE|ADDRESS`` (``args.cluster``; alias ``--scheduler``).

    And ``--cluster-timeout``.  The command passes ``cluster_client(args)`` as
    ``client=``.
    """
    parser.add_argument(
        "--cluster",
        "--scheduler",
        dest="cluster",
        metavar="PROFILE|ADDRESS",
        help=CLUSTER_HELP + (f"; {note}" if note else ""),
    )
    add_timeout_argument(parser)


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """Give a command ``--device {cpu,gpu,auto}`` (``args.device``; default cpu)."""
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu", "auto"),
        default="cpu",
        help="where the chunk kernels run: cpu (numpy, default), gpu (CuPy on the workers' "
        "GPUs: the local-cuda and *-gpu profiles) or auto (gpu when every worker has one)",
    )


def checked_device(args: argparse.Namespace, client):
    """``--device`` resolved against the workers of ``client``, before anything is computed.

    Raises
    ------
    CommandError
        One line: no CuPy, or no GPU on the workers, for ``--device gpu``.
    """
    from fredask.backend import BackendError, resolve_backend

    try:
        return resolve_backend(args.device, None, client)
    except BackendError as error:
        raise CommandError(f"--device {args.device}: {error}") from None


def _cluster_message(spec: str, error: BaseException) -> str:
    text = str(error)
    return f"--cluster {text}" if text.startswith(f"{spec}:") else f"--cluster {spec}: {text}"


def cluster_client(args: argparse.Namespace | str | None):
    """The client (or local scheduler name) ``--cluster`` names; None: the default.

    Parameters
    ----------
    args : argparse.Namespace, str or None
        The parsed command line (its ``cluster`` and ``cluster_timeout``), or
        the ``--cluster`` value itself.

    A cluster is started (or connected to) once per process and shut down when
    the command ends; a scheduler that does not answer in time, an unknown
    profile and other errors are one line naming ``--cluster``.
    """
    if isinstance(args, argparse.Namespace):
        spec, timeout = args.cluster, getattr(args, "cluster_timeout", None)
    else:
        spec, timeout = args, None
    if spec is None or spec in LOCAL_SCHEDULERS:
        return spec
    from fredask.cluster.clients import resolve_client

    try:
        client = resolve_client(spec, timeout=timeout)
    except (FredaskError, OSError) as error:
        raise CommandError(_cluster_message(spec, error)) from None
    print(f"cluster {spec}: dashboard {client.dashboard_link}", file=sys.stderr)
    return client


def _show(profile) -> None:
    from fredask.cluster.profiles import JOBQUEUE_KINDS

    print(f"profile {profile.name} ({profile.kind}) from {profile.source}")
    for key, value in profile.options.items():
        print(f"  {key}: {value}")
    for key in ("scale", "adapt"):
        if getattr(profile, key) is not None:
            print(f"  {key}: {getattr(profile, key)}")
    if profile.kind in JOBQUEUE_KINDS:
        print("job script (one job; nothing submitted):")
        print(profile.job_script())


def cluster_command(args: argparse.Namespace) -> None:
    """``fredask cluster [PROFILE|ADDRESS]``: list profiles, show one, or wait for workers."""
    from fredask.cluster.clients import connect, is_address
    from fredask.cluster.profiles import available_profiles, load_profile

    spec = args.profile
    if spec is None:
        for name, profile in available_profiles().items():
            print(f"{name:16s} {profile.kind:11s} {profile.source}")
        return
    running = spec.endswith(".json") or (is_address(spec) and not spec.endswith((".yaml", ".yml")))
    # errors (an unknown profile, no scheduler, workers that do not come) are one line
    target = spec if running else load_profile(spec)
    if not running:
        _show(target)
    if not args.wait:
        return
    if not running:  # ask for the workers now: adaptive scaling waits for work
        target = dataclasses.replace(target, adapt=None, scale={"n": args.wait})
    start = time.perf_counter()
    with connect(target, timeout=args.cluster_timeout) as client:
        print(f"dashboard {client.dashboard_link}; waiting for {args.wait} worker(s)")
        client.wait_for_workers(args.wait, timeout=args.timeout)
        workers = client.scheduler_info()["workers"]
        print(
            f"{len(workers)} worker(s) up after {time.perf_counter() - start:.0f} s: "
            + ", ".join(sorted(w["host"] for w in workers.values()))
        )


def add_parser(sub) -> None:
    """Add ``fredask cluster`` to the CLI's subparsers."""
    p = sub.add_parser(
        "cluster",
        help="list cluster profiles, show one's job script, or start it and wait for workers",
    )
    p.add_argument(
        "profile",
        nargs="?",
        metavar="PROFILE|ADDRESS",
        help="profile name or .yaml (default: list them), or, with --wait, a running "
        "scheduler's address or scheduler file",
    )
    p.add_argument(
        "--wait",
        type=int,
        default=0,
        metavar="N",
        help="start the cluster (submit its jobs) or connect, wait for N workers, report; "
        "a cluster it started is shut down after",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for workers")
    add_timeout_argument(p)
    p.set_defaults(func=cluster_command)
