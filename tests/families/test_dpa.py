"""DPA (deepmd-kit, PyTorch backend): ``dpa:PATH`` against ``DeepPot`` on tiny DPA-3 models.

The models are built with random weights from deepmd-kit's own config
(``deepmd.utils.argcheck.model_args`` normalises it, ``deepmd.pt.model.model.
get_model`` builds it, ``ModelWrapper`` saves a checkpoint as training does)
and frozen with deepmd's ``freeze`` (what ``dp --pt freeze`` runs).  Their
type map lists the 12 elements in a deliberately scrambled order, so that a
per-structure numbering of the elements gives other features.
"""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest

pytest.importorskip("deepmd", reason="needs deepmd-kit; tests/families/run builds .venv-dpa")

from conftest import ELEMENTS, assert_rows_equal, extract_rows

#: Neither alphabetical nor by atomic number.
TYPE_MAP = ["Cu", "O", "H", "Si", "Na", "C", "Cl", "Li", "Al", "N", "Mg", "F"]


def _config(seed: int) -> dict:
    """A tiny DPA-3 energy model (one repflow layer, 4 Å cutoff), normalised by deepmd."""
    from deepmd.utils.argcheck import model_args

    raw = {
        "type_map": TYPE_MAP,
        "descriptor": {
            "type": "dpa3",
            "repflow": {
                "n_dim": 8, "e_dim": 6, "a_dim": 4, "nlayers": 1, "axis_neuron": 2,
                "e_rcut": 4.0, "e_rcut_smth": 3.5, "e_sel": 40,
                "a_rcut": 3.5, "a_rcut_smth": 3.0, "a_sel": 16,
            },
            "seed": seed,
        },
        "fitting_net": {"neuron": [8, 8], "seed": seed},
    }
    return model_args().normalize_value(raw, trim_pattern="_*")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """``single.pth`` (frozen), ``multi.pt`` (two-branch checkpoint), ``multi-omat.pth``."""
    import torch

    torch.set_num_threads(1)
    saved = os.environ.get("DEVICE")
    os.environ["DEVICE"] = "cpu"  # deepmd fixes its device when deepmd.pt is first imported
    try:
        from deepmd.pt.entrypoints.main import freeze
    finally:
        if saved is None:
            os.environ.pop("DEVICE")
        else:
            os.environ["DEVICE"] = saved
    from deepmd.pt.model.model import get_model
    from deepmd.pt.train.wrapper import ModelWrapper

    folder = tmp_path_factory.mktemp("dpa")
    config = _config(1)
    wrapper = ModelWrapper(get_model(copy.deepcopy(config)), model_params=config)
    torch.save({"model": wrapper.state_dict()}, folder / "single.pt")
    freeze(str(folder / "single.pt"), str(folder / "single.pth"))
    branches = {"omat": _config(2), "mptrj": _config(3)}
    models = {key: get_model(copy.deepcopy(value)) for key, value in branches.items()}
    wrapper = ModelWrapper(models, model_params={"model_dict": branches})
    torch.save({"model": wrapper.state_dict()}, folder / "multi.pt")
    freeze(str(folder / "multi.pt"), str(folder / "multi-omat.pth"), head="omat")
    return {key: folder / f"{key}" for key in ("single.pth", "multi.pt", "multi-omat.pth")}


@pytest.fixture(scope="module")
def reference(models):
    """``DeepPot`` of each model file (and head), loaded once."""
    from deepmd.infer import DeepPot

    cache = {}

    def get(key: str, head: str | None = None):
        if (key, head) not in cache:
            cache[key, head] = DeepPot(str(models[key]), head=head)
        return cache[key, head]

    return get


def _types(dp, atoms) -> np.ndarray:
    """Atom types as indices into the model's own type map."""
    type_map = dp.get_type_map()
    return np.array([type_map.index(symbol) for symbol in atoms.get_chemical_symbols()])


def _paper_types(atoms) -> np.ndarray:
    """The paper script's numbering: index in the sorted set of the structure's symbols."""
    symbols = atoms.get_chemical_symbols()
    return np.array([sorted(set(symbols)).index(symbol) for symbol in symbols])


def _evaluate(dp, structures, method="eval_fitting_last_layer", types=_types) -> list:
    out = []
    for atoms in structures:
        cell = atoms.cell.array.reshape(1, 9) if atoms.pbc.any() else None
        values = getattr(dp, method)(atoms.positions.reshape(1, -1), cell, types(dp, atoms))
        out.append(np.asarray(values).reshape(len(atoms), -1))
    return out


