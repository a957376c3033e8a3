"""Cluster profiles: job scripts dask-jobqueue renders, lookup, errors, the --cluster option.

Rendering a job script builds dask-jobqueue's own Job object, exactly what a
SLURMCluster / PBSCluster submits; it needs no batch system and starts nothing.
"""

import sys
import textwrap

import dask
import distributed
import pytest

from fredask.cli import main as cli_main
from fredask.cluster import (
    ClusterProfile,
    ProfileError,
    connect,
    get_client,
    is_address,
    load_profile,
    resolve_client,
)
from fredask.cluster.profiles import PLACEHOLDER_SCHEDULER, SHIPPED_DIR, gpu_count


def _lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines()]


def _worker_command(script: str) -> str:
    (command,) = [line for line in _lines(script) if "distributed.cli.dask_worker" in line]
    return command


def test_shipped_profiles_are_all_there():
    names = sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))
    assert names == ["pbs-cpu", "pbs-gpu", "slurm-cpu", "slurm-gpu"]
    for name in names:
        profile = load_profile(name)
        assert profile.source == str(SHIPPED_DIR / f"{name}.yaml")
        assert profile.adapt["maximum_jobs"] >= 1


def test_slurm_cpu_job_script_requests_its_resources():
    script = load_profile("slurm-cpu").job_script()
    lines = _lines(script)
    for directive in (
        "#SBATCH -p cpu",
        "#SBATCH --cpus-per-task=32",
        "#SBATCH --mem=120G",
        "#SBATCH -t 02:00:00",
        "#SBATCH --exclusive",
    ):
        assert directive in lines, (directive, script)
    assert not any(line.startswith("#SBATCH -A") for line in lines)  # account: null
    command = _worker_command(script)
    assert command.startswith(f"{sys.executable} -m distributed.cli.dask_worker")
    assert PLACEHOLDER_SCHEDULER in command
    for option in (
        "--nworkers 8",
        "--nthreads 4",
        "--memory-limit 15.00GiB",
        "--local-directory $TMPDIR",  # left for the compute node's shell to expand
        "--interface ib0",
    ):
        assert option in command, (option, command)


def test_slurm_gpu_job_script_asks_one_gpu_per_single_worker_job():
    script = load_profile("slurm-gpu").job_script("tcp://10.0.0.1:8786")
    lines = _lines(script)
    for directive in ("#SBATCH -p gpu", "#SBATCH --gres=gpu:1", "#SBATCH --mem=64G"):
        assert directive in lines, (directive, script)
    command = _worker_command(script)
    assert "tcp://10.0.0.1:8786" in command
    assert "--nworkers" not in command and "--nthreads 8" in command
    assert "--resources GPU=1" in command


def test_pbs_job_scripts_request_their_resources():
    cpu = _lines(load_profile("pbs-cpu").job_script())
    for directive in (
        "#PBS -q workq",
        "#PBS -l select=1:ncpus=32:mem=120GB",
        "#PBS -l walltime=02:00:00",
    ):
        assert directive in cpu, (directive, cpu)
    assert "cd $PBS_O_WORKDIR" in cpu
    assert "--local-directory $TMPDIR" in _worker_command("\n".join(cpu))
    gpu = _lines(load_profile("pbs-gpu").job_script())
    assert "#PBS -l select=1:ncpus=8:ngpus=1:mem=64GB" in gpu
    assert "#PBS -q gpu" in gpu


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def test_profile_file_with_every_resource(tmp_path):
    path = _write(
        tmp_path / "site.yaml",
        """\
        jobqueue:
          big:
            kind: slurm
            scale: {jobs: 3}
            name: fredask-w
            queue: long
            account: chem-123
            walltime: "12:00:00"
            cores: 16
            processes: 2
            memory: 64GiB
            job-mem: 70GB
            interface: eth7
            local-directory: /scratch/$USER
            job-extra-directives: [--constraint=skylake, --qos=high]
            job-script-prologue: [module load gcc]
          small-pbs:
            kind: pbs
            cores: 2
            memory: 4GiB
            account: chem-123
        """,
    )
    profile = load_profile(f"{path}:big")
    assert profile.scale == {"jobs": 3} and profile.adapt is None
    lines = _lines(profile.job_script())
    for directive in (
        "#SBATCH -J fredask-w",
        "#SBATCH -p long",
        "#SBATCH -A chem-123",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --mem=70GB",  # job-mem verbatim
        "#SBATCH -t 12:00:00",
        "#SBATCH --constraint=skylake",
        "#SBATCH --qos=high",
        "module load gcc",
    ):
        assert directive in lines, (directive, lines)
    command = _worker_command("\n".join(lines))
    for option in ("--nworkers 2", "--nthreads 8", "--memory-limit 32.00GiB"):
        assert option in command, (option, command)
    assert "--local-directory /scratch/$USER" in command and "--interface eth7" in command
    pbs = _lines(load_profile(f"{path}:small-pbs").job_script())
    assert "#PBS -A chem-123" in pbs and "#PBS -l select=1:ncpus=2:mem=4096MB" in pbs
    with pytest.raises(ProfileError, match=r"holds several profiles \['big', 'small-pbs'\]"):
        load_profile(path)
    with pytest.raises(ProfileError, match="has no profile 'huge'"):
        load_profile(f"{path}:huge")


