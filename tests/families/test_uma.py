"""UMA (fairchem-core): ``fredask extract --model uma:PATH`` against fairchem's own calculator.

A tiny UMA model with random weights is built from fairchem's own classes, the
way fairchem's tests build theirs: ``hydra.utils.instantiate`` of a
``HydraModel`` config (backbone ``fairchem.core.models.uma.escn_moe.
eSCNMDMoeBackbone`` with MoLE experts, ``model_version`` 1.1 as in
``uma-s-1p1``; head ``DatasetSpecificSingleHeadWrapper`` around
``escn_md.MLP_EFS_Head``) saved as an ``MLIPInferenceCheckpoint`` with its
tasks; ``pretrained_mlip.load_predict_unit`` loads it as it loads
``uma-s-1p1.pt`` (no download: a path is loaded as is).

The expected rows come from forward pre-hooks of the test's own on the predict
unit's energy block while ``FAIRChemCalculator(unit, task_name=...)``
evaluates each structure.  Molecules (``pbc=False``) are passed as they are,
as fairchem takes them: at inference the backbone builds the graph with each
structure's own ``pbc`` (``always_use_pbc=False``), for every task.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "fairchem.core", reason="needs fairchem-core; tests/families/run builds .venv-uma"
)

import torch

_spec = importlib.util.spec_from_file_location(
    "families_harness", Path(__file__).with_name("conftest.py")
)
_harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_harness)
assert_rows_equal, extract_rows = _harness.assert_rows_equal, _harness.extract_rows

DATASETS = ["oc20", "omat", "omol", "odac", "omc"]
SPHERE, HIDDEN = 8, 12  # widths of the backbone and last-layer features


def _model_config() -> dict:
    backbone = {
        "model": "fairchem.core.models.uma.escn_moe.eSCNMDMoeBackbone",
        "model_version": 1.1,
        "max_num_elements": 100,
        "sphere_channels": SPHERE,
        "lmax": 2,
        "mmax": 2,
        "otf_graph": True,
        "max_neighbors": 30,
        "cutoff": 4.5,
        "edge_channels": 8,
        "distance_function": "gaussian",
        "num_distance_basis": 16,
        "direct_forces": False,
        "regress_forces": True,
        "regress_stress": True,
        "num_layers": 2,
        "hidden_channels": HIDDEN,
        "norm_type": "rms_norm_sh",
        "act_type": "gate",
        "ff_type": "grid",
        "chg_spin_emb_type": "rand_emb",
        "dataset_list": DATASETS,
        "num_experts": 4,
        "use_composition_embedding": True,
        "moe_type": "so2",
    }
    head = {
        "module": "fairchem.core.models.uma.escn_moe.DatasetSpecificSingleHeadWrapper",
        "head_cls": "fairchem.core.models.uma.escn_md.MLP_EFS_Head",
        "head_kwargs": {"wrap_property": False},
        "dataset_names": DATASETS,
    }
    return {
        "_target_": "fairchem.core.models.base.HydraModel",
        "backbone": backbone,
        "heads": {"energyandforcehead": head},
        "pass_through_head_outputs": True,
    }


def _tasks_config() -> list[dict]:
    def task(dataset, prop, level, dim):
        return {
            "_target_": "fairchem.core.units.mlip_unit.mlip_unit.Task",
            "name": f"{dataset}_{prop}",
            "level": level,
            "property": prop,
            "out_spec": {"dim": dim, "dtype": "float32"},
            "normalizer": {
                "_target_": "fairchem.core.modules.normalization.normalizer.Normalizer",
                "mean": 0.0,
                "rmsd": 1.0,
            },
            "datasets": [dataset],
        }

    return [
        task(d, prop, level, dim)
        for d in DATASETS
        for prop, level, dim in [
            ("energy", "system", [1]),
            ("forces", "atom", [3]),
            ("stress", "system", [1, 9]),
        ]
    ]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random-weight UMA checkpoint, ``uma-tiny.pt``, in fairchem's inference format."""
    import hydra
    from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = _model_config()
    model = hydra.utils.instantiate(copy.deepcopy(config))
    state = model.state_dict()
    ema = {key: value.clone() for key, value in state.items()}
    ema["n_averaged"] = torch.tensor(1, dtype=torch.long)
    path = tmp_path_factory.mktemp("uma") / "uma-tiny.pt"
    torch.save(MLIPInferenceCheckpoint(config, state, ema, _tasks_config()), path)
    return path


