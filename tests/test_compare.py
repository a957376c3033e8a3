"""All-pairs matrices: equal to the pairwise functions, saved in the paper's schema."""

import json

import numpy as np
import pandas as pd
import pytest
import zarr

from fredask import metrics, stratified_split
from fredask.backend import gpu_available
from fredask.cli import main as cli_main
from fredask.compare import reconstruction_matrix
from fredask.store.datasets import write_synthetic_store


@pytest.fixture(scope="module")
def models():
    """Four models of different widths and dtypes over the same 600 rows."""
    rng = np.random.default_rng(7)
    latent = rng.normal(size=(600, 6))
    widths = {"a": 5, "b": 9, "c": 3, "d": 12}
    out = {}
    for i, (name, width) in enumerate(widths.items()):
        proj = rng.normal(size=(6, width))
        values = np.tanh((i + 1) * 0.4 * latent @ proj) + 0.05 * rng.normal(size=(600, width))
        out[name] = values.astype(np.float32 if name == "c" else np.float64) + 3.0
    return out


@pytest.mark.parametrize(
    ("metric", "pairwise"),
    [
        ("gfre", metrics.global_reconstruction_error),
        ("gfrd", metrics.global_reconstruction_distortion),
    ],
)
def test_matrix_equals_pairwise_function(models, metric, pairwise):
    result = reconstruction_matrix(models, metric, client="threads", progress=False)
    assert list(result.matrix.index) == list(models)
    assert list(result.matrix.columns) == list(models)
    for source in models:
        for target in models:
            expected = pairwise(models[source], models[target])
            assert result.matrix.loc[source, target] == pytest.approx(
                expected, rel=1e-12, abs=1e-14
            )


def test_matrix_with_given_split_and_gram_method(models):
    groups = np.repeat(["bulk", "surface", "molecule"], [300, 200, 100])
    split = stratified_split(groups, n_test=60, seed=0)
    exact = reconstruction_matrix(models, split=split, client="threads", progress=False)
    fast = reconstruction_matrix(
        models, split=split, method="gram", client="threads", progress=False
    )
    np.testing.assert_allclose(fast.matrix, exact.matrix, rtol=1e-6, atol=1e-9)
    expected = metrics.global_reconstruction_error(
        models["a"], models["d"], test_idx=split.test_idx, train_idx=split.train_idx
    )
    assert exact.matrix.loc["a", "d"] == pytest.approx(expected, rel=1e-12)


def test_saved_files_follow_the_paper_schema(models, tmp_path):
    result = reconstruction_matrix(models, "gfre", client="threads", progress=False)
    paths = result.save(tmp_path)
    data = json.loads(paths["json"].read_text())["paper"]
    assert set(data) == set(models)
    for target, by_source in data.items():
        for source, entry in by_source.items():
            assert entry["A"] == source and entry["B"] == target
            assert entry["A_to_B"] == result.matrix.loc[source, target]
            assert entry["B_to_A"] == result.matrix.loc[target, source]
    table = pd.read_csv(paths["csv"], index_col="source")
    np.testing.assert_allclose(table.to_numpy(), result.matrix.to_numpy(), rtol=1e-12)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = np.load(paths["split"])
    np.testing.assert_array_equal(saved["test_idx"], result.split.test_idx)
    np.testing.assert_array_equal(saved["train_idx"], result.split.train_idx)


def test_heatmap_is_annotated_source_by_target(models):
    result = reconstruction_matrix(models, "gfre", client="threads", progress=False)
    figure = result.plot()
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(models)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(models)
    labels = {t.get_text() for t in ax.texts}
    assert f"{result.matrix.loc['a', 'b']:.3f}" in labels
    assert ax.images[0].get_clim() == (0.0, 1.0)


def test_passed_distributed_client_is_used(models, distributed_client):
    import distributed

    client = distributed_client
    with distributed.get_task_stream(client) as stream:
        result = reconstruction_matrix(models, "gfre", client=client, progress=False)
    workers = {task["worker"] for task in stream.data}
    assert workers and workers <= set(client.scheduler_info()["workers"])
    local = reconstruction_matrix(models, "gfre", client="threads", progress=False)
    np.testing.assert_allclose(result.matrix, local.matrix, rtol=1e-13)


def test_cli_compare_on_a_zarr_store(tmp_path, capsys):
    write_synthetic_store(tmp_path / "s.zarr", n_rows=5000, chunk_rows=1024)
    group = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert sorted(group["features"].array_keys()) == [
        "noisy-32",
        "partial-48",
        "sharp-64",
        "smooth-64",
    ]
    cli_main(
        [
            "compare",
            str(tmp_path / "s.zarr"),
            "--metric",
            "gfre",
            "gfrd",
            "--output",
            str(tmp_path / "out"),
            "--scheduler",
            "threads",
        ]
    )
    for name in ("gfre.json", "gfre.csv", "gfre.png", "gfrd.json", "gfrd_split.npz"):
        assert (tmp_path / "out" / name).exists()
    expected = metrics.global_reconstruction_error(
        group["features"]["smooth-64"], group["features"]["sharp-64"]
    )
    table = pd.read_csv(tmp_path / "out" / "gfre.csv", index_col="source")
    assert table.loc["smooth-64", "sharp-64"] == pytest.approx(expected, rel=1e-12)


def test_cli_refuses_a_group_without_features(tmp_path):
    zarr.open_group(tmp_path / "empty.zarr", mode="w")
    with pytest.raises(SystemExit, match="no 'features' group"):
        cli_main(["compare", str(tmp_path / "empty.zarr")])


def test_pointwise_and_local_passes_on_a_distributed_client(models, distributed_client):
    a, b = models["a"], models["d"]
    client = distributed_client
    pointwise = metrics.pointwise_global_reconstruction_error(a, b, client=client)
    local = reconstruction_matrix(
        {"a": a, "d": b}, "lfre", client=client, progress=False
    ).matrix.loc["a", "d"]
    np.testing.assert_allclose(
        pointwise, metrics.pointwise_global_reconstruction_error(a, b), rtol=1e-12
    )
    assert local == pytest.approx(metrics.local_reconstruction_error(a, b, 5), rel=1e-12)


@pytest.mark.skipif(gpu_available(), reason="checks the refusal on a machine without a GPU")
def test_cli_device_gpu_without_one_is_refused_before_any_work(tmp_path):
    write_synthetic_store(tmp_path / "s.zarr", n_rows=600, chunk_rows=256)
    out = tmp_path / "out"
    args = ["compare", str(tmp_path / "s.zarr"), "--device", "gpu", "--output", str(out)]
    with pytest.raises(SystemExit, match=r"--device gpu: .*(CuPy|cupy|CUDA)") as raised:
        cli_main([*args, "--scheduler", "threads"])
    assert "\n" not in str(raised.value)
    assert not (out / "gfre.json").exists()


def test_cli_device_auto_without_a_gpu_computes_on_the_cpu(tmp_path):
    write_synthetic_store(tmp_path / "s.zarr", n_rows=600, chunk_rows=256)
    for device in ("cpu", "auto"):
        out = tmp_path / device
        cli_main(["compare", str(tmp_path / "s.zarr"), "--device", device, "--output", str(out),
                  "--scheduler", "threads"])  # fmt: skip
    cpu, auto = (
        pd.read_csv(tmp_path / d / "gfre.csv", index_col="source") for d in ("cpu", "auto")
    )
    if not gpu_available():
        pd.testing.assert_frame_equal(cpu, auto)
    else:  # pragma: no cover - needs a GPU
        np.testing.assert_allclose(auto.to_numpy(), cpu.to_numpy(), rtol=1e-10)
