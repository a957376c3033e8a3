"""Every model against one reference: the curve equals the all-pairs matrix's entries."""

import json

import dask.array as da
import numpy as np
import pandas as pd
import pytest

from fredask import metrics, stratified_split
from fredask.cli import main as cli_main
from fredask.compare import reconstruction_matrix, reference_curve
from fredask.store.datasets import write_synthetic_store


@pytest.fixture(scope="module")
def checkpoints():
    """A reference and five 'checkpoints' that approach it, of different widths and dtypes."""
    rng = np.random.default_rng(11)
    latent = rng.normal(size=(500, 6))
    reference = np.tanh(latent @ rng.normal(size=(6, 8)))
    out = {}
    for step, width in zip(range(5), (4, 7, 7, 10, 8), strict=True):
        mix = (step + 1) / 5
        noise = rng.normal(size=(500, width))
        values = mix * np.tanh(latent @ rng.normal(size=(6, width))) + (1 - mix) * noise
        out[f"step{step}"] = values.astype(np.float32 if step == 2 else np.float64)
    out["final"] = reference
    return out


@pytest.mark.parametrize("metric", ["gfre", "gfrd", "lfre"])
def test_curve_equals_the_matrix_entries(checkpoints, metric):
    groups = np.repeat(["a", "b"], [300, 200])
    split = stratified_split(groups, n_test=80, seed=1)
    options = {"split": split, "client": "threads", "progress": False}
    if metric == "lfre":
        options["n_local_points"] = 15
    matrix = reconstruction_matrix(checkpoints, metric, **options).matrix
    curve = reference_curve(checkpoints, "final", metric, **options)
    assert list(curve.curve.index) == [f"step{i}" for i in range(5)]
    for model in curve.curve.index:
        assert curve.curve.loc[model, "from_reference"] == pytest.approx(
            matrix.loc["final", model], rel=1e-12, abs=1e-14
        )
        assert curve.curve.loc[model, "to_reference"] == pytest.approx(
            matrix.loc[model, "final"], rel=1e-12, abs=1e-14
        )
    assert len(curve.errors) == 10  # 2 (n - 1) pairs, not n^2


def test_curve_equals_scikit_matter_style_pairwise_function(checkpoints):
    # Dask inputs, the default (scikit-matter's) split
    dask_inputs = {k: da.from_array(v, chunks=(128, -1)) for k, v in checkpoints.items()}
    curve = reference_curve(dask_inputs, "step0", client="threads", progress=False)
    for model in curve.curve.index:
        expected = metrics.global_reconstruction_error(checkpoints["step0"], checkpoints[model])
        assert curve.curve.loc[model, "from_reference"] == pytest.approx(expected, rel=1e-10)


def test_bad_reference_is_one_line(checkpoints):
    with pytest.raises(ValueError, match=r"reference 'nope' is not one of the models: step0"):
        reference_curve(checkpoints, "nope", progress=False)
    with pytest.raises(ValueError, match=r"reference 'final': no other model"):
        reference_curve({"final": checkpoints["final"]}, "final", progress=False)


def test_save_writes_the_curve(checkpoints, tmp_path):
    curve = reference_curve(checkpoints, "final", client="threads", progress=False)
    paths = curve.save(tmp_path)
    assert sorted(paths) == ["csv", "errors", "json", "png", "split"]
    assert paths["json"].name == "gfre_vs_final.json"
    saved = json.loads(paths["json"].read_text())
    assert saved["reference"] == "final" and saved["metric"] == "gfre"
    assert [row["model"] for row in saved["curve"]] == list(curve.curve.index)
    assert saved["curve"][0]["to_reference"] == curve.curve.iloc[0]["to_reference"]
    assert paths["png"].stat().st_size > 10_000


def test_cli_reference_and_model_selection(tmp_path, capsys):
    store = tmp_path / "s.zarr"
    write_synthetic_store(store, n_rows=600, chunk_rows=256)
    argv = ["compare", str(store), "--cluster", "threads"]
    cli_main([*argv, "--output", str(tmp_path / "all")])
    full = pd.read_csv(tmp_path / "all" / "gfre.csv", index_col="source")
    out = tmp_path / "ref"
    cli_main([*argv, "--output", str(out), "--reference", "noisy-32"])
    assert "GFRE against noisy-32" in capsys.readouterr().out
    saved = json.loads((out / "gfre_vs_noisy-32.json").read_text())
    assert [row["model"] for row in saved["curve"]] == ["partial-48", "sharp-64", "smooth-64"]
    for row in saved["curve"]:
        assert row["from_reference"] == pytest.approx(full.loc["noisy-32", row["model"]], 1e-12)
        assert row["to_reference"] == pytest.approx(full.loc[row["model"], "noisy-32"], 1e-12)
    # a layer sweep: some models only, in the order given
    out = tmp_path / "some"
    cli_main([*argv, "--output", str(out), "--model", "partial-48", "--model", "smooth-64"])
    some = pd.read_csv(out / "gfre.csv", index_col="source")
    assert list(some.index) == list(some.columns) == ["partial-48", "smooth-64"]
    assert some.loc["partial-48", "smooth-64"] == pytest.approx(
        full.loc["partial-48", "smooth-64"], rel=1e-12
    )
    with pytest.raises(SystemExit, match=r"--reference model-9: not a model of .*s\.zarr"):
        cli_main([*argv, "--output", str(out), "--reference", "model-9"])
    with pytest.raises(SystemExit, match=r"--model nope: not a model of .*s\.zarr"):
        cli_main([*argv, "--output", str(out), "--model", "nope"])
