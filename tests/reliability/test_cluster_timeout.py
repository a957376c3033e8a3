"""A scheduler address that is not a Dask scheduler fails within a bounded time, in one line.

Something that accepts connections and never answers, and an HTTP server, used to
make ``distributed.Client(address)`` wait forever; fredask asks the address for
its identity first and gives up after the connect timeout.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import dask
import pytest

from fredask.cli import main as cli_main
from fredask.cluster import (
    ClusterConnectionError,
    check_scheduler,
    connect_timeout,
    get_client,
    resolve_client,
    shutdown,
)
from fredask.errors import FredaskError

#: Seconds the tests give an address; a failure must come before TIMEOUT + SLACK.
TIMEOUT = 2.0
SLACK = 4.0


@pytest.fixture
def silent_address():
    """``tcp://127.0.0.1:PORT`` of a listener that accepts and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for connection in accepted:
        connection.close()
    server.close()


@pytest.fixture
def http_address():
    """``tcp://127.0.0.1:PORT`` of a tiny HTTP server in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _bounded(call):
    start = time.perf_counter()
    with pytest.raises(ClusterConnectionError) as info:
        call()
    elapsed = time.perf_counter() - start
    assert elapsed < TIMEOUT + SLACK, f"took {elapsed:.1f} s"
    assert isinstance(info.value, FredaskError) and isinstance(info.value, OSError)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("server", ["silent_address", "http_address"])
def test_get_client_gives_up_in_time(server, request):
    address = request.getfixturevalue(server)
    message = _bounded(lambda: get_client(address, timeout=TIMEOUT, set_as_default=False))
    assert message.startswith(f"{address}: ")
    assert ("no Dask scheduler answered within 2 s" in message) or (
        "not a Dask scheduler" in message
    ), message


def test_silent_listener_names_the_timeout_and_how_to_change_it(silent_address):
    message = _bounded(lambda: check_scheduler(silent_address, TIMEOUT))
    assert message == (
        f"{silent_address}: no Dask scheduler answered within 2 s (is something else "
        "listening there? set the time with --cluster-timeout or "
        "distributed.comm.timeouts.connect)"
    )


def test_resolve_client_and_the_dask_config_timeout(silent_address):
    with dask.config.set({"distributed.comm.timeouts.connect": f"{TIMEOUT}s"}):
        assert connect_timeout() == TIMEOUT
        _bounded(lambda: resolve_client(silent_address))
    _bounded(lambda: resolve_client(silent_address, timeout=TIMEOUT))


def test_scheduler_file_of_a_silent_listener(tmp_path, silent_address):
    path = tmp_path / "scheduler.json"
    path.write_text(json.dumps({"address": silent_address}))
    _bounded(lambda: get_client(str(path), timeout=TIMEOUT, set_as_default=False))


def test_connect_timeout_must_be_positive():
    assert connect_timeout("5s") == 5.0 and connect_timeout(0.5) == 0.5
    with pytest.raises(ClusterConnectionError, match="positive time, got -1"):
        connect_timeout(-1)
    with pytest.raises(ClusterConnectionError, match="positive time, got 'soon'"):
        connect_timeout("soon")


def test_a_real_scheduler_still_connects():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        assert check_scheduler(cluster.scheduler_address, TIMEOUT)["type"] == "Scheduler"
        client = get_client(cluster.scheduler_address, timeout=TIMEOUT, set_as_default=False)
        try:
            assert client.submit(sum, [1, 2]).result() == 3
        finally:
            shutdown(client)


@pytest.mark.parametrize("server", ["silent_address", "http_address"])
def test_cli_cluster_timeout_is_one_line_and_writes_nothing(server, request, tmp_path, capsys):
    from fredask.store.datasets import write_synthetic_store

    address = request.getfixturevalue(server)
    store = tmp_path / "s.zarr"
    write_synthetic_store(store, n_rows=64, chunk_rows=32)
    output = tmp_path / "out"
    command = ["compare", str(store), "--output", str(output)]
    start = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        cli_main([*command, "--cluster", address, "--cluster-timeout", str(TIMEOUT)])
    assert time.perf_counter() - start < TIMEOUT + SLACK
    assert str(info.value.code).startswith(f"fredask compare: --cluster {address}: ")
    assert "\n" not in str(info.value.code)
    assert not output.exists()
    assert "Traceback" not in capsys.readouterr().err


def test_cli_refuses_a_timeout_that_is_not_positive(tmp_path):
    with pytest.raises(SystemExit) as info:
        cli_main(["info", str(tmp_path / "s.zarr"), "--cluster-timeout", "0"])
    assert (
        info.value.code == "fredask info: --cluster-timeout 0: must be a positive number of seconds"
    )
