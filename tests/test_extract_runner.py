"""Resumable, distributed extraction into a store, with a torch model whose answer is known."""

import functools
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from ase.build import bulk
from ase.collections import g2, s22

from fredask.extract import ExtractionError, TorchHookExtractor
from fredask.extract.runner import extract
from fredask.extract.testing import known_embedding, make_tiny_calculator
from fredask.store import FeatureStore, StoreError
from fredask.store.structures import StructureTable

pytest.importorskip("torch")

CHUNK_ROWS = 128


def _structures():
    return list(g2) + list(s22)


@pytest.fixture
def store(tmp_path):
    table = StructureTable.from_atoms(_structures(), source_file="ase.collections")
    return FeatureStore.create(tmp_path / "s.zarr", table, chunk_rows=CHUNK_ROWS)


def _embed(delay=0.0, name="tiny-embed"):
    return TorchHookExtractor(
        functools.partial(make_tiny_calculator, delay=delay), "embed", name=name
    )


def test_hook_extractor_writes_the_known_features(store):
    report = extract(store, _embed(), client="sync", progress=False)
    assert report.chunks_computed == report.chunks_total == store.n_chunks
    table = store.structure_table()
    values = store.features("tiny-embed")[:]
    np.testing.assert_array_equal(values, known_embedding(table.numbers))
    assert store.feature_names() == ["tiny-embed"]
    attrs = store.features("tiny-embed").attrs
    assert attrs["layer"] == "embed" and attrs["complete"] is True and "command" in attrs


def test_pre_hook_on_a_distributed_cluster(store):
    distributed = pytest.importorskip("distributed")
    extractor = TorchHookExtractor(make_tiny_calculator, "mix", pre_hook=True, name="tiny-mix")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        extract(store, extractor, client=client, progress=False)
    table = store.structure_table()
    expected = known_embedding(table.numbers) + 0.1 * table.positions.astype(np.float32).sum(
        axis=1, keepdims=True
    )
    np.testing.assert_allclose(store.features("tiny-mix")[:], expected, rtol=1e-6, atol=1e-6)


SCRIPT = """
import functools, sys
from fredask.extract import TorchHookExtractor
from fredask.extract.runner import extract
from fredask.extract.testing import make_tiny_calculator
extractor = TorchHookExtractor(
    functools.partial(make_tiny_calculator, delay={delay}), "embed", name="tiny-embed"
)
if __name__ == "__main__":
    extract(sys.argv[1], extractor, client="sync", progress=False)
"""


def _start(tmp_path, store, delay):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(SCRIPT.format(delay=delay)))
    return subprocess.Popen([sys.executable, str(script), str(store.path)])


def _wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not _holds(condition):
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


def _holds(condition) -> bool:
    """``condition()``, False while it cannot read what a writer is rewriting (a progress
    chunk caught mid-write fails its checksum)."""
    try:
        return bool(condition())
    except (OSError, ValueError):
        return False


def test_killed_extraction_resumes_to_identical_arrays(tmp_path, store):
    reference_table = StructureTable.from_atoms(_structures())
    reference = FeatureStore.create(tmp_path / "ref.zarr", reference_table, chunk_rows=CHUNK_ROWS)
    extract(reference, _embed(), client="sync", progress=False)

    process = _start(tmp_path, store, delay=0.02)

    def some_done():
        try:
            return len(FeatureStore.open(store.path).pending_chunks("tiny-embed")) < store.n_chunks
        except Exception:
            return False

    _wait_for(some_done)
    process.kill()
    process.wait()
    pending = FeatureStore.open(store.path).pending_chunks("tiny-embed")
    assert 0 < len(pending) < store.n_chunks, "the kill should land mid-run"
    assert store.feature_names() == []  # incomplete features are not listed

    report = extract(store, _embed(), client="sync", progress=False)
    assert report.chunks_computed == len(pending)
    resumed = store.features("tiny-embed")[:]
    expected = reference.features("tiny-embed")[:]
    assert resumed.dtype == expected.dtype
    assert resumed.tobytes() == expected.tobytes()


def test_concurrent_extraction_into_the_same_features_is_refused(tmp_path, store):
    process = _start(tmp_path, store, delay=0.05)
    try:
        # staging/progress/<name> is created while the writer holds the lock
        _wait_for(lambda: (store.path / "staging" / "progress" / "tiny-embed").exists())
        assert process.poll() is None
        with pytest.raises(StoreError, match="another process is writing features 'tiny-embed'"):
            extract(store.path, _embed(), client="sync", progress=False)
    finally:
        process.kill()
        process.wait()


