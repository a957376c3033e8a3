"""Smoke runs of the benchmark drivers in benchmarks/, tiny, into a temporary directory.

Each script runs as a user would run it (a subprocess from the repository root)
on sizes small enough for a few tens of seconds on 2 cores; the checks are that
it finishes, writes its report and raw numbers, and measured something.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(
    name: str, tmp_path: Path, *options: str, results_option: str = "--results-dir"
) -> Path:
    """Run ``benchmarks/name.py`` with data and results under ``tmp_path``; the results dir."""
    results = tmp_path / "results"
    command = [
        sys.executable,
        f"benchmarks/{name}.py",
        *options,
        "--data-dir",
        str(tmp_path / "data"),
        results_option,
        str(results),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return results


def test_cumulants_benchmark(tmp_path):
    results = run_script(
        "cumulants", tmp_path, "--sizes", "200", "--repeats", "1", "--loop-budget", "1"
    )
    page = (results / "cumulants.md").read_text()
    assert (
        "| structures | atoms | features | read s: storage chunks / tasks | floor s | "
        "fredask compute s | fredask store s | compute / floor | store / floor | paper loop s | "
        "loop / store | loop / compute | peak worker RSS MiB | load avg before / after |"
    ) in page
    [r] = json.loads((results / "cumulants.json").read_text())["results"]
    assert r["n_structures"] == 200
    for run in ("floor", "read_per_storage_chunk", "read_in_tasks"):
        assert r[run]["seconds"] > 0
    for run in ("fredask_compute", "fredask_store"):
        assert r[run]["seconds"] > 0
        assert min(r[run]["worker_peak_rss"].values()) > 0
    assert r["loop"]["total_s"] > 0
    assert r["loop"]["structures_timed"] == 200  # all of them: no extrapolation
    assert r["agreement"]["max_diff_over_column_scale"] < 1e-8


@pytest.mark.skipif(
    find_spec("chgnet") is None or find_spec("sevenn") is None,
    reason="needs the extraction extra (chgnet, sevenn)",
)
def test_extraction_benchmark(tmp_path):
    results = run_script(
        "extraction",
        tmp_path,
        *("--models", "chgnet:0.3.0", "--workers", "1", "--write-rows", "2000"),
        *("--max-structures", "20"),
    )
    page = (results / "extraction.md").read_text()
    assert "| model | workers | wall s | atoms/s | speed-up |" in page
    assert (
        "| data | MiB | store s | np.save s | store MiB/s | np.save MiB/s | store / np.save |"
    ) in page
    raw = json.loads((results / "extraction.json").read_text())["results"]
    assert raw["structures"] == 20
    [run] = raw["extraction"]
    assert (run["model"], run["workers"]) == ("chgnet:0.3.0", 1)
    assert run["seconds"] > 0 and run["atoms_per_s"] > 0
    assert len(raw["writes"]) == 2
    assert all(w["store_s"] > 0 and w["numpy_save_s"] > 0 for w in raw["writes"])
    assert not list((tmp_path / "data").iterdir())  # the scratch stores were removed


def test_scaling_benchmark(tmp_path):
    results = run_script(
        "scaling", tmp_path, "--atoms", "40000", "--parts", "gfre", "--repeats", "1"
    )
    page = (results / "scaling.md").read_text()
    assert (
        "| stage | N atoms | models x features | chunk rows | workers | time s | floor s | "
        "time / floor | speed-up | efficiency | floor speed-up | atoms/s | MiB/s | "
        "peak worker RSS MiB | load before / after |"
    ) in page
    with open(results / "scaling.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(int(r["workers"]) for r in rows) == [1, 2]
    for r in rows:
        assert (r["stage"], int(r["n_atoms"])) == ("gfre", 40000)
        assert float(r["seconds"]) > 0 and float(r["floor_s"]) > 0
    assert (results / "scaling_gfre_strong.png").stat().st_size > 0
    assert (results / "scaling_gfre_weak.png").stat().st_size > 0


def test_gfre_matrix_benchmark(tmp_path):
    results = run_script("gfre_matrix", tmp_path, "--sizes", "40000", "--skmatter-budget", "2")
    page = (results / "gfre_matrix.md").read_text()
    assert "| N | store | read floor s | Gram floor s | floor total s | fredask qr s |" in page
    [r] = json.loads((results / "gfre_matrix.json").read_text())["results"]
    assert r["floor_s"] > 0 and r["fredask"]["qr"]["seconds"] > 0
    # the exact and fast paths agree, and scikit-matter agrees on the pairs it ran
    assert r["agreement"]["qr_vs_gram"] < 1e-10
    assert r["agreement"]["pairs_compared"] >= 1 and r["agreement"]["qr_vs_skmatter"] < 1e-5


def test_lfre_benchmark(tmp_path):
    results = run_script("lfre", tmp_path, "--sizes", "40000")
    page = (results / "lfre.md").read_text()
    assert "| N_train | total s | statistics and test rows s | neighbour search s |" in page
    [r] = json.loads((results / "lfre.json").read_text())["results"]
    phases = r["fredask"]["phases_s"]
    assert all(phases[name] > 0 for name in ("neighbour search", "statistics and test rows"))
    # the hook's neighbours and scaler rebuild arrays whose local fits give fredask's LFRE
    assert r["fredask"]["local_fit_floor_relative_difference"] < 1e-10
    assert r["relative_difference_float64"] < 1e-12


def test_paper_analysis_benchmark(tmp_path):
    results = run_script(
        "paper_analysis",
        tmp_path,
        *("--scale", "0.01", "--n-test", "8", "--structure-lfre-sample", "2"),
        *("--paper-budget", "0.5", "--client-blas-threads", "1", "--order-models", "uma128"),
    )
    page = (results / "paper_analysis.md").read_text()
    assert (
        "| step | fredask s | floor s | fredask / floor | paper pipeline s | paper / fredask | "
        "peak worker RSS MiB | load before / after |"
    ) in page
    assert "| **whole analysis** |" in page
    [r] = json.loads((results / "paper_analysis.json").read_text())["results"]
    assert r["n_structures"] == 95 and r["split"]["structures"][1] == 8
    steps = r["steps"]
    assert list(steps) == [
        "atom_gfre",
        "atom_lfre",
        "cumulants",
        "structure_gfre",
        "structure_lfre",
        "order_gfre",
        "order_lfre",
    ]
    for step in steps.values():
        assert step["fredask"]["seconds"] > 0 and step["floor"]["seconds"] > 0
        runs = step["fredask"]["runs"].values()
        assert all(min(run["worker_peak_rss"].values()) > 0 for run in runs)
        assert step["paper"]["total_s"] > 0
        # fredask (float64-exact settings) equals scikit-matter / the scipy loop
        assert step["agreement"]["max_relative_difference"] < 1e-8
    for name in ("structure_lfre", "order_lfre"):  # 2 of 8 test structures, extrapolated
        assert steps[name]["fredask"]["extrapolated"]
        assert steps[name]["fredask"]["estimate"]["rows_timed"] == 2


def test_gpu_check_dry_run(tmp_path):
    """The GPU check's steps at a tiny size, torch CPU tensors standing in for the GPU."""
    results = run_script("gpu", tmp_path, "--dry-run", results_option="--output")
    page = (results / "gpu.md").read_text()
    assert "| step | status | wall s |" in page
    assert "| quantity | compared on | max relative difference | target | met |" in page
    steps = json.loads((results / "gpu.json").read_text())["steps"]
    assert list(steps) == ["gfre", "lfre", "cumulants", "extraction"]
    for name in ("gfre", "lfre", "cumulants"):
        assert steps[name]["status"] == "ok", steps[name]
    gfre, lfre, cumulants = steps["gfre"], steps["lfre"], steps["cumulants"]
    for method in ("qr", "gram"):
        assert gfre["device"][method]["seconds"] > 0
        assert gfre["cpu"][method]["estimate"]["extrapolated"]  # timed on the first rows
    assert gfre["floor"]["floor_float64_s"] > 0 and gfre["floor"]["floor_tf32_s"] > 0
    assert lfre["device"]["phases_s"]["neighbour search"] > 0 and lfre["floor"]["floor_s"] > 0
    assert lfre["cpu"]["extrapolated"] and cumulants["cpu"]["estimate"]["extrapolated"]
    # every device number against the CPU path on the same rows
    agreement = [gfre["agreement"][method]["max_relative"] for method in ("qr", "gram")]
    agreement += [
        lfre["agreement"]["pointwise_max_relative"],
        cumulants["agreement"]["max_relative_to_column_max"],
    ]
    extraction = steps["extraction"]
    assert extraction["status"] in ("ok", "skipped"), extraction
    for model in extraction.get("models", {}).values():
        assert model["status"] in ("ok", "skipped"), model
        if model["status"] == "ok":
            agreement.append(model["agreement"]["max_abs_over_max"])
    assert all(np.isfinite(value) and value < 1e-8 for value in agreement), agreement
    assert not list((tmp_path / "data").iterdir())  # the scratch directory was removed


