"""Run a benchmark over its sizes on the benchmarks' cluster and write its report.

The benchmarks of ``benchmarks/`` are thin drivers: each gives
:func:`run_benchmark` a function measuring one size and one turning all sizes
into a markdown page; this module makes the cluster (2 single-threaded worker
processes, :func:`fredask.cluster.local.local_client`, the default client while it
runs), the context (machine,
versions, load), closes the cluster even on failure, prints the page and
writes it with the raw numbers (:func:`fredask.bench.report.write_results`).
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from pathlib import Path

from fredask.bench.measure import load_average, machine, versions
from fredask.bench.report import write_results
from fredask.cluster.local import close_client, local_client

#: The cluster of the committed benchmark results.
N_WORKERS = 2
CLUSTER = f"LocalCluster(n_workers={N_WORKERS}, threads_per_worker=1, processes=True)"


def log(message: str) -> None:
    """Progress on stderr, so stdout holds the report only."""
    print(message, file=sys.stderr, flush=True)


def directory_arguments(parser, here: str | Path) -> None:
    """Give a benchmark ``--data-dir`` and ``--results-dir`` (``here/_data``, ``here/results``)."""
    here = Path(here)
    parser.add_argument("--data-dir", type=Path, default=here / "_data")
    parser.add_argument("--results-dir", type=Path, default=here / "results")


def argument_values(args) -> dict:
    """Parsed arguments as JSON values (paths as strings), for a report's context."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def run_benchmark(
    name: str,
    args,
    measure_size: Callable,
    page: Callable[[list[dict], dict], str],
    **context,
) -> list[dict]:
    """``measure_size(client, size, args)`` for every size, reported as ``page(results, context)``.

    Parameters
    ----------
    name : str
        The results' file stem (``args.results_dir/name.md`` and ``.json``).
    args : argparse.Namespace
        With ``sizes`` (measured in increasing order, each once) and
        ``results_dir`` (:func:`directory_arguments`); recorded in the context.
    measure_size : callable (client, size, args) -> dict
        Every measurement for one size.
    page : callable (results, context) -> str
        The markdown page.
    **context
        Added to the context the page gets (machine, versions, cluster, load
        average at the start, the arguments, the client's lifetime peak RSS).

    Returns
    -------
    list of dict
        The results of the sizes.
    """
    context = {
        "args": argument_values(args),
        "machine": machine(),
        "versions": versions(),
        "cluster": CLUSTER,
        "load_average": load_average(),
    } | context
    client = local_client(N_WORKERS, set_as_default=True)
    try:
        results = [measure_size(client, size, args) for size in sorted(set(args.sizes))]
    finally:
        close_client(client)
    context["client_lifetime_peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    markdown = page(results, context)
    print(markdown)
    write_results(args.results_dir, name, markdown, {"context": context, "results": results})
    return results