def _max_difference(rows, expected) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(rows, expected, strict=True))


def test_type_map_is_scrambled():
    assert sorted(TYPE_MAP) == sorted(ELEMENTS)
    assert TYPE_MAP != sorted(TYPE_MAP) and TYPE_MAP != list(ELEMENTS)


def test_fitting_last_layer_matches_deeppot(models, reference, structures, tmp_path):
    rows, meta = extract_rows(f"dpa:{models['single.pth']}", structures, tmp_path)
    dp = reference("single.pth")
    expected = _evaluate(dp, structures)
    assert_rows_equal(rows, expected)
    assert rows[0].shape[1] == 8  # fitting_net neuron [8, 8]
    print(f"fitting_last_layer: max |diff| {_max_difference(rows, expected):.2e}")
    assert meta["model"] == "dpa-single"
    assert meta["layer"] == "DeepPot.eval_fitting_last_layer: last hidden layer of the fitting net"
    assert meta["type_map"] == TYPE_MAP
    assert meta["model_dtype"] == "float64"


def test_descriptor_output(models, reference, structures, tmp_path):
    rows, meta = extract_rows(
        f"dpa:{models['single.pth']}", structures, tmp_path, "--option", "output=descriptor"
    )
    expected = _evaluate(reference("single.pth"), structures, "eval_descriptor")
    assert_rows_equal(rows, expected)
    assert rows[0].shape[1] == 8  # the repflow n_dim
    assert meta["model"] == "dpa-single-descriptor"
    assert meta["layer"] == "DeepPot.eval_descriptor: per-atom output of the descriptor"


def test_head_of_multitask_checkpoint(models, reference, structures, tmp_path):
    spec = f"dpa:{models['multi.pt']}"
    rows, meta = extract_rows(spec, structures, tmp_path, "--option", "head=omat")
    expected = _evaluate(reference("multi.pt", "omat"), structures)
    assert_rows_equal(rows, expected)
    assert meta["model"] == "dpa-multi-omat" and meta["head"] == "omat"
    assert meta["layer"].endswith("of head omat")
    # the branch frozen by `dp --pt freeze --head omat` gives the same features ...
    assert_rows_equal(rows, _evaluate(reference("multi-omat.pth"), structures))
    # ... and the other branch does not
    other = _evaluate(reference("multi.pt", "mptrj"), structures)
    assert _max_difference(rows, other) > 1e-2


def test_paper_numbering_gives_other_features(reference, structures):
    """The paper's script numbered each structure's elements itself: wrong elements for DPA."""
    dp = reference("single.pth")
    methanol = next(a for a in structures if a.info["name"] == "molecule-CH3OH")
    (right,) = _evaluate(dp, [methanol])
    (paper,) = _evaluate(dp, [methanol], types=lambda _dp, atoms: _paper_types(atoms))
    assert list(_paper_types(methanol)) != list(_types(dp, methanol))
    assert float(np.abs(right - paper).max()) > 1e-2


def _one_line_error(spec, structures, folder, *options) -> str:
    with pytest.raises(SystemExit) as info:
        extract_rows(spec, structures, folder, *options)
    message = str(info.value.code)
    assert "\n" not in message
    return message


def test_uncovered_element_is_one_line(models, structures, tmp_path):
    from ase.build import bulk

    iron = bulk("Fe", "bcc", a=2.87)
    iron.info["name"] = "crystal-Fe"
    message = _one_line_error(f"dpa:{models['single.pth']}", [structures[0], iron], tmp_path)
    assert "dpa-single does not cover element Fe (Z=26) in structure #1" in message


@pytest.mark.parametrize(
    ("key", "options", "wanted"),
    [
        ("single.pth", ("--option", "output=embedding"), "unknown output 'embedding'"),
        ("single.pth", ("--option", "head=omat"), "not a multi-task checkpoint"),
        ("multi.pt", (), "Head must be set for multitask model"),
        ("multi.pt", ("--option", "head=pbe"), "No head or alias named pbe"),
        ("single.pth", ("--device", "cuda"), "needs a CUDA device"),
    ],
)
def test_bad_options_are_one_line(models, structures, tmp_path, key, options, wanted):
    import torch

    if wanted == "needs a CUDA device" and torch.cuda.is_available():
        pytest.skip("torch sees a CUDA device here")
    message = _one_line_error(f"dpa:{models[key]}", structures[:1], tmp_path, *options)
    assert wanted in message