def _reference(path, structures, task: str) -> dict[str, list[np.ndarray]]:
    """fairchem's calculator over ``structures``, the energy block's inputs taken by hooks.

    Also checks that the block turns them into the calculator's energy.
    """
    from fairchem.core import FAIRChemCalculator, pretrained_mlip

    unit = pretrained_mlip.load_predict_unit(str(path), inference_settings="batch", device="cpu")
    calculator = FAIRChemCalculator(unit, task_name=task)
    block = unit.model.module.output_heads["energyandforcehead"].head.energy_block
    seen = {}
    block.register_forward_pre_hook(lambda m, args: seen.update(backbone=args[0].detach()))
    block[4].register_forward_pre_hook(lambda m, args: seen.update(last=args[0].detach()))
    out = {"last": [], "backbone": []}
    for original in structures:
        atoms = original.copy()
        atoms.calc = calculator
        energy = atoms.get_potential_energy()
        with torch.no_grad():  # energy = sum over atoms of the block (mean 0, rmsd 1, no refs)
            assert float(block[4](seen["last"]).sum()) == pytest.approx(energy, abs=1e-5)
            assert float(block(seen["backbone"]).sum()) == pytest.approx(energy, abs=1e-5)
        out["last"].append(seen["last"].double().numpy())
        out["backbone"].append(seen["backbone"].double().numpy())
    return out


@pytest.fixture(scope="module")
def reference(checkpoint, structures):
    return _reference(checkpoint, structures, "omat")


def test_last_layer_features_by_default(checkpoint, structures, reference, tmp_path):
    rows, meta = extract_rows(f"uma:{checkpoint}", structures, tmp_path, "--option", "task=omat")
    assert meta["model"] == "uma-uma-tiny-omat" and meta["task"] == "omat"
    assert meta["layer"].startswith("last: input of the final Linear")
    assert meta["layer"].endswith("(module.output_heads.energyandforcehead.head.energy_block.4)")
    assert meta["inference_settings"] == "batch"
    assert {row.shape[1] for row in rows} == {HIDDEN}
    assert_rows_equal(rows, reference["last"])


def test_backbone_layer(checkpoint, structures, reference, tmp_path):
    rows, meta = extract_rows(
        f"uma:{checkpoint}", structures, tmp_path, "--option", "layer=backbone"
    )
    assert meta["model"] == "uma-uma-tiny-omat-backbone"
    assert meta["layer"].startswith("backbone: input of the energy head's energy_block")
    assert {row.shape[1] for row in rows} == {SPHERE}
    assert_rows_equal(rows, reference["backbone"])


def test_omol_task_on_molecules(checkpoint, structures, tmp_path):
    molecules = [atoms for atoms in structures if not atoms.pbc.any()][:4]
    rows, meta = extract_rows(f"uma:{checkpoint}", molecules, tmp_path, "--option", "task=omol")
    assert meta["model"] == "uma-uma-tiny-omol"
    expected = _reference(checkpoint, molecules, "omol")["last"]
    assert_rows_equal(rows, expected)
    omat = _reference(checkpoint, molecules, "omat")["last"]
    assert not np.allclose(rows[0], omat[0], atol=1e-4)  # the task routes the experts


def test_merged_experts_rehooked_after_fairchem_reloads(checkpoint, structures, reference):
    """Merged MoLE experts: fairchem reloads an unmerged model on a new composition."""
    from fairchem.core.units.mlip_unit.api.inference import InferenceSettings

    from fredask.extract import get_extractor

    settings = InferenceSettings(merge_mole=True, compile=False)
    extractor = get_extractor(f"uma:{checkpoint}", inference_settings=settings)
    got = extractor.atom_features(structures[:1])
    merged = extractor._unit.model
    got += extractor.atom_features(structures[1:4])  # H2O, then CH4: a reload
    assert extractor._unit.model is not merged
    assert_rows_equal(got, reference["last"][:4], tol=1e-5)


def test_bad_options_and_uncovered_elements(checkpoint, structures, tmp_path):
    from ase import Atoms

    spec = f"uma:{checkpoint}"
    for name in ("task", "layer", "element"):
        (tmp_path / name).mkdir()
    with pytest.raises(SystemExit, match=r"Invalid task_name 'omx'.*omat") as info:
        extract_rows(spec, structures[:1], tmp_path / "task", "--option", "task=omx")
    assert "\n" not in str(info.value)
    with pytest.raises(SystemExit, match=r"unknown layer 'middle'; layers: last, backbone"):
        extract_rows(spec, structures[:1], tmp_path / "layer", "--option", "layer=middle")
    fermium = Atoms("FmH", positions=[[0, 0, 0], [0, 0, 1.9]])
    uncovered = r"uma-uma-tiny-omat does not cover element Fm \(Z=100\) in structure #1"
    with pytest.raises(SystemExit, match=uncovered) as info:
        extract_rows(spec, [structures[0], fermium], tmp_path / "element")
    assert "\n" not in str(info.value)
