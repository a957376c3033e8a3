"""deploy/pipeline.sh, the batch job of the whole pipeline, run for real outside a batch system.

With no SLURM or PBS allocation the script starts its scheduler and workers on this
machine: the same processes, scheduler file and ``--cluster`` connections as on
compute nodes. Two CHGNet checkpoints over ~240 atoms keep it short.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fredask.cli import build_parser
from fredask.cli import main as cli_main
from fredask.store import FeatureStore

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "pipeline.sh"
MOLECULES = ("H2O", "CH4", "C6H6", "NH3", "C2H6", "CH3OH", "C4H4O", "C5H5N", "CO2", "HCOOH")


def _has_command(name: str) -> bool:
    return f",{name}," in build_parser().format_usage().replace("{", ",").replace("}", ",")


def _matrix(result):
    return np.array([[pair["A_to_B"] for pair in row.values()] for row in result.values()])


@pytest.fixture
def structures(tmp_path):
    """Molecules and rattled crystals: ~240 distinct atoms, well above 64 features."""
    import ase.io
    from ase.build import bulk
    from ase.collections import g2

    molecules = [g2[name] for name in MOLECULES]
    for a in molecules:
        a.info["subset"] = "molecule"
    crystals = [
        bulk("Si", cubic=True).repeat(2),
        bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat(2),
        bulk("Cu", cubic=True).repeat(2),
    ]
    for seed, a in enumerate(crystals):
        a.rattle(0.05, seed=seed)
        a.info["subset"] = "crystal"
    ase.io.write(tmp_path / "molecules.xyz", molecules, format="extxyz")
    ase.io.write(tmp_path / "crystals.xyz", crystals, format="extxyz")
    return tmp_path


def test_pipeline_script_runs_extract_compare_cumulants(tmp_path, structures):
    pytest.importorskip("chgnet")
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    steps = "extract compare" + (" cumulants" if _has_command("cumulants") else "")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    env |= {
        "STRUCTURES": "*.xyz",  # the script expands globs: both files
        "MODELS": "chgnet:0.3.0 chgnet:0.2.0",
        "STEPS": steps,
        "METRICS": "gfre gfrd",
        "N_TEST": "60",
        "WORKERS_PER_NODE": "2",
        "THREADS": "1",
        "VENV": str(Path(sys.executable).parents[1]),
        "SCRATCH": str(tmp_path / "scratch"),
    }
    run = subprocess.run(
        ["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "2 worker(s) up" in run.stdout
    for step in steps.split():
        assert f"=== {step} " in run.stdout

    work = tmp_path / "fredask-run"
    store = FeatureStore.open(work / "store.zarr")
    assert store.feature_names() == ["chgnet-0.2.0", "chgnet-0.3.0"]
    assert np.isfinite(store.features("chgnet-0.3.0")[:]).all()
    # the distributed job's matrices equal the same comparison computed in this process
    # (to rounding: this process's BLAS may run multi-threaded, the workers' single-threaded)
    cli_main(
        [
            "compare",
            str(work / "store.zarr"),
            "--metric",
            "gfre",
            "gfrd",
            "--split",
            "paper",
            "--n-test",
            "60",
            "--precision",
            "float64",
            "--cluster",
            "sync",
            "--output",
            str(tmp_path / "here"),
        ]
    )
    for metric in ("gfre", "gfrd"):
        job = json.loads((work / "results" / f"{metric}.json").read_text())["paper"]
        here = json.loads((tmp_path / "here" / f"{metric}.json").read_text())["paper"]
        assert list(job) == list(here) == ["chgnet-0.2.0", "chgnet-0.3.0"]
        # the diagonal (a model from itself) is round-off: up to 1e-8 for the GFRD of
        # CHGNet's read-out input, a LayerNorm output (each row sums to zero: rank 63 of 64)
        np.testing.assert_allclose(_matrix(job), _matrix(here), rtol=1e-10, atol=1e-7)
        off_diagonal = _matrix(job)[~np.eye(2, dtype=bool)]
        assert (off_diagonal > 0.01).all() and (np.diag(_matrix(job)) < 1e-6).all()
    if "cumulants" in steps:
        assert (work / "results" / "cumulants.txt").read_text().strip()
    # the job's Dask processes ended with it
    (logs,) = work.glob("dask-*")
    assert "End scheduler" in (logs / "scheduler.log").read_text()
    assert "End worker" in (logs / "workers.log").read_text()