def test_user_dask_config_profiles_and_precedence():
    section = {"kind": "pbs", "cores": 4, "memory": "8GiB", "queue": "short"}
    override = {"kind": "slurm", "cores": 8, "memory": "16GiB", "queue": "mine"}
    with dask.config.set({"jobqueue.my-pbs": section, "jobqueue.slurm-cpu": override}):
        mine = load_profile("my-pbs")
        assert mine.source == "Dask config jobqueue.my-pbs"
        assert "#PBS -q short" in _lines(mine.job_script())
        # the user's copy of a shipped profile wins over the shipped file
        assert load_profile("slurm-cpu").source == "Dask config jobqueue.slurm-cpu"
        assert "#SBATCH -p mine" in _lines(load_profile("slurm-cpu").job_script())
    assert "#SBATCH -p cpu" in _lines(load_profile("slurm-cpu").job_script())


def test_a_broken_config_profile_fails_only_when_named():
    with dask.config.set({"jobqueue.broken": {"kind": "lsf"}}):
        assert load_profile("slurm-cpu").kind == "slurm"  # the others still load
        with pytest.raises(ProfileError, match=r"profile 'broken' \(Dask config.*kind 'lsf'"):
            load_profile("broken")


def test_plain_slurm_is_dask_jobqueues_own_configuration():
    with pytest.raises(ProfileError, match=r"(?s)cores and memory.*jobqueue\.slurm section"):
        load_profile("slurm").job_script()
    site = {"cores": 6, "memory": "12GiB", "queue": "site-default", "walltime": "00:10:00"}
    with dask.config.set({f"jobqueue.slurm.{key}": value for key, value in site.items()}):
        lines = _lines(load_profile("slurm").job_script())
    assert {"#SBATCH -p site-default", "#SBATCH --cpus-per-task=6", "#SBATCH -t 00:10:00"} <= set(
        lines
    )
    # a profile's missing keys fall back to the same section
    with dask.config.set({"jobqueue.slurm.walltime": "00:07:00"}):
        assert "#SBATCH -t 00:07:00" in _lines(
            ClusterProfile("x", "slurm", {"cores": 1, "memory": "1GiB"}).job_script()
        )


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ProfileError) as error:
        load_profile("slurm-typo")
    message = str(error.value)
    assert "unknown cluster profile 'slurm-typo'" in message
    for name in ("local", "local-cuda", "slurm", "pbs", "slurm-cpu", "pbs-gpu"):
        assert name in message
    # resolve_client's old error type still catches it
    with pytest.raises(ValueError, match="known profiles"):
        resolve_client("nope")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobqueue:\n  p: {cores: 4}\n", "no 'kind'"),
        ("jobqueue:\n  p: {kind: lsf}\n", "kind 'lsf' is not one of"),
        ("jobqueue:\n  p: {kind: slurm, scale: {jobs: 1}, adapt: {maximum-jobs: 2}}\n", "give"),
        ("jobqueue:\n  p: {kind: slurm, scale: 2}\n", "scale takes a mapping"),
        ("cores: 4\n", "no profile; expected 'jobqueue:"),
        ("jobqueue: [\n", "cannot read a profile"),
    ],
)
def test_malformed_profiles_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_misspelt_option_names_the_profile(tmp_path):
    text = "jobqueue:\n  typo: {kind: slurm, cores: 4, memory: 4GiB, cpus: 4}\n"
    path = _write(tmp_path / "typo.yaml", text)
    with pytest.raises(ProfileError, match=r"profile 'typo' \(.*typo.yaml\).*cpus"):
        load_profile(path).job_script()
    with pytest.raises(ProfileError, match="is a local cluster: no job script"):
        load_profile("local").job_script()


def test_missing_dask_jobqueue_is_a_clear_error(monkeypatch):
    for module in ("dask_jobqueue", "dask_jobqueue.slurm", "dask_jobqueue.pbs"):
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    for name in ("slurm-cpu", "pbs-cpu"):
        with pytest.raises(ProfileError, match=r"needs dask-jobqueue: pip install"):
            load_profile(name).job_script()
        with pytest.raises(ProfileError, match="needs dask-jobqueue"):
            get_client(name)