class _OrganicOnly(TorchHookExtractor):
    elements = frozenset({1, 6, 7, 8})


def _organic(name="organic"):
    return _OrganicOnly(make_tiny_calculator, "embed", name=name)


@pytest.fixture
def mixed_store(tmp_path):
    structures = [g2["H2O"], bulk("Si", "diamond", a=5.43), g2["CH4"]]
    table = StructureTable.from_atoms(structures)
    return FeatureStore.create(tmp_path / "mixed.zarr", table, chunk_rows=4)


def test_uncovered_element_is_an_error_naming_structure_and_element(mixed_store):
    with pytest.raises(
        ExtractionError, match=r"does not cover element Si \(Z=14\) in structure #1"
    ):
        extract(mixed_store, _organic(), client="sync", progress=False)
    assert mixed_store.feature_names() == []


def test_uncovered_element_can_be_skipped_with_a_record(mixed_store):
    report = extract(mixed_store, _organic(), client="sync", skip_errors=True, progress=False)
    assert [s["structure"] for s in report.skipped] == [1]
    assert "Si" in report.skipped[0]["reason"]
    values = mixed_store.features("organic")[:]
    assert np.isnan(values[3:5]).all()
    np.testing.assert_array_equal(values[:3], known_embedding([8, 1, 1]))
    np.testing.assert_array_equal(values[5:], known_embedding([6, 1, 1, 1, 1]))
    assert mixed_store.features("organic").attrs["skipped"] == report.skipped


def test_model_returning_nan_is_an_error(mixed_store):
    extractor = TorchHookExtractor(
        make_tiny_calculator, "embed", name="nan", select=lambda t: t * float("nan")
    )
    with pytest.raises(ExtractionError, match="NaN or infinite features for structure #0"):
        extract(mixed_store, extractor, client="sync", progress=False)
    assert mixed_store.feature_names() == []


def test_killed_worker_is_retried_and_the_store_is_exact(tmp_path, store):
    distributed = pytest.importorskip("distributed")
    import os
    import signal
    import threading

    reference_table = StructureTable.from_atoms(_structures())
    reference = FeatureStore.create(tmp_path / "ref.zarr", reference_table, chunk_rows=CHUNK_ROWS)
    extract(reference, _embed(), client="sync", progress=False)

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        victim = pids[sorted(pids)[0]]

        def kill_after_first_chunk():
            _wait_for(
                lambda: (
                    len(store.pending_chunks("tiny-embed")) < store.n_chunks
                    if store.has_features("tiny-embed")
                    else False
                )
            )
            os.kill(victim, signal.SIGKILL)

        killer = threading.Thread(target=kill_after_first_chunk)
        killer.start()
        report = extract(store, _embed(delay=0.02), client=client, progress=False)
        killer.join()

        # the scheduler may still list the dead worker for a while: skip it
        assert victim not in client.run(os.getpid, on_error="ignore").values()
    assert report.chunks_computed == store.n_chunks
    assert (
        store.features("tiny-embed")[:].tobytes() == reference.features("tiny-embed")[:].tobytes()
    )


