"""Command line of clusters: the ``--cluster`` option of every command, ``fredask cluster``."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from fredask.cluster.clients import LOCAL_SCHEDULERS, connect, is_address, resolve_client
from fredask.cluster.profiles import (
    JOBQUEUE_KINDS,
    ProfileError,
    available_profiles,
    load_profile,
)

CLUSTER_HELP = (
    "where the Dask work runs: a cluster profile (local, slurm, pbs, local-cuda, the "
    "shipped slurm-cpu/slurm-gpu/pbs-cpu/pbs-gpu, jobqueue sections of your Dask config; "
    "'fredask cluster' lists them), a profile .yaml file, a scheduler address "
    "(tcp://HOST:PORT), a scheduler file (.json), or 'threads' / 'sync' (default: the "
    "active client, else the embedded LocalCluster); --scheduler is the old spelling"
)


def add_cluster_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """Give a command ``--cluster PROFILE|ADDRESS`` (``args.cluster``; alias ``--scheduler``).

    The command passes ``cluster_client(args.cluster)`` as ``client=``.
    """
    parser.add_argument(
        "--cluster",
        "--scheduler",
        dest="cluster",
        metavar="PROFILE|ADDRESS",
        help=CLUSTER_HELP + (f"; {note}" if note else ""),
    )


def cluster_client(spec: str | None):
    """The client (or local scheduler name) ``--cluster`` names; None: the default.

    A cluster is started (or connected to) once per process and shut down when
    the command ends; errors become a one-line exit message.
    """
    if spec is None or spec in LOCAL_SCHEDULERS:
        return spec
    try:
        client = resolve_client(spec)
    except (ProfileError, OSError) as error:
        raise SystemExit(f"--cluster {spec}: {error}") from None
    print(f"cluster {spec}: dashboard {client.dashboard_link}", file=sys.stderr)
    return client


def _show(profile) -> None:
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
    spec = args.profile
    if spec is None:
        for name, profile in available_profiles().items():
            print(f"{name:16s} {profile.kind:11s} {profile.source}")
        return
    running = spec.endswith(".json") or (is_address(spec) and not spec.endswith((".yaml", ".yml")))
    try:
        target = spec if running else load_profile(spec)
        if not running:
            _show(target)
        if not args.wait:
            return
        if not running:  # ask for the workers now: adaptive scaling waits for work
            target = dataclasses.replace(target, adapt=None, scale={"n": args.wait})
        start = time.perf_counter()
        with connect(target) as client:
            print(f"dashboard {client.dashboard_link}; waiting for {args.wait} worker(s)")
            client.wait_for_workers(args.wait, timeout=args.timeout)
            workers = client.scheduler_info()["workers"]
            print(
                f"{len(workers)} worker(s) up after {time.perf_counter() - start:.0f} s: "
                + ", ".join(sorted(w["host"] for w in workers.values()))
            )
    except (ProfileError, OSError) as error:  # OSError: no scheduler, or timed out
        raise SystemExit(f"fredask cluster {spec}: {error}") from None


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
    p.set_defaults(func=cluster_command)