def test_gpu_check_sizes_and_comparisons():
    from fredask.bench.gpu import column_relative, cpu_chunk_rows, max_relative, sized_atoms

    # 10 x 256 float32 features: 10 KiB an atom; the host's 35% binds, whole chunks
    assert sized_atoms(10240, 141 * 10**9, 137 * 10**9, 2**17, 4 * 10**6) == 35 * 2**17
    assert sized_atoms(10240, 16 * 10**9, 32 * 10**9, 2**17, 4 * 10**6) == 4 * 10**6
    assert cpu_chunk_rows(2**18, 16, 2**15) == 2**14  # a chunk for every worker
    assert cpu_chunk_rows(2**22, 16, 2**15) == 2**15
    assert max_relative([1.0, 2.2], [1.0, 2.0]) == pytest.approx(0.1)
    assert max_relative([0.5], [0.0]) == pytest.approx(0.5)  # zero: the absolute difference
    assert column_relative([[1.0, 100.0], [2.0, 201.0]], [[1.0, 100.0], [2.0, 200.0]]) == (
        pytest.approx(0.005)
    )


def test_paper_extrapolation():
    from fredask.bench.paper import extrapolate, pair_estimate

    # 10 s for 40 rows: 0.25 s a row -> 250 s for 1000 (an upper bound)
    assert extrapolate(10.0, 40, 1000)["seconds"] == pytest.approx(250.0)
    # with 6 s for 20 rows: 0.2 s a row plus 2 s fixed
    line = extrapolate(10.0, 40, 1000, half_s=6.0, n_half=20)
    assert line["per_row_s"] == pytest.approx(0.2) and line["fixed_s"] == pytest.approx(2.0)
    assert line["seconds"] == pytest.approx(202.0) and line["linearity"] == pytest.approx(10 / 12)
    assert not extrapolate(3.0, 8, 8)["extrapolated"]
    # scikit-matter: 1.5 s for 1 row, 3 s for 4 rows -> 0.5 s a row, 1 s fixed
    assert pair_estimate(1.5, 3.0, 4, 100) == pytest.approx(51.0)
    assert pair_estimate(1.5, None, 0, 100) == pytest.approx(150.0)


def test_measures_benchmark(tmp_path):
    results = run_script("measures", tmp_path, "--sizes", "40000")
    page = (results / "measures.md").read_text()
    assert "| N | structures | gfre s | all global s | all global / gfre |" in page
    [r] = json.loads((results / "measures.json").read_text())["results"]
    assert all(seconds > 0 for seconds in r["seconds"].values()) and len(r["seconds"]) == 4
    # the GFRE computed with the similarities is the GFRE computed alone
    assert r["gfre_agreement"] < 1e-12 and r["interval_width"] > 0