# --------------------------------------------------------------------------- devices


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _no_cuda(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_the_model_cache_keys_on_the_device(monkeypatch):
    import torch

    from fredask.extract import get_extractor, runner

    monkeypatch.setattr(runner, "_LOADED", {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # resolved, never used
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    extractors = {d: get_extractor("chgnet:0.3.0", device=d) for d in ("cpu", "cuda:0", "cuda:1")}
    # the same pickle key on two devices: two cached models
    cached = {d: runner.worker_extractor("key", e)[0] for d, e in extractors.items()}
    assert [cached[d] is extractors[d] for d in cached] == [True, True, True]
    assert sorted(runner._LOADED) == [("key", "cpu"), ("key", "cuda:0"), ("key", "cuda:1")]
    # a device that resolves to a cached one shares it; the run's own key tells options apart
    auto = get_extractor("chgnet:0.3.0", device="auto")
    assert runner.worker_extractor("key", auto)[0] is extractors["cuda:0"]
    assert runner.worker_extractor("key", extractors["cpu"])[0] is extractors["cpu"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runner.worker_extractor("key", auto)[0] is extractors["cpu"]  # auto is the CPU here


def test_cuda_without_a_cuda_device_is_refused_before_any_write(monkeypatch, mixed_store):
    from fredask.extract import ModelSpecError, get_extractor

    _no_cuda(monkeypatch)
    before = _tree(mixed_store.path)
    extractor = get_extractor("chgnet:0.3.0", device="cuda")
    with pytest.raises(ModelSpecError, match=r"^chgnet-0\.3\.0: device 'cuda' needs a CUDA"):
        extract(mixed_store, extractor, client="sync", progress=False)
    assert _tree(mixed_store.path) == before and not extractor._loaded


def test_cpu_and_auto_extraction_write_the_same_features(monkeypatch, tmp_path):
    pytest.importorskip("chgnet")
    from fredask.extract import get_extractor

    _no_cuda(monkeypatch)  # auto is the CPU here
    structures = [g2["H2O"], bulk("Si", "diamond", a=5.43), g2["CH4"]]
    stores = {}
    for device in ("cpu", "auto"):
        table = StructureTable.from_atoms(structures)
        store = FeatureStore.create(tmp_path / f"{device}.zarr", table, chunk_rows=4)
        options = {} if device == "cpu" else {"device": device}
        extract(store, get_extractor("chgnet:0.3.0", **options), client="sync", progress=False)
        stores[device] = store.features("chgnet-0.3.0")
    assert stores["auto"][:].tobytes() == stores["cpu"][:].tobytes()
    attrs = {device: dict(array.attrs) for device, array in stores.items()}
    assert attrs["cpu"]["device"] == "cpu" and attrs["auto"]["device"] == "auto"
    assert attrs["cpu"]["torch_device"] == attrs["auto"]["torch_device"] == "cpu"
    assert attrs["cpu"]["source_id"] == attrs["auto"]["source_id"]  # the device is no source
    expected = get_extractor("chgnet:0.3.0").atom_features(structures)
    np.testing.assert_allclose(stores["auto"][:], np.concatenate(expected), rtol=0, atol=1e-5)


def _refused_cli(argv, capsys) -> str:
    """``fredask ARGV`` must fail with one line, exit status 1, no traceback."""
    from fredask.cli import main

    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert isinstance(exit_.value.code, str), exit_.value.code  # printed, exit status 1
    assert "Traceback" not in err and "\n" not in exit_.value.code
    return exit_.value.code


def test_cli_device_cuda_without_a_cuda_device_is_one_line(monkeypatch, tmp_path, capsys):
    import ase.io

    pytest.importorskip("chgnet")
    _no_cuda(monkeypatch)
    ase.io.write(tmp_path / "mol.xyz", [g2["H2O"], g2["CH4"]], format="extxyz")
    argv = ["extract", tmp_path / "mol.xyz", "--store", tmp_path / "s.zarr"]
    argv += ["--model", "chgnet:0.3.0", "--cluster", "sync"]
    before = _tree(tmp_path)
    line = _refused_cli([*argv, "--device", "cuda"], capsys)
    assert line.startswith(
        "fredask extract: chgnet-0.3.0: device 'cuda' needs a CUDA device, but torch sees none"
    )
    assert line.endswith("; use cpu or auto")
    line = _refused_cli([*argv, "--device", "tpu"], capsys)
    assert line == (
        "fredask extract: --device tpu: unknown device 'tpu'; use cpu, cuda (gpu), cuda:N or auto"
    )
    # checked before the structure file is read: a missing one is not what is reported
    missing = ["extract", tmp_path / "absent.xyz", *argv[2:], "--device", "tpu"]
    assert _refused_cli(missing, capsys).startswith("fredask extract: --device tpu:")
    line = _refused_cli([*argv, "--option", "device=cuda:3"], capsys)
    assert line.startswith("fredask extract: chgnet-0.3.0: device 'cuda:3' needs a CUDA device")
    assert _tree(tmp_path) == before and not (tmp_path / "s.zarr").exists()


def test_cli_device_is_checked_on_the_cluster_workers(monkeypatch):
    from fredask.extract import ModelSpecError, get_extractor
    from fredask.extract.device import check_devices

    class Client:  # a cluster whose first worker has no GPU
        def run(self, function, *args):
            return {"tcp://gpu-node:1": None, "tcp://cpu-node:2": function(*args)}

    _no_cuda(monkeypatch)
    check_devices([get_extractor("chgnet:0.3.0", device="auto")], Client())  # auto: fine
    with pytest.raises(
        ModelSpecError,
        match=r"^chgnet-0\.3\.0: device 'cuda' needs .* \(on worker tcp://cpu-node:2\)$",
    ):
        check_devices([get_extractor("chgnet:0.3.0", device="cuda")], Client())