def test_local_cuda_needs_dask_cuda_and_a_gpu():
    try:
        import dask_cuda  # noqa: F401
    except ImportError:
        with pytest.raises(ProfileError, match=r"needs dask-cuda: pip install 'fredask\[gpu\]'"):
            get_client("local-cuda")
        assert gpu_count() == 0
        return
    if gpu_count() == 0:
        with pytest.raises(ProfileError, match="no GPU is visible"):
            get_client("local-cuda")
        return
    with connect("local-cuda") as client:  # a GPU machine: the real thing
        assert len(client.scheduler_info()["workers"]) == gpu_count()
        assert client.submit(sum, [1, 2]).result() == 3


def test_local_profile_starts_and_shuts_down_its_cluster(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("FREDASK_TEST_SCRATCH", str(scratch))
    path = _write(
        tmp_path / "one.yaml",
        """\
        jobqueue:
          one-worker:
            kind: local
            n-workers: 1
            threads-per-worker: 2
            memory-limit: 1GiB
            local-directory: $FREDASK_TEST_SCRATCH
        """,
    )
    with connect(path) as client:
        assert distributed.default_client() is client
        workers = client.scheduler_info()["workers"].values()
        assert [w["nthreads"] for w in workers] == [2]
        assert [w["memory_limit"] for w in workers] == [2**30]
        directories = client.run(lambda dask_worker: dask_worker.local_directory)
        assert all(d.startswith(str(scratch)) for d in directories.values()), directories
        cluster = client.cluster
    assert client.status == "closed" and cluster.status.name == "closed"


def test_adapt_section_makes_the_cluster_adaptive(tmp_path):
    text = (
        "jobqueue:\n  grows:\n    kind: local\n    n-workers: 0\n"
        "    adapt: {minimum: 1, maximum: 2, wait-count: 5}\n"
    )
    with connect(_write(tmp_path / "a.yaml", text)) as client:
        client.wait_for_workers(1, timeout=60)  # started with none: Adaptive's minimum
        assert client.submit(sum, [1, 2]).result() == 3


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("tcp://10.1.2.3:8786", True),
        ("ucx://node7:8786", True),
        ("127.0.0.1:8786", True),
        ("login01.cluster:8786", True),
        ("[::1]:8786", True),
        ("slurm-cpu", False),
        ("site.yaml", False),
        ("local", False),
    ],
)
def test_addresses_are_told_from_profiles(spec, expected):
    assert is_address(spec) is expected


def test_resolve_client_keeps_its_behaviour():
    assert resolve_client("threads") == "threads" and resolve_client("sync") == "sync"
    assert resolve_client(None, embedded=False) == "threads"
    with distributed.Client(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as client:
        assert resolve_client(client) is client
        assert resolve_client(None) is client  # the active client


def test_cli_cluster_command(capsys, tmp_path):
    cli_main(["cluster"])
    listing = capsys.readouterr().out
    for name in ("local", "local-cuda", "slurm-cpu", "slurm-gpu", "pbs-cpu", "pbs-gpu"):
        assert name in listing
    cli_main(["cluster", "pbs-gpu"])
    shown = capsys.readouterr().out
    assert "profile pbs-gpu (pbs)" in shown and "#PBS -l select=1:ncpus=8:ngpus=1" in shown
    # an adaptive profile with no work would never start a worker: --wait asks for them
    text = "jobqueue:\n  l: {kind: local, n-workers: 0, adapt: {minimum: 0, maximum: 2}}\n"
    path = _write(tmp_path / "l.yaml", text)
    cli_main(["cluster", str(path), "--wait", "1", "--timeout", "60"])
    assert "1 worker(s) up" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="unknown cluster profile 'nope'"):
        cli_main(["cluster", "nope"])


def test_cli_cluster_option_errors_are_one_line(tmp_path):
    from fredask.store.datasets import write_synthetic_store

    store = tmp_path / "s.zarr"
    write_synthetic_store(store, n_rows=64, chunk_rows=32)
    with pytest.raises(SystemExit, match="--cluster nope: unknown cluster profile 'nope'"):
        cli_main(["compare", str(store), "--cluster", "nope"])
    with pytest.raises(SystemExit, match=r"scheduler file .*missing\.json does not exist"):
        cli_main(["compare", str(store), "--cluster", str(tmp_path / "missing.json")])
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(SystemExit, match=r"--cluster tcp://127\.0\.0\.1:9: "):
            cli_main(["compare", str(store), "--cluster", "tcp://127.0.0.1:9"])


