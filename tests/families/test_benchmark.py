"""benchmarks/families.py end to end on the tiny models, in each family's own environment.

Runs where one family's package is importable (``tests/families/run`` passes this
file to every family's environment); the report page is built from the JSON file.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The module each family's environment can import.
MODULES = {"mace": "mace", "metatomic": "metatomic", "dpa": "deepmd", "uma": "fairchem"}


def _installed_family() -> str | None:
    found = [f for f, module in MODULES.items() if importlib.util.find_spec(module) is not None]
    return found[0] if len(found) == 1 else None


FAMILY = _installed_family()


@pytest.mark.skipif(FAMILY is None, reason="needs one family's environment (tests/families/run)")
def test_tiny_benchmark_runs_and_reports(tmp_path):
    script = ROOT / "benchmarks" / "families.py"
    common = ["--results-dir", str(tmp_path), "--data-dir", str(tmp_path / "data")]
    run = [sys.executable, str(script), FAMILY, "--size", "tiny", "--n-structures", "4"]
    subprocess.run([*run, *common], check=True, cwd=ROOT, timeout=600)
    result = json.loads((tmp_path / f"families_{FAMILY}.json").read_text())["result"]
    assert result["atoms_per_s"] > 0 and result["structures"] == 4
    assert result["features_finite"]
    subprocess.run([sys.executable, str(script), "--report", *common], check=True, cwd=ROOT)
    assert f"| {FAMILY} |" in (tmp_path / "families.md").read_text()
