"""A real multi-process deployment on loopback: fredask against `dask scheduler` + `dask worker`.

The test starts the same processes a batch job starts on compute nodes (a
``dask scheduler`` writing a scheduler file, two single-threaded ``dask worker``
processes), points the CLI at the scheduler's address with ``--cluster``, and
checks the GFRE matrix against the LocalCluster's; then it SIGKILLs one worker
while the statistics pass is running and checks that Dask recomputed the lost
tasks on the other and the matrix is still exactly the same. Last, it runs with
bash the job script a SLURM profile renders, as a compute node would.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import distributed
import numpy as np
import pytest

from fredask.cli import main as cli_main
from fredask.cluster import connect, load_profile
from fredask.store.datasets import write_synthetic_store

# 120 row chunks of 4 models: one task each, a pass of a second or two on 2 workers
N_ROWS, CHUNK_ROWS = 24_000, 200


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("deployment") / "zoo.zarr"
    write_synthetic_store(path, n_rows=N_ROWS, chunk_rows=CHUNK_ROWS)
    return path


@dataclass
class Deployment:
    address: str
    scheduler_file: str
    workers: dict  # worker address -> its process
    watcher: distributed.Client  # a second client, to watch the scheduler's tasks


def _wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def deployment(tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, stopped after."""
    scheduler_file = tmp_path / "scheduler.json"
    # a transition log long enough to hold the whole run's history (Client.story)
    env = os.environ | {"DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH": "1000000"}
    logs = open(tmp_path / "dask.log", "w")  # closed below
    processes = []

    def start(*args):
        process = subprocess.Popen(
            [sys.executable, "-m", "dask", *args], env=env, stdout=logs, stderr=logs
        )
        processes.append(process)
        return process

    try:
        start(
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        )
        _wait_for(scheduler_file.exists, what="the scheduler file")
        workers = [
            start(
                "worker",
                "--scheduler-file",
                str(scheduler_file),
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--no-nanny",  # a killed worker stays dead, as when its node fails
                "--no-dashboard",
                "--name",
                f"w{i}",
                "--local-directory",
                str(tmp_path / f"w{i}"),
            )
            for i in range(2)
        ]
        with distributed.Client(
            scheduler_file=str(scheduler_file), set_as_default=False
        ) as watcher:
            watcher.wait_for_workers(2, timeout=60)
            pids = watcher.run(os.getpid)
            by_pid = {process.pid: process for process in workers}
            yield Deployment(
                address=watcher.scheduler.address,
                scheduler_file=str(scheduler_file),
                workers={address: by_pid[pid] for address, pid in pids.items()},
                watcher=watcher,
            )
    finally:
        for process in reversed(processes):  # workers first, then the scheduler
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        logs.close()


def _gfre(store, cluster, output):
    cli_main(["compare", str(store), "--cluster", cluster, "--output", str(output)])
    return json.loads((output / "gfre.json").read_text())["paper"]


def _matrix(result):
    return np.array([[pair["A_to_B"] for pair in row.values()] for row in result.values()])


@pytest.fixture(scope="module")
def local_result(store, tmp_path_factory):
    """The GFRE matrix on a LocalCluster (``--cluster local``)."""
    return _gfre(store, "local", tmp_path_factory.mktemp("local"))


def test_cli_by_address_equals_the_local_cluster(store, deployment, local_result, tmp_path):
    result = _gfre(store, deployment.address, tmp_path / "by-address")
    assert list(result) == ["noisy-32", "partial-48", "sharp-64", "smooth-64"]
    assert 0.2 < _matrix(result)[0, 1] < 1.0  # a real matrix, not zeros or NaN
    np.testing.assert_array_equal(_matrix(result), _matrix(local_result))
    # the batch script's way in: the scheduler file
    with connect(deployment.scheduler_file) as client:
        assert sorted(client.scheduler_info()["workers"]) == sorted(deployment.workers)
    assert len(deployment.watcher.scheduler_info()["workers"]) == 2  # left running


def _computed(key) -> bool:
    """A task result (not a chunk of an input array, nor the array object itself)."""
    return isinstance(key, str) and not key.startswith("original-")


def test_killed_worker_mid_pass_still_gives_the_exact_matrix(
    store, deployment, local_result, tmp_path
):
    watcher = deployment.watcher
    killed = {}
    running = threading.Event()

    def kill_once_tasks_are_done():
        """SIGKILL the first worker that holds finished task results of the pass."""

        def victim():
            for worker, keys in watcher.has_what().items():
                held = [key for key in keys if _computed(key)]
                if held:
                    return worker, held
            return None

        _wait_for(lambda: victim() is not None, what="finished tasks on a worker")
        worker, held = victim()
        lost = held + [key for key in watcher.processing()[worker] if _computed(key)]
        deployment.workers[worker].send_signal(signal.SIGKILL)
        killed.update(worker=worker, lost=lost, at=time.time(), mid_pass=running.is_set())

    running.set()
    killer = threading.Thread(target=kill_once_tasks_are_done, daemon=True)
    killer.start()
    try:
        result = _gfre(store, deployment.address, tmp_path / "killed")
    finally:
        running.clear()
        killer.join(timeout=60)
    assert killed, "no worker was killed"
    assert killed["mid_pass"], "the kill should land mid-pass"
    assert deployment.workers[killed["worker"]].wait(timeout=10) == -signal.SIGKILL
    assert killed["worker"] not in watcher.scheduler_info()["workers"]
    # the results the dead worker held, or was computing, were computed again after the kill
    # (the scheduler's story: ("scheduler", key, start, finish, recommendations, stimulus, time))
    story = [t for t in watcher.story(*killed["lost"]) if t[0] == "scheduler"]
    again = {t[1] for t in story if t[3] == "memory" and t[-1] > killed["at"]}
    assert again, (killed, story)
    np.testing.assert_array_equal(_matrix(result), _matrix(local_result))


def test_a_rendered_slurm_job_script_starts_workers_that_compute(tmp_path):
    """What a compute node runs: the profile's job script, here with bash instead of SLURM."""
    scratch = tmp_path / "node-scratch"
    (tmp_path / "p.yaml").write_text(
        "jobqueue:\n"
        "  node:\n"
        "    kind: slurm\n"
        "    cores: 2\n"
        "    processes: 2\n"
        "    memory: 2GiB\n"
        "    interface: lo\n"
        "    local-directory: $NODE_SCRATCH\n"  # expanded by the job's shell
        f"    job-script-prologue: [export NODE_SCRATCH={scratch}]\n"
    )
    profile = load_profile(tmp_path / "p.yaml")
    with (
        distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=":0") as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        script = tmp_path / "job.sh"
        script.write_text(profile.job_script(cluster.scheduler_address))
        assert script.read_text().startswith("#!/usr/bin/env bash\n\n#SBATCH -J dask-worker")
        log = open(tmp_path / "job.log", "w")  # closed below
        job = subprocess.Popen(
            ["bash", str(script)], stdout=log, stderr=log, start_new_session=True
        )
        try:
            client.wait_for_workers(2, timeout=60)
            workers = client.scheduler_info()["workers"].values()
            assert sorted(w["nthreads"] for w in workers) == [1, 1]
            assert all(w["memory_limit"] == 2**30 for w in workers)
            directories = client.run(lambda dask_worker: dask_worker.local_directory)
            assert all(d.startswith(str(scratch)) for d in directories.values()), directories
            futures = client.map(np.square, range(8))
            assert sum(client.gather(futures)) == 140
        finally:
            os.killpg(job.pid, signal.SIGTERM)  # the job's process group, as scancel does
            job.wait(timeout=30)
            log.close()
