"""Model presets on real structures: CHGNet and SevenNet (weights shipped in their packages).

Every value is compared with what the model's own API returns for the same structure,
computed independently here: CHGNet's ``predict_structure(..., return_atom_feas=True)``
(and a forward hook on a fresh model for single layers), SevenNet's own calculator with
a forward hook on the module that feeds the read-out.  MACE, metatomic and UMA are not
installed here: only their spec parsing and their missing-package errors are tested,
and real runs are skipped unless the package and a model file are available.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import pickle
import sys
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.collections import g2

from fredask.extract import ExtractionError, get_extractor
from fredask.extract.presets import boxed, known_specs

torch = pytest.importorskip("torch")


def _named(atoms: Atoms, name: str) -> Atoms:
    atoms.info["name"] = name
    return atoms


def _structures() -> list[Atoms]:
    """Molecules, bulk crystals, a rattled supercell and a slab (CHGNet and 7net-0 cover all)."""
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    mgo = Structure.from_prototype("rocksalt", ["Mg", "O"], a=4.21)
    supercell = AseAtomsAdaptor.get_atoms(mgo * (2, 2, 2))
    supercell.rattle(0.05, seed=3)
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=None, periodic=False)
    slab.pbc = (True, True, False)
    return [
        _named(g2["H2O"], "H2O"),
        _named(g2["CH4"], "CH4"),
        _named(bulk("Si"), "Si"),
        _named(bulk("Cu"), "Cu"),
        _named(bulk("NaCl", "rocksalt", a=5.64), "NaCl"),
        _named(supercell, "MgO-2x2x2"),
        _named(slab, "Cu111-slab"),
    ]


STRUCTURES = _structures()


def _unpickled(spec: str, **options):
    """The extractor after a round trip through pickle, before it loads anything."""
    extractor = get_extractor(spec, **options)
    return pickle.loads(pickle.dumps(extractor))


def _check(values: list[np.ndarray], width: int) -> None:
    for atoms, features in zip(STRUCTURES, values, strict=True):
        assert features.shape == (len(atoms), width)
        assert features.dtype == np.float32
        assert np.isfinite(features).all()


# --------------------------------------------------------------------------- spec parsing


def test_spec_names_and_unknown_specs():
    assert get_extractor("chgnet:0.3.0").name == "chgnet-0.3.0"
    assert get_extractor("CHGNet:R2SCAN").name == "chgnet-r2scan"
    assert get_extractor("chgnet:0.3.0", layer=2).name == "chgnet-0.3.0-layer2"
    assert get_extractor("chgnet:0.2.0", layer="readout").name == "chgnet-0.2.0"
    assert get_extractor("chgnet:0.2.0", layer="atom_fea").name == "chgnet-0.2.0-atom-fea"
    assert get_extractor("chgnet:0.3.0", layer=-1).name == "chgnet-0.3.0-layer-1"
    with pytest.raises(ValueError, match="'readout', 'atom_fea' or an integer"):
        get_extractor("chgnet:0.3.0", layer=None)
    assert get_extractor("sevenn:7net-0").name == "sevenn-7net-0"
    assert get_extractor("sevenn:7net-l3i5").name == "sevenn-7net-l3i5"
    assert get_extractor("sevenn:7net-mf-0", modal="r2scan").name == "sevenn-7net-mf-0-r2scan"
    assert len(known_specs()) == 11
    with pytest.raises(ValueError, match=r"unknown model prefix 'orb'.*chgnet:0\.3\.0.*uma:PATH"):
        get_extractor("orb:v3")
    with pytest.raises(ValueError, match=r"not 'PREFIX:MODEL'"):
        get_extractor("chgnet")
    with pytest.raises(
        ValueError, match=r"unknown CHGNet model '0\.1\.0'.*0\.3\.0, 0\.2\.0, r2scan"
    ):
        get_extractor("chgnet:0.1.0")
    with pytest.raises(ValueError, match=r"unknown SevenNet model '7net-omni'.*7net-0.*7net-l3i5"):
        get_extractor("sevenn:7net-omni")
    with pytest.raises(ValueError, match=r"needs modal= one of PBE, R2SCAN"):
        get_extractor("sevenn:7net-mf-0")
    with pytest.raises(ValueError, match=r"no option 'layer'; options: modal, stop_at_hook"):
        get_extractor("sevenn:7net-mf-0", layer=1)
    with pytest.raises(ValueError, match=r"7net-0: sevenn models take no option 'modal'"):
        get_extractor("sevenn:7net-0", modal="PBE")
    with pytest.raises(ValueError, match=r"'readout', 'atom_fea' or an integer, got 'last'"):
        get_extractor("chgnet:0.3.0", layer="last")


def test_metadata_before_load_has_the_shipped_checkpoint_hash():
    meta = get_extractor("chgnet:0.3.0", layer=1).metadata()
    assert meta["model"] == "chgnet-0.3.0-layer1" and meta["package"] == "chgnet"
    assert meta["layer"] == "atom_conv_layers[1]" and meta["dtype"] == "float32"
    assert meta["checkpoint_file"].startswith("chgnet_0.3.0") and len(meta["checkpoint_hash"]) == 32
    meta = get_extractor("sevenn:7net-0").metadata()
    assert meta["package"] == "sevenn" and meta["hook"] == "forward_pre_hook"
    assert meta["checkpoint_file"] == "SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth"


def test_boxed_molecules_and_slabs():
    water = boxed(g2["H2O"], vacuum=10.0)
    assert water.pbc.all()
    extent = np.ptp(g2["H2O"].positions, axis=0)
    np.testing.assert_allclose(np.diag(water.cell[:]), extent + 10.0)
    slab = STRUCTURES[-1]
    boxed_slab = boxed(slab)
    np.testing.assert_allclose(boxed_slab.cell[:2], slab.cell[:2])
    assert boxed_slab.cell[2, 2] == pytest.approx(np.ptp(slab.positions[:, 2]) + 10.0)
    crystal = STRUCTURES[2]
    assert boxed(crystal) is crystal


# --------------------------------------------------------------------------- CHGNet


@pytest.fixture(scope="module")
def chgnet_reference():
    """An independent CHGNet 0.3.0 and its own predictions for every structure: alone,
    all in one ``predict_structure`` batch, and a forward hook on ``atom_conv_layers[1]``."""
    from chgnet.model import CHGNet
    from pymatgen.io.ase import AseAtomsAdaptor

    with contextlib.redirect_stdout(io.StringIO()):
        model = CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False)
    captured, readout = [], []
    model.atom_conv_layers[1].register_forward_hook(
        lambda _m, _a, output: captured.append(output.detach().clone())
    )
    # the read-out MLP's input: the output of readout_norm (CHGNet.forward)
    model.readout_norm.register_forward_hook(
        lambda _m, _a, output: readout.append(output.detach().clone())
    )
    structures = []
    for atoms in STRUCTURES:
        periodic = atoms.copy()
        non_periodic = tuple(i for i in range(3) if not periodic.pbc[i])
        if non_periodic:  # 5 Å of vacuum on each side, images 10 Å apart
            periodic.center(vacuum=5.0, axis=non_periodic)
            periodic.pbc = True
        structures.append(AseAtomsAdaptor.get_structure(periodic))
    alone, layer1, readout_alone = [], [], []
    for structure in structures:
        captured.clear()
        readout.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            prediction = model.predict_structure(structure, return_atom_feas=True)
        alone.append(prediction["atom_fea"])
        layer1.append(captured[-1].numpy())
        readout_alone.append(readout[-1].numpy())
    with warnings.catch_warnings():  # chgnet's own "requires_grad ... to a scalar"
        warnings.simplefilter("ignore", UserWarning)
        together = model.predict_structure(
            structures, return_atom_feas=True, batch_size=len(structures)
        )
    return {
        "alone": alone,
        "together": [p["atom_fea"] for p in together],
        "layer1": layer1,
        "readout": readout_alone,
    }


@pytest.fixture(scope="module")
def chgnet_final():
    return _unpickled("chgnet:0.3.0")


@pytest.fixture(scope="module")
def chgnet_layer1():
    return _unpickled("chgnet:0.3.0", layer=1, batch_atoms=40)


def test_chgnet_default_is_the_readout_input(chgnet_final, chgnet_reference):
    # the paper's last-layer features: what CHGNet's read-out MLP is fed
    assert chgnet_final.metadata()["layer"].startswith("readout")
    values = chgnet_final.atom_features(STRUCTURES)
    _check(values, 64)
    for got, expected in zip(values, chgnet_reference["readout"], strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_chgnet_atom_fea_equals_predict_structure(chgnet_reference):
    extractor = _unpickled("chgnet:0.3.0", layer="atom_fea")
    assert extractor.name == "chgnet-0.3.0-atom-fea"
    # one forward pass for all structures, as predict_structure(list, batch_size=7)
    values = extractor.atom_features(STRUCTURES)
    _check(values, 64)
    for got, expected in zip(values, chgnet_reference["together"], strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    for atoms, expected in zip(STRUCTURES, chgnet_reference["alone"], strict=True):
        got = extractor.atom_features([atoms])[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_chgnet_layer_equals_a_hook_on_the_model(chgnet_layer1, chgnet_reference):
    _check(chgnet_layer1.atom_features(STRUCTURES), 64)
    for atoms, expected in zip(STRUCTURES, chgnet_reference["layer1"], strict=True):
        got = chgnet_layer1.atom_features([atoms])[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_chgnet_atom_fea_is_the_output_of_the_second_to_last_convolution(chgnet_reference):
    # chgnet 0.4: atom_fea is taken before the last of the 4 atom convolutions
    extractor = get_extractor("chgnet:0.3.0", layer=2)
    for atoms, expected in zip(STRUCTURES[:3], chgnet_reference["alone"], strict=False):
        got = extractor.atom_features([atoms])[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_chgnet_batches_equal_single_structures(chgnet_final, chgnet_layer1):
    for extractor in (chgnet_final, chgnet_layer1):
        batched = extractor.atom_features(STRUCTURES)
        for atoms, together in zip(STRUCTURES, batched, strict=True):
            alone = extractor.atom_features([atoms])[0]
            np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)


def test_chgnet_errors_name_the_structure(chgnet_final):
    americium = _named(Atoms("NaAm", positions=[[0, 0, 0], [0, 0, 2.5]]), "NaAm-dimer")
    with pytest.raises(
        ExtractionError, match=r"element Am \(Z=95\) in structure #1 \(NaAm-dimer\)"
    ):
        chgnet_final.atom_features([STRUCTURES[0], americium])
    argon = _named(Atoms("Ar"), "argon")
    with pytest.raises(ExtractionError, match=r"#0 \(argon\).*isolated atom"):
        chgnet_final.atom_features([argon])
    with pytest.raises(ValueError, match="must exceed the atom-graph cutoff"):
        get_extractor("chgnet:0.3.0", vacuum=5.0).load()


def test_chgnet_extractor_pickles_after_load(chgnet_final):
    chgnet_final.atom_features(STRUCTURES[:1])
    clone = pickle.loads(pickle.dumps(chgnet_final))
    assert clone._model is None and len(pickle.dumps(chgnet_final)) < 10_000
    np.testing.assert_array_equal(
        clone.atom_features(STRUCTURES[:2])[1], chgnet_final.atom_features(STRUCTURES[:2])[1]
    )


# --------------------------------------------------------------------------- SevenNet


def _sevenn_reference(model: str) -> list[np.ndarray]:
    """Node features entering the read-out: the output ``x`` of the module just before
    ``reduce_input_to_hidden``, from sevenn's own calculator running the full model."""
    from sevenn.calculator import SevenNetCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calculator = SevenNetCalculator(model=model, device="cpu")
    names = list(calculator.model._modules)
    before = calculator.model._modules[names[names.index("reduce_input_to_hidden") - 1]]
    captured = []
    before.register_forward_hook(lambda _m, _a, output: captured.append(output["x"].clone()))
    out = []
    for atoms in STRUCTURES:
        atoms = atoms.copy()
        atoms.calc = calculator
        captured.clear()
        atoms.get_potential_energy()
        assert len(captured) == 1
        out.append(captured[0].detach().numpy())
    return out