# -- progress output ---------------------------------------------------------------


def _slow_sum(n_tasks: int, seconds: float):
    import time

    import dask.array as da

    def slow(block):
        time.sleep(seconds)
        return block

    return da.ones(n_tasks, chunks=1).map_blocks(slow).sum()


def test_log_lines_are_rate_limited_and_end_with_done():
    import io

    from fredask.cluster.progress import LogLines

    stream = io.StringIO()
    lines = LogLines(stream, interval=5.0)
    for elapsed in (0.1, 1.0, 4.9):
        lines(1, 10, elapsed)
    assert stream.getvalue() == ""  # shorter than the interval: nothing
    for elapsed in (5.0, 6.0, 9.9, 10.0, 12.0):
        lines(int(elapsed), 20, elapsed)
    lines(20, 20, 12.5, final=True)
    assert stream.getvalue().splitlines() == [
        "progress: 25% of 20 tasks, 5.00 s",
        "progress: 50% of 20 tasks, 10.00 s",
        "progress: 100% of 20 tasks, 12.50 s (done)",
    ]
    quiet = LogLines(io.StringIO(), interval=5.0)
    quiet(3, 3, 0.2, final=True)
    assert quiet.stream.getvalue() == ""  # a short pass writes nothing at all


@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_progress_in_a_log_is_lines_not_redraws(scheduler, capsys, monkeypatch):
    from fredask.cluster.clients import compute

    monkeypatch.setenv("FREDASK_PROGRESS_INTERVAL", "0.2")
    work = _slow_sum(12, 0.1)
    if scheduler == "threads":
        assert compute(work, "threads", progress=True) == 12
    else:
        with distributed.Client(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
        ) as client:
            assert compute(work, client, progress=True) == 12
    out, err = capsys.readouterr()  # captured stderr is not a terminal
    assert out == "" and "\r" not in err
    lines = err.splitlines()
    assert 2 <= len(lines) <= 12, err  # ~0.6 s of work, a line per 0.2 s, not 10 per second
    assert all(line.startswith("progress: ") for line in lines)
    assert lines[-1].endswith("(done)")


def test_progress_never_imports_tqdm():
    code = (
        "import sys, dask.array as da; from fredask.cluster.clients import compute; "
        "x = da.ones(8, chunks=2).sum(); compute(x, 'threads'); compute(x, 'sync', progress=True); "
        "print('tqdm' in sys.modules)"
    )
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False" and "TqdmWarning" not in done.stderr


def test_work_meter_estimates_the_time_left_from_the_work_done(monkeypatch):
    import io

    from fredask.cluster.progress import WorkMeter

    monkeypatch.setenv("FREDASK_PROGRESS_INTERVAL", "5")
    now = [0.0]
    stream = io.StringIO()
    meter = WorkMeter(
        {"cheap": 1.0, "dear": 3.0, "last": 4.0}, "local fits", stream, lambda: now[0]
    )
    now[0] = 2.0
    meter.finished("cheap")  # before the first interval: nothing written
    now[0] = 8.0
    meter.finished("dear")  # half the work in 8 s: about 8 s left, not 4 s as tasks would say
    meter.finished("unknown")  # keys without a cost count for nothing (and write nothing)
    now[0] = 20.0
    meter.finished("last")
    meter.close()
    assert stream.getvalue().splitlines() == [
        "local fits: 50% of the work, 8.00 s, about 8.00 s left",
        "local fits: 100% of the work, 20.00 s",
        "local fits: 100% of the work, 20.00 s (done)",
    ]


@pytest.mark.parametrize("scheduler", ["threads", "distributed"])
def test_weighted_compute_returns_results_in_order_with_a_meter(scheduler, capsys, monkeypatch):
    import dask

    from fredask.cluster.clients import compute_weighted

    monkeypatch.setenv("FREDASK_PROGRESS_INTERVAL", "0.1")

    def slow(i):
        import time

        time.sleep(0.05)
        return i * i

    tasks = [dask.delayed(slow, pure=True)(i) for i in range(10)]
    costs = [float(i + 1) for i in range(10)]
    if scheduler == "threads":
        assert compute_weighted(tasks, costs, "threads", "fits") == [i * i for i in range(10)]
    else:  # not the default client, as the embedded cluster's is not
        with distributed.Client(
            n_workers=1,
            threads_per_worker=2,
            processes=False,
            dashboard_address=":0",
            set_as_default=False,
        ) as client:
            assert compute_weighted(tasks, costs, client, "fits") == [i * i for i in range(10)]
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("fits: ") for line in lines), lines
    assert lines[-1].startswith("fits: 100% of the work") and lines[-1].endswith("(done)")
