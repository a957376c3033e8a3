"""metatomic (a PET exported by metatrain) through ``fredask extract``, against metatomic's ASE API.

A tiny PET with random weights is built with metatrain's own API (its default
hypers, shrunk) for the harness's 12 elements and an ``energy`` target, and
exported as metatrain exports (``model.export().save(path)``).  The reference
is metatomic's own ASE calculator (``metatomic_ase.MetatomicCalculator`` with
``additional_outputs``), one structure per ``calculate``.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

REASON = "needs metatomic-torch, -ase, metatrain: tests/families/run builds .venv-metatomic"
pytest.importorskip("metatomic.torch", reason=REASON)
pytest.importorskip("metatomic_ase", reason=REASON)
pytest.importorskip("metatrain.pet", reason=REASON)

import torch  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "families_harness", Path(__file__).with_name("conftest.py")
)
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
NUMBERS, assert_rows_equal, extract_rows = (
    harness.NUMBERS,
    harness.assert_rows_equal,
    harness.extract_rows,
)

torch.set_num_threads(1)

LAST_LAYER = "mtt::aux::energy_last_layer_features"
D_NODE, D_PET, D_HEAD = 12, 8, 6


@pytest.fixture(scope="module")
def pet_path(tmp_path_factory):
    """A tiny random PET, exported by metatrain to ``pet.pt``."""
    from metatrain.pet import PET
    from metatrain.utils.architectures import get_default_hypers
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import get_energy_target_info

    torch.manual_seed(0)
    hypers = copy.deepcopy(get_default_hypers("pet")["model"])
    hypers.update(
        cutoff=4.5,
        d_pet=D_PET,
        d_node=D_NODE,
        d_head=D_HEAD,
        d_feedforward=8,
        num_heads=2,
        num_attention_layers=1,
        num_gnn_layers=2,
    )
    energy = get_energy_target_info("energy", {"quantity": "energy", "unit": "eV"})
    info = DatasetInfo(
        length_unit="Angstrom", atomic_types=list(NUMBERS), targets={"energy": energy}
    )
    path = tmp_path_factory.mktemp("metatomic") / "pet.pt"
    PET(hypers, info).export().save(str(path))
    return path


def reference(path, structures, output: str) -> list[np.ndarray]:
    """Per-atom ``output`` from metatomic's ASE calculator, one structure at a time."""
    from metatomic.torch import ModelOutput, load_atomistic_model
    from metatomic_ase import MetatomicCalculator

    model = load_atomistic_model(str(path))
    calculator = MetatomicCalculator(
        model,
        additional_outputs={output: ModelOutput(sample_kind="atom")},
        device="cpu",
        do_gradients_with_energy=False,
    )
    out = []
    for atoms in structures:
        atoms = atoms.copy()
        calculator.reset()
        atoms.calc = calculator
        atoms.get_potential_energy()
        block = calculator.additional_outputs[output].block()
        samples = block.samples.values.numpy()
        assert (samples[:, 0] == 0).all() and sorted(samples[:, 1]) == list(range(len(atoms)))
        values = np.empty(block.values.shape, dtype=np.float64)
        values[samples[:, 1]] = block.values.detach().numpy()
        out.append(values)
    return out


def test_exported_pet_declares_the_feature_outputs(pet_path):
    from metatomic.torch import load_atomistic_model

    capabilities = load_atomistic_model(str(pet_path)).capabilities()
    assert sorted(capabilities.atomic_types) == list(NUMBERS)
    assert capabilities.dtype == "float32"
    for name in (LAST_LAYER, "feature"):
        assert capabilities.outputs[name].sample_kind == "atom"


def test_last_layer_features_by_default(pet_path, structures, tmp_path):
    rows, meta = extract_rows(f"metatomic:{pet_path}", structures, tmp_path)
    assert meta["layer"] == LAST_LAYER and meta["model"] == "metatomic-pet"
    assert meta["package"] == "metatomic-torch" and meta["model_dtype"] == "float32"
    assert rows[0].shape[1] == 2 * D_HEAD  # node + edge head of the one read-out layer
    expected = reference(pet_path, structures, LAST_LAYER)
    assert_rows_equal(rows, expected)
    assert max(np.abs(want).max() for want in expected) > 1e-3  # not a trivial zero


def test_backbone_features_option(pet_path, structures, tmp_path):
    rows, meta = extract_rows(
        f"metatomic:{pet_path}", structures, tmp_path, "--option", "output=features"
    )
    assert meta["layer"] == "feature" and meta["model"] == "metatomic-pet-features"
    assert rows[0].shape[1] == D_NODE + D_PET
    assert_rows_equal(rows, reference(pet_path, structures, "feature"))


def test_undeclared_output_is_a_one_line_error(pet_path, structures, tmp_path):
    with pytest.raises(SystemExit) as error:
        extract_rows(f"metatomic:{pet_path}", structures[:2], tmp_path, "--option", "output=nope")
    message = str(error.value.code)
    assert "\n" not in message and "no output 'nope'" in message
    assert LAST_LAYER in message and "feature" in message


def test_uncovered_element_is_a_one_line_error(pet_path, structures, tmp_path):
    from ase.build import bulk

    iron = bulk("Fe", "bcc", a=2.87)
    with pytest.raises(SystemExit) as error:
        extract_rows(f"metatomic:{pet_path}", [structures[0], iron], tmp_path)
    message = str(error.value.code)
    assert "\n" not in message and "element Fe (Z=26) in structure #1 (Fe)" in message