@pytest.fixture(scope="module", params=["7net-0", "7net-l3i5"])
def sevenn_case(request):
    return request.param, _unpickled(f"sevenn:{request.param}"), _sevenn_reference(request.param)


def test_sevenn_features_equal_the_model_own_readout_input(sevenn_case):
    _, extractor, reference = sevenn_case
    values = extractor.atom_features(STRUCTURES)
    _check(values, 128)
    for got, expected in zip(values, reference, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    batched_alone = [extractor.atom_features([atoms])[0] for atoms in STRUCTURES]
    for together, alone in zip(values, batched_alone, strict=True):
        np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
    assert len(extractor.elements) == 89 and 84 not in extractor.elements


def test_sevenn_full_forward_gives_the_same_features(sevenn_case):
    model, _, reference = sevenn_case
    if model != "7net-0":
        pytest.skip("one model is enough")
    full = get_extractor(f"sevenn:{model}", stop_at_hook=False)
    values = full.atom_features(STRUCTURES[:3] + STRUCTURES[:3])  # repeats: no stale cache
    for got, expected in zip(values, reference[:3] + reference[:3], strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_sevenn_uncovered_element_and_pickle(sevenn_case):
    _, extractor, _ = sevenn_case
    polonium = _named(bulk("Po", "sc", a=3.35), "alpha-Po")
    with pytest.raises(ExtractionError, match=r"element Po \(Z=84\) in structure #1 \(alpha-Po\)"):
        extractor.atom_features([STRUCTURES[2], polonium])
    clone = pickle.loads(pickle.dumps(extractor))
    assert clone.calculator is None
    np.testing.assert_array_equal(
        clone.atom_features(STRUCTURES[2:3])[0], extractor.atom_features(STRUCTURES[2:3])[0]
    )


def test_sevenn_elements_before_load_come_from_the_checkpoint():
    extractor = get_extractor("sevenn:7net-0")
    assert extractor.calculator is None
    assert extractor.elements == frozenset(range(1, 84)) | frozenset(range(89, 95))


# --------------------------------------------------------------------------- model files


FILE_CASES = [
    ("mace", "mace", "mace-torch", {"layer": -1}, "mace-MODEL-layer-1"),
    ("metatomic", "metatomic", "metatomic-torch", {}, "metatomic-MODEL"),
    (
        "metatomic",
        "metatomic",
        "metatomic-torch",
        {"output": "features"},
        "metatomic-MODEL-features",
    ),
    ("uma", "fairchem", "fairchem-core", {"task": "omol"}, "uma-MODEL-omol"),
]


@pytest.mark.parametrize(("prefix", "module", "pip", "options", "name"), FILE_CASES)
def test_model_file_specs(tmp_path, monkeypatch, prefix, module, pip, options, name):
    path = tmp_path / "MODEL.pt"
    path.write_bytes(b"not a real model")
    extractor = get_extractor(f"{prefix}:{path}", **options)
    assert extractor.name == name and extractor.elements is None
    clone = pickle.loads(pickle.dumps(extractor))
    meta = clone.metadata()
    assert meta["package"] == pip and meta["checkpoint_file"] == "MODEL.pt"
    monkeypatch.setitem(sys.modules, module, None)  # the package cannot be imported
    with pytest.raises(ImportError, match=rf"pip install {pip}"):
        clone.atom_features([STRUCTURES[0]])
    with pytest.raises(ValueError, match="no option 'vacuum'"):
        get_extractor(f"{prefix}:{path}", vacuum=10.0)


def test_missing_model_file_is_reported(tmp_path):
    extractor = get_extractor(f"mace:{tmp_path / 'absent.model'}")
    with pytest.raises(FileNotFoundError, match=r"absent\.model"):
        extractor.metadata()


@pytest.mark.parametrize(
    ("prefix", "module", "variable"),
    [
        ("mace", "mace", "FREDASK_MACE_MODEL"),
        ("metatomic", "metatomic.torch", "FREDASK_METATOMIC_MODEL"),
        ("uma", "fairchem.core", "FREDASK_UMA_MODEL"),
    ],
)
def test_model_file_real_run(prefix, module, variable):
    pytest.importorskip(module)
    path = os.environ.get(variable)
    if not path:
        pytest.skip(f"set {variable} to a local model file")
    extractor = _unpickled(f"{prefix}:{path}")
    structures = STRUCTURES[:3]
    values = extractor.atom_features(structures)
    for atoms, features in zip(structures, values, strict=True):
        assert features.shape[0] == len(atoms) and features.dtype == np.float32
    alone = extractor.atom_features(structures[1:2])[0]
    np.testing.assert_allclose(values[1], alone, rtol=0, atol=1e-5)


# The glue code of the three file-based extractors, against stand-ins of the packages
# (tiny modules with the documented calls; values known exactly).


def _known(numbers, width: int) -> np.ndarray:
    z = np.asarray(numbers, dtype=np.float64)[:, None]
    return z * np.arange(1, width + 1)


def _module(monkeypatch, name: str, **attributes):
    import types

    module = types.ModuleType(name)
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, name, module)
    return module


def test_mace_layers_from_get_descriptors(tmp_path, monkeypatch):
    class FakeMACECalculator:  # 2 interactions x 3 invariants, z_table H C O
        def __init__(self, model_paths, device, **kwargs):
            assert device == "cpu" and model_paths.endswith("mp.model") and not kwargs
            self.z_table = type("Z", (), {"zs": [1, 6, 8]})()
            self.models = [type("M", (), {"num_interactions": 2})()]
            self.default_dtype = "float64"

        def get_descriptors(self, atoms, invariants_only=True, num_layers=-1):
            return _known(atoms.numbers, 6)

    _module(monkeypatch, "mace")
    _module(monkeypatch, "mace.calculators", MACECalculator=FakeMACECalculator)
    path = tmp_path / "mp.model"
    path.write_bytes(b"weights")
    water = g2["H2O"]
    expected = _known(water.numbers, 6)
    for layer, columns in [(None, slice(0, 6)), (0, slice(0, 3)), (-1, slice(3, 6))]:
        extractor = _unpickled(f"mace:{path}", layer=layer, features="descriptors")
        got = extractor.atom_features([water])[0]
        np.testing.assert_array_equal(got, expected[:, columns].astype(np.float32))
        assert got.dtype == np.float32 and extractor.elements == frozenset({1, 6, 8})
    assert extractor.metadata()["model_dtype"] == "float64"
    with pytest.raises(ExtractionError, match=r"element N \(Z=7\)"):
        extractor.atom_features([g2["NH3"]])
    with pytest.raises(ValueError, match="layer 2 out of range"):
        get_extractor(f"mace:{path}", layer=2).load()


def test_metatomic_rows_follow_the_samples(tmp_path, monkeypatch):
    class Samples:
        def __init__(self, columns):
            self.columns = columns

        def column(self, name):
            return torch.tensor(self.columns[name])

    class FakeModel:
        def capabilities(self):
            outputs = {"energy": None, "features": None}
            return type(
                "C", (), {"outputs": outputs, "atomic_types": [1, 6, 8], "dtype": "float64"}
            )

    class FakeCalculator:
        def __init__(self, model, device):
            assert isinstance(model, FakeModel) and device == "cpu"

        def run_model(self, atoms, outputs):
            assert list(outputs) == ["features"] and outputs["features"].per_atom
            rows = [(s, a, z) for s, one in enumerate(atoms) for a, z in enumerate(one.numbers)]
            rows = rows[::-1]  # samples in any order
            values = torch.tensor(_known([z for *_, z in rows], 5))
            samples = Samples({"system": [s for s, *_ in rows], "atom": [a for _, a, _ in rows]})
            block = type("B", (), {"values": values, "samples": samples})()
            tensor_map = type("T", (), {"__len__": lambda self: 1, "block": lambda self: block})
            return {"features": tensor_map()}

    class FakeOutput:
        def __init__(self, per_atom):
            self.per_atom = per_atom

    _module(monkeypatch, "metatomic")
    _module(
        monkeypatch,
        "metatomic.torch",
        ModelOutput=FakeOutput,
        load_atomistic_model=lambda path, extensions_directory=None: FakeModel(),
    )
    _module(monkeypatch, "metatomic.torch.ase_calculator", MetatomicCalculator=FakeCalculator)
    path = tmp_path / "pet-mad.pt"
    path.write_bytes(b"weights")
    structures = [g2["H2O"], g2["CH4"], g2["CO2"]]
    extractor = _unpickled(f"metatomic:{path}", batch_size=2, output="features")
    assert extractor.name == "metatomic-pet-mad-features"
    for atoms, got in zip(structures, extractor.atom_features(structures), strict=True):
        np.testing.assert_array_equal(got, _known(atoms.numbers, 5).astype(np.float32))
    with pytest.raises(ValueError, match=r"no output 'mtt::aux::energy_last_layer_features'"):
        get_extractor(f"metatomic:{path}", output="mtt::aux::energy_last_layer_features").load()


def test_uma_hooks_the_energy_head_input(tmp_path, monkeypatch):
    from ase.calculators.calculator import Calculator, all_changes

    def head():
        module = torch.nn.Module()
        module.energy_block = torch.nn.Sequential(torch.nn.Linear(4, 1))
        return module

    class FakeUnit:  # replaces its heads on the first prediction, as merged MoLE heads do
        def __init__(self):
            self.model = torch.nn.Module()
            self.model.output_heads = torch.nn.ModuleDict({"energyandforcehead": head()})
            self.predictions = 0

        def predict(self, numbers):
            if self.predictions == 0:
                self.model.output_heads = torch.nn.ModuleDict({"energyandforcehead": head()})
            self.predictions += 1
            node = torch.tensor(_known(numbers, 4), dtype=torch.float32)
            block = self.model.output_heads["energyandforcehead"].energy_block
            return float(block(node).sum().detach())

    class FakeFAIRChemCalculator(Calculator):
        implemented_properties = ("energy",)

        def __init__(self, unit, task_name):
            super().__init__()
            assert task_name == "omol"
            self.unit = unit

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": self.unit.predict(self.atoms.numbers)}

    def load_predict_unit(path, inference_settings, device):
        assert device == "cpu" and inference_settings == "batch"
        return FakeUnit()

    _module(monkeypatch, "fairchem")
    pretrained = type("P", (), {"load_predict_unit": staticmethod(load_predict_unit)})
    _module(
        monkeypatch,
        "fairchem.core",
        FAIRChemCalculator=FakeFAIRChemCalculator,
        pretrained_mlip=pretrained,
    )
    path = tmp_path / "uma-s-1p1.pt"
    path.write_bytes(b"weights")
    extractor = _unpickled(f"uma:{path}", task="omol")
    structures = [g2["H2O"], g2["CH4"]]
    for atoms, got in zip(structures, extractor.atom_features(structures), strict=True):
        np.testing.assert_array_equal(got, _known(atoms.numbers, 4).astype(np.float32))
    assert extractor.metadata()["layer"] == (
        "last: input of the final Linear of the energy head's energy_block "
        "(output_heads.energyandforcehead.energy_block.0)"
    )
    assert pickle.loads(pickle.dumps(extractor))._unit is None


def test_preset_options_and_readiness(tmp_path):
    from fredask.extract.presets import ModelSpecError, check_ready, preset_options

    assert preset_options("chgnet:0.3.0") == ("layer", "vacuum", "batch_atoms", "device")
    assert preset_options("sevenn:7net-mf-0") == ("modal", "stop_at_hook", "device")
    assert preset_options("sevenn:7net-0") == ("stop_at_hook", "device")  # one fidelity
    assert preset_options("mace:any.model") == ("layer", "head", "features", "device")
    with pytest.raises(ModelSpecError, match="unknown model prefix 'orb'"):
        preset_options("orb:v3")
    with pytest.raises(ModelSpecError, match=r"mace-absent: (model file .*absent\.model|.*pip)"):
        check_ready(get_extractor(f"mace:{tmp_path / 'absent.model'}"))
    if importlib.util.find_spec("chgnet") is not None:
        check_ready(get_extractor("chgnet:0.3.0"))  # located, not imported or loaded


def test_cli_options_reach_the_presets():
    import argparse

    from fredask.cli.checks import CommandError
    from fredask.cli.models import add_model_arguments, build_extractors, model_options

    parser = argparse.ArgumentParser()
    add_model_arguments(parser)

    def extractors(specs, *argv):
        return build_extractors(specs, model_options(parser.parse_args(list(argv))))

    pytest.importorskip("sevenn")
    pytest.importorskip("chgnet")
    names = [e.name for e in extractors(["sevenn:7net-mf-0", "chgnet:0.3.0"], "--modal", "PBE")]
    assert names == ["sevenn-7net-mf-0-pbe", "chgnet-0.3.0"]
    (chgnet,) = extractors(["chgnet:0.3.0"], "--layer", "atom_fea", "--option", "vacuum=12")
    assert chgnet.name == "chgnet-0.3.0-atom-fea" and chgnet.vacuum == 12.0
    (chgnet,) = extractors(["chgnet:0.2.0"], "--option", "layer=-1")
    assert chgnet.layer == -1
    (sevenn,) = extractors(
        ["sevenn:7net-mf-0"], "--option", "modal=r2scan", "--option", "stop_at_hook=false"
    )
    assert sevenn.modal == "R2SCAN" and sevenn.stop_at_hook is False
    with pytest.raises(
        CommandError,
        match=r"no --model takes the option head \(chgnet:0\.3\.0 takes layer, vacuum, ",
    ):
        extractors(["chgnet:0.3.0"], "--option", "head=x")
    with pytest.raises(CommandError, match="--layer and --option layer= both given"):
        extractors(["chgnet:0.3.0"], "--layer", "1", "--option", "layer=2")
    with pytest.raises(CommandError, match=r"gives the features chgnet-0\.3\.0 twice"):
        extractors(["chgnet:0.3.0", "CHGNET:0.3.0"])


# --------------------------------------------------------------------------- devices

FILE_PRESETS = ("mace", "metatomic", "uma")


def _no_cuda(monkeypatch) -> None:
    """torch sees no CUDA device (as on this CPU-only build), whatever the machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _two_gpus(monkeypatch) -> None:
    """torch claims two CUDA devices; only for code that resolves devices, never uses them."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_device_strings_resolve(monkeypatch):
    from fredask.extract import ModelSpecError
    from fredask.extract.device import parse_device, torch_device

    assert [parse_device(d) for d in ("cpu", " CUDA ", "cuda:01", "Auto")] == [
        "cpu",
        "cuda",
        "cuda:1",
        "auto",
    ]
    _no_cuda(monkeypatch)
    assert torch_device("cpu") == "cpu" and torch_device("auto") == "cpu"
    for device in ("cuda", "cuda:0", "cuda:1"):
        with pytest.raises(
            ModelSpecError,
            match=rf"^chgnet-0\.3\.0: device '{device}' needs a CUDA device, but torch sees "
            r"none \(torch .*\); use cpu or auto$",
        ):
            torch_device(device, "chgnet-0.3.0")
    for device in ("tpu", "cuda:x", "cuda:-1", "mps", None, 0):
        with pytest.raises(
            ModelSpecError,
            match=r"^sevenn-7net-0: unknown device .*; use cpu, cuda \(gpu\), cuda:N or auto$",
        ):
            torch_device(device, "sevenn-7net-0")
    _two_gpus(monkeypatch)
    assert [torch_device(d) for d in ("auto", "cuda", "cuda:0", "cuda:1")] == [
        "cuda:0",
        "cuda:0",
        "cuda:0",
        "cuda:1",
    ]
    with pytest.raises(ModelSpecError, match=r"^m: device 'cuda:2': torch sees 2 CUDA devices"):
        torch_device("cuda:2", "m")


@pytest.mark.parametrize("spec", ["chgnet:0.3.0", "sevenn:7net-0", *FILE_PRESETS])
def test_every_preset_takes_a_checked_device(tmp_path, spec):
    from fredask.extract import ModelSpecError
    from fredask.extract.presets import preset_options

    if spec in FILE_PRESETS:
        spec = f"{spec}:{tmp_path / 'model.pt'}"
    assert preset_options(spec)[-1] == "device"
    assert get_extractor(spec).device == "cpu"  # today's behaviour is the default
    extractor = _unpickled(spec, device="CUDA:1")
    assert extractor.device == "cuda:1"
    name = get_extractor(spec).name
    with pytest.raises(ModelSpecError, match=rf"^{name}: unknown device 'tpu'"):
        get_extractor(spec, device="tpu")


def test_cuda_without_a_cuda_device_is_refused_naming_the_preset(monkeypatch):
    from fredask.extract import ModelSpecError

    _no_cuda(monkeypatch)
    for spec, name in [("chgnet:0.3.0", "chgnet-0.3.0"), ("sevenn:7net-0", "sevenn-7net-0")]:
        extractor = get_extractor(spec, device="cuda")  # built anywhere: checked where it loads
        with pytest.raises(ModelSpecError, match=rf"^{name}: device 'cuda' needs a CUDA device"):
            extractor.atom_features(STRUCTURES[:1])
        assert not extractor._loaded


def test_cpu_and_auto_give_todays_features(monkeypatch, chgnet_final, chgnet_reference):
    _no_cuda(monkeypatch)  # auto is the CPU here
    for device in ("cpu", "auto"):
        extractor = _unpickled("chgnet:0.3.0", device=device)
        values = extractor.atom_features(STRUCTURES)
        _check(values, 64)
        assert extractor.torch_device() == "cpu"
        assert next(extractor._model.parameters()).device.type == "cpu"
        for got, default, expected in zip(
            values,
            chgnet_final.atom_features(STRUCTURES),
            chgnet_reference["readout"],
            strict=True,
        ):
            np.testing.assert_array_equal(got, default)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    reference = _sevenn_reference("7net-0")
    default = get_extractor("sevenn:7net-0").atom_features(STRUCTURES[:3])
    auto = _unpickled("sevenn:7net-0", device="auto")
    values = auto.atom_features(STRUCTURES[:3])
    assert str(auto.calculator.device) == "cpu"
    for got, same, expected in zip(values, default, reference, strict=False):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, same)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_file_presets_load_onto_their_device(tmp_path, monkeypatch):
    """The device reaches each package's own API (stand-ins of the packages, no GPU used)."""
    import types

    seen = {}

    class MACECalculator:
        def __init__(self, model_paths, device, **kwargs):
            seen["mace"] = device
            self.z_table = types.SimpleNamespace(zs=[1, 8])
            self.models = [types.SimpleNamespace(num_interactions=2)]
            self.default_dtype = "float64"

    class Model:
        def capabilities(self):
            outputs = {"features": None, "mtt::aux::energy_last_layer_features": None}
            return types.SimpleNamespace(outputs=outputs, atomic_types=[1], dtype="f")

    class MetatomicCalculator:
        def __init__(self, model, device):
            seen["metatomic"] = device

    def load_predict_unit(path, inference_settings, device):
        seen["uma"] = (device, seen.get("current_cuda", 0))
        unit = types.SimpleNamespace(model=torch.nn.Module())
        unit.model.output_heads = torch.nn.ModuleDict({"e": torch.nn.Module()})
        unit.model.output_heads["e"].energy_block = torch.nn.Linear(2, 1)
        return unit

    class CudaDevice:  # stands in for torch.cuda.device: records the current device
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            seen["current_cuda"] = self.index

        def __exit__(self, *exc):
            seen["current_cuda"] = 0

    _module(monkeypatch, "mace")
    _module(monkeypatch, "mace.calculators", MACECalculator=MACECalculator)
    _module(monkeypatch, "metatomic")
    _module(
        monkeypatch,
        "metatomic.torch",
        ModelOutput=lambda per_atom: None,
        load_atomistic_model=lambda path, extensions_directory=None: Model(),
    )
    _module(monkeypatch, "metatomic.torch.ase_calculator", MetatomicCalculator=MetatomicCalculator)
    _module(monkeypatch, "fairchem")
    _module(
        monkeypatch,
        "fairchem.core",
        FAIRChemCalculator=lambda unit, task_name: None,
        pretrained_mlip=types.SimpleNamespace(load_predict_unit=load_predict_unit),
    )
    monkeypatch.setattr(torch.cuda, "device", CudaDevice)
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    _two_gpus(monkeypatch)
    for device, mace, uma in [
        ("cpu", "cpu", ("cpu", 0)),
        ("auto", "cuda:0", ("cuda", 0)),
        ("cuda", "cuda:0", ("cuda", 0)),
        ("cuda:1", "cuda:1", ("cuda", 1)),
    ]:
        seen.clear()
        for prefix in FILE_PRESETS:
            _unpickled(f"{prefix}:{path}", device=device).load()
        assert seen.pop("current_cuda", 0) == 0  # the context was left
        assert seen == {"mace": mace, "metatomic": mace, "uma": uma}


