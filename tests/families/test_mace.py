"""MACE (``mace-torch``) through ``fredask extract``, against the package's own API.

A tiny ``ScaleShiftMACE`` (2 interactions, hidden irreps ``8x0e+8x1o``, MLP
``4x0e``, r_max 4.5 Å, the harness's 12 elements, float64, random weights) is
built with ``mace.modules`` and saved with ``torch.save`` as a ``.model`` file,
as MACE's own training script saves its models; ``MACECalculator`` loads it.

The references are computed here from the package alone:
``MACECalculator.get_descriptors(atoms, invariants_only=True)`` (the invariant
node features of each interaction) and, for the default last-layer features,
the read-outs of the model applied to those node features: the scalars of
interaction 0 (its ``LinearReadoutBlock`` reads them) and
``non_linearity(linear_1(z))`` of the final ``NonLinearReadoutBlock``.  The
preset instead hooks the read-outs inside the model's own forward pass.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "mace.calculators", reason="needs mace-torch: tests/families/run builds .venv-mace"
)

import torch

_spec = importlib.util.spec_from_file_location(
    "families_harness", Path(__file__).with_name("conftest.py")
)
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)

SCALARS, HIDDEN = 8, 4  # 8x0e node scalars per interaction, MLP_irreps 4x0e


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny float64 ScaleShiftMACE with random weights, saved as ``tiny.model``."""
    torch.set_num_threads(1)
    from e3nn import o3
    from mace import modules
    from mace.tools import torch_tools

    block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    config = dict(
        r_max=4.5,
        num_bessel=6,
        num_polynomial_cutoff=5,
        max_ell=2,
        interaction_cls=block,
        interaction_cls_first=block,
        num_interactions=2,
        num_elements=len(harness.NUMBERS),
        hidden_irreps=o3.Irreps(f"{SCALARS}x0e+{SCALARS}x1o"),
        MLP_irreps=o3.Irreps(f"{HIDDEN}x0e"),
        gate=torch.nn.functional.silu,
        atomic_energies=np.linspace(-1.0, -3.0, len(harness.NUMBERS)),
        avg_num_neighbors=8.0,
        atomic_numbers=list(harness.NUMBERS),
        correlation=2,
        radial_MLP=[8, 8],
        atomic_inter_scale=1.0,
        atomic_inter_shift=0.0,
    )
    with torch_tools.default_dtype("float64"):
        torch.manual_seed(0)
        model = modules.ScaleShiftMACE(**config)
    path = tmp_path_factory.mktemp("mace") / "tiny.model"
    torch.save(model, path)
    return path


@pytest.fixture(scope="module")
def reference(model_file, structures) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per structure: (get_descriptors invariants, last-layer features), from mace-torch alone."""
    from mace.calculators import MACECalculator

    torch.set_num_threads(1)
    calculator = MACECalculator(model_paths=str(model_file), device="cpu")
    assert calculator.default_dtype == "float64"
    model = calculator.models[0]
    linear, nonlinear = model.readouts
    assert type(linear).__name__ == "LinearReadoutBlock"
    assert type(nonlinear).__name__ == "NonLinearReadoutBlock"
    descriptors, last_layer = [], []
    for atoms in structures:
        values = calculator.get_descriptors(atoms.copy(), invariants_only=True)
        assert values.shape == (len(atoms), 2 * SCALARS) and values.dtype == np.float64
        first, last = torch.from_numpy(values).split(SCALARS, dim=1)
        with torch.no_grad():
            hidden = nonlinear.non_linearity(nonlinear.linear_1(last)).numpy()
        descriptors.append(values)
        last_layer.append(np.concatenate([first.numpy(), hidden], axis=1))
    assert np.abs(np.concatenate(last_layer)[:, SCALARS:]).max() > 1e-3  # not trivially zero
    return descriptors, last_layer


def test_default_is_the_last_layer_features(model_file, structures, reference, tmp_path):
    rows, meta = harness.extract_rows(f"mace:{model_file}", structures, tmp_path)
    assert rows[0].shape[1] == SCALARS + HIDDEN
    harness.assert_rows_equal(rows, reference[1])
    assert meta["model"] == "mace-tiny" and meta["features"] == "last-layer"
    assert meta["layer"].startswith("last-layer features") and "all interactions" in meta["layer"]
    assert meta["model_dtype"] == "float64" and meta["dtype"] == "float32"


def test_descriptors_option(model_file, structures, reference, tmp_path):
    options = ("--option", "features=descriptors")
    rows, meta = harness.extract_rows(f"mace:{model_file}", structures, tmp_path, *options)
    harness.assert_rows_equal(rows, reference[0])
    assert meta["model"] == "mace-tiny-descriptors"
    assert meta["layer"] == "get_descriptors invariants, all interactions"


@pytest.mark.parametrize(
    ("options", "which", "columns", "name"),
    [
        (("--layer", "0"), 1, slice(0, SCALARS), "mace-tiny-layer0"),
        (("--layer", "-1"), 1, slice(SCALARS, None), "mace-tiny-layer-1"),
        (
            ("--layer", "1", "--option", "features=descriptors"),
            0,
            slice(SCALARS, None),
            "mace-tiny-descriptors-layer1",
        ),
    ],
)
def test_one_interaction(
    model_file, structures, reference, tmp_path, options, which, columns, name
):
    rows, meta = harness.extract_rows(f"mace:{model_file}", structures[:8], tmp_path, *options)
    harness.assert_rows_equal(rows, [values[:, columns] for values in reference[which][:8]])
    assert meta["model"] == name
    assert meta["layer"].endswith(f"interaction {options[1]}")


def test_uncovered_element_is_one_line(model_file, structures, tmp_path):
    from ase.build import bulk

    iron = bulk("Fe", "bcc", a=2.87)
    iron.info["name"] = "crystal-iron"
    with pytest.raises(SystemExit) as refused:
        harness.extract_rows(f"mace:{model_file}", [*structures[:2], iron], tmp_path)
    message = str(refused.value.code)
    assert "\n" not in message.strip()
    assert "mace-tiny" in message and "element Fe (Z=26)" in message
    assert "structure #2 " in message  # the structure's index in the file (and its name)


def test_bad_options_are_one_line(model_file, structures, tmp_path):
    from fredask.extract.presets import ModelSpecError, get_extractor

    with pytest.raises(ModelSpecError, match="features must be one of 'last-layer', 'descriptors'"):
        get_extractor(f"mace:{model_file}", features="llpr")
    for options, expected in [
        (("--option", "features=llpr"), "features must be one of"),
        (("--layer", "2"), "layer 2 out of range"),
    ]:
        with pytest.raises(SystemExit) as refused:
            harness.extract_rows(f"mace:{model_file}", structures[:1], tmp_path, *options)
        message = str(refused.value.code)
        assert "\n" not in message.strip() and "mace-tiny" in message and expected in message
