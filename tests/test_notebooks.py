"""The notebooks run top to bottom on small data, and are committed without outputs.

Each notebook is executed with nbclient in a fresh kernel whose working directory is
``notebooks/``; a cell inserted after the one tagged ``parameters`` points its outputs
(stores, results) into a temporary directory.  The quick start and the paper analysis
share that directory, so the analysis reuses the quick start's store when both run.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))


def execute(name: str, **parameters) -> dict:
    """Run notebook ``name`` with ``parameters`` overriding its parameters cell."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: one cell must be tagged 'parameters'"
    source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(tagged[0] + 1, cell)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    return notebook


def text_outputs(notebook) -> str:
    """Everything the notebook printed or displayed as text."""
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images(notebook) -> int:
    """Number of PNG images the notebook displayed."""
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("notebooks")


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name} cell {index} has outputs"
            assert cell["execution_count"] is None, f"{path.name} cell {index} was executed"
    assert "widgets" not in notebook["metadata"]


def test_notebooks_exist():
    assert {p.name for p in ALL} >= {
        "01_quick_start.ipynb",
        "02_paper_analysis.ipynb",
        "03_scaling_study.ipynb",
    }


def test_quick_start(work):
    output = work / "quickstart"
    notebook = execute("01_quick_start.ipynb", OUTPUT=str(output))
    for stem in ("gfre", "gfrd", "lfre"):
        for suffix in (".json", ".csv", ".png"):
            assert (output / f"{stem}{suffix}").is_file(), stem + suffix
    assert "mean off-diagonal GFRE" in text_outputs(notebook)
    assert "90% interval [" in text_outputs(notebook)
    assert (output / "gfre_bootstrap.json").is_file()
    assert images(notebook) >= 2


def test_scaling_study(work):
    output = work / "scaling"
    notebook = execute(
        "03_scaling_study.ipynb", DATA_DIR=str(work / "scaling-data"), OUTPUT=str(output)
    )
    results = (output / "gfre.csv").read_text()
    assert results.count("\n") == 1 + 4  # header + 2 atom counts x 2 worker counts
    assert (output / "gfre_strong.png").is_file() and (output / "gfre_weak.png").is_file()
    assert "| gfre | 80,000 | 3 x 64 | 8,192 | 2 |" in text_outputs(notebook)
    assert images(notebook) >= 2


def test_paper_analysis(work):
    pytest.importorskip(
        "fredask.structure.compare", reason="structure-level comparisons not in fredask yet"
    )
    output = work / "paper"
    # the quick start's store when test_quick_start ran; else the notebook builds one
    store = work / "quickstart" / "store.zarr"
    notebook = execute("02_paper_analysis.ipynb", STORE=str(store), OUTPUT=str(output))
    for stem in ("atom_gfre", "atom_gfrd", "atom_lfre", "structure_gfre", "structure_gfrd"):
        assert (output / f"{stem}.json").is_file(), stem
    orders = sorted(output.glob("orders_*_gfre.csv"))
    assert len(orders) == 2
    matrix = orders[0].read_text().splitlines()
    assert len(matrix) == 1 + 8 and matrix[0].startswith("source,order 1,")
    assert "mean off-diagonal GFRE" in text_outputs(notebook)
    assert images(notebook) >= 4