def test_cli_device_reaches_every_preset():
    import argparse

    from fredask.cli import models
    from fredask.cli.checks import CommandError
    from fredask.extract.device import DEVICE_CHOICES

    assert models.DEVICES == DEVICE_CHOICES
    parser = argparse.ArgumentParser()
    models.add_model_arguments(parser)
    pytest.importorskip("sevenn")
    specs = ["chgnet:0.3.0", "sevenn:7net-mf-0"]
    args = parser.parse_args(["--device", "AUTO", "--modal", "PBE"])
    models.check_device_argument(args)
    extractors = models.build_extractors(specs, models.model_options(args))
    assert [e.device for e in extractors] == ["auto", "auto"]
    args = parser.parse_args(["--modal", "PBE"])  # no --device: the presets' cpu
    assert [e.device for e in models.build_extractors(specs, models.model_options(args))] == [
        "cpu",
        "cpu",
    ]
    with pytest.raises(CommandError, match=r"^--device tpu: unknown device 'tpu'; use cpu, "):
        models.check_device_argument(parser.parse_args(["--device", "tpu"]))
    models.check_device_argument(parser.parse_args(["--device", "gpu"]))  # cuda's alias
    with pytest.raises(CommandError, match="--device and --option device= both given"):
        models.model_options(parser.parse_args(["--device", "cpu", "--option", "device=cuda"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")
def test_chgnet_on_cuda_equals_the_cpu(chgnet_final):
    extractor = _unpickled("chgnet:0.3.0", device="cuda")
    values = extractor.atom_features(STRUCTURES)
    assert extractor.torch_device() == "cuda:0"
    assert next(extractor._model.parameters()).device.type == "cuda"
    _check(values, 64)  # host numpy float32
    for got, expected in zip(values, chgnet_final.atom_features(STRUCTURES), strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    layer = _unpickled("chgnet:0.3.0", layer=1, device="cuda", batch_atoms=40)
    cpu = get_extractor("chgnet:0.3.0", layer=1, batch_atoms=40)
    for got, expected in zip(
        layer.atom_features(STRUCTURES), cpu.atom_features(STRUCTURES), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")
def test_sevenn_on_cuda_equals_the_cpu():
    cpu = get_extractor("sevenn:7net-0").atom_features(STRUCTURES)
    extractor = _unpickled("sevenn:7net-0", device="cuda")
    values = extractor.atom_features(STRUCTURES)
    assert str(extractor.calculator.device) == "cuda:0"
    _check(values, 128)
    for got, expected in zip(values, cpu, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
