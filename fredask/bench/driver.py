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
from collections.abc import Callable, Iterable
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


def run_benchmark(
    name: str,
    sizes: Iterable[int],
    measure_size: Callable,
    page: Callable[[list[dict], dict], str],
    results_dir: str | Path,
    **context,
) -> list[dict]:
    """``measure_size(client, size)`` for every size, reported as ``page(results, context)``.

    Parameters
    ----------
    name : str
        The results' file stem (``results_dir/name.md`` and ``.json``).
    sizes : iterable of int
        Measured in increasing order, each once.
    measure_size : callable (client, size) -> dict
        Every measurement for one size.
    page : callable (results, context) -> str
        The markdown page.
    results_dir : path
    **context
        Added to the context the page gets (machine, versions, cluster, load
        average at the start, the client's lifetime peak RSS).

    Returns
    -------
    list of dict
        The results of the sizes.
    """
    context = {
        "machine": machine(),
        "versions": versions(),
        "cluster": CLUSTER,
        "load_average": load_average(),
    } | context
    client = local_client(N_WORKERS, set_as_default=True)
    try:
        results = [measure_size(client, size) for size in sorted(set(sizes))]
    finally:
        close_client(client)
    context["client_lifetime_peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    markdown = page(results, context)
    print(markdown)
    write_results(results_dir, name, markdown, {"context": context, "results": results})
    return results
