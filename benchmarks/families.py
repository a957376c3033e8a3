"""Extraction throughput of the paper's four model families, each in its own environment.

Usage (from the repository root; each family runs in the environment
``tests/families/run`` builds for it)::

    .venv-mace/bin/python benchmarks/families.py mace
    .venv-metatomic/bin/python benchmarks/families.py metatomic
    .venv-dpa/bin/python benchmarks/families.py dpa
    .venv-uma/bin/python benchmarks/families.py uma
    .venv/bin/python benchmarks/families.py --report   # families.md from the JSON files
    # options: --size paper|tiny (default paper), --n-structures 120,
    #          --data-dir benchmarks/_data, --results-dir benchmarks/results

Smoke runs, as checked (a scratch results folder, so that nothing lands in
``benchmarks/results``; the tiny models, then the paper-size ones on 2 structures)::

    .venv-mace/bin/python benchmarks/families.py mace --size tiny --results-dir /tmp/fam-tiny
    .venv-metatomic/bin/python benchmarks/families.py metatomic --size tiny \
        --results-dir /tmp/fam-tiny
    .venv-dpa/bin/python benchmarks/families.py dpa --size tiny --results-dir /tmp/fam-tiny
    .venv-uma/bin/python benchmarks/families.py uma --size tiny --results-dir /tmp/fam-tiny
    .venv/bin/python benchmarks/families.py --report --results-dir /tmp/fam-tiny
    .venv-mace/bin/python benchmarks/families.py mace --n-structures 2 --results-dir /tmp/fam-2
    .venv-metatomic/bin/python benchmarks/families.py metatomic --n-structures 2 \
        --results-dir /tmp/fam-2
    .venv-dpa/bin/python benchmarks/families.py dpa --n-structures 2 --results-dir /tmp/fam-2
    .venv-uma/bin/python benchmarks/families.py uma --n-structures 2 --results-dir /tmp/fam-2
    .venv/bin/python benchmarks/families.py --report --results-dir /tmp/fam-2

What one family's run does:

1. **Model**: built with random weights through the family's own package, the way
   ``tests/families/test_<family>.py`` builds its tiny one, and saved to the file the
   preset loads (a scratch folder under ``--data-dir``, removed at the end; build s
   includes importing the package).
   ``--size paper`` uses the published hyper-parameters of the paper's model
   (MACE-MP-0b3-medium, PET-MAD v1.0, DPA-3.1-3M, UMA-S-1.1; see :data:`SOURCES`
   and each result's ``size_note`` for what is taken from where and what is
   assumed); ``--size tiny`` the tests' tiny models.
2. **Structures**: the ASE structures of :func:`fredask.store.datasets.shipped_structures`
   (G2, S22, dcdft; pymatgen's AFLOW set is left out, the family environments do
   not install pymatgen) without short bonds (:func:`~fredask.store.datasets.
   physical_structures`, as ``fredask demo``), with elements that all four paper
   models cover (Z <= 83) and the model covers, ``--n-structures`` of them evenly
   spaced (``numpy.linspace`` over that list): the same structures for every family
   at paper size (120: 917 atoms).
3. **Timing**, one thread (``OMP/MKL/OPENBLAS/DP_*_THREADS=1``, set before any import;
   ``torch.set_num_threads(1)``): ``extractor.load()`` (load s); a warm-up, the first
   structure through ``fredask.extract.runner.extract(..., client="sync")`` into a
   one-structure store (warm-up s: the runner's probe and its chunk, so two model
   calls; deepmd's TorchScript model needs both); then the timed run, the same
   runner into a fresh store of all the structures (wall time, including the
   runner's probe of the first structure and the store writes). atoms/s and
   structures/s are the store's atoms and structures over that wall time. The
   default of 120 structures keeps a paper-size run of any family under about two
   minutes on one core (UMA-S, the slowest, did about 14 atoms/s on 24 structures
   on a busy 2-core machine).

Results: ``families_<family>.json`` in ``--results-dir`` (the parameters, the
feature width, the times, the hyper-parameters and their sources, the versions of
python, torch and the family's packages, the machine and its load average at
start and end); ``--report`` gathers every ``families_*.json`` there into
``families.md``. Run the paper-size timings on an otherwise idle machine.
"""

from __future__ import annotations

import os

# one thread, set before numpy, torch and the model packages load
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["NUMEXPR_NUM_THREADS"] = "1"
os.environ["DP_INTRA_OP_PARALLELISM_THREADS"] = "1"
os.environ["DP_INTER_OP_PARALLELISM_THREADS"] = "1"

import argparse
import copy
import json
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fredask.bench.driver import argument_values, directory_arguments, log
from fredask.bench.measure import load_average, machine, versions
from fredask.bench.report import fmt, table

if TYPE_CHECKING:
    from fredask.store import FeatureStore

HERE = Path(__file__).resolve().parent
FAMILIES = ("mace", "metatomic", "dpa", "uma")
SIZES = ("paper", "tiny")
DEFAULT_N_STRUCTURES = 120

#: The paper's model of each family.
PAPER_MODELS = {
    "mace": "MACE-MP-0b3-medium",
    "metatomic": "PET-MAD v1.0",
    "dpa": "DPA-3.1-3M",
    "uma": "UMA-S-1.1",
}

#: The pip distributions whose versions are recorded, per family.
PACKAGES = {
    "mace": ("mace-torch", "e3nn"),
    "metatomic": ("metatomic-torch", "metatomic-ase", "metatrain", "metatensor-torch"),
    "dpa": ("deepmd-kit",),
    "uma": ("fairchem-core",),
}

#: Elements of the tests' tiny models (``tests/families/conftest.py``).
TINY_ELEMENTS = (1, 3, 6, 7, 8, 9, 11, 12, 13, 14, 17, 29)

#: Elements all four paper models cover (MACE-MP: Z 1-83, 89-94; PET-MAD: 85 up to
#: Rn; DPA-3.1: the periodic table; UMA: Z < 100).
COMMON_ELEMENTS = frozenset(range(1, 84))

#: Where the paper-size hyper-parameters come from.
SOURCES = {
    "mace": [
        "github.com/ACEsuit/mace-mp mace_mp_0b3/mace-mp0-b3.sh: the MACE-MP-0b3 training "
        "command (model MACE, RealAgnosticDensity[Residual]InteractionBlock, 2 interactions, "
        "correlation 3, max_ell 3, r_max 6.0, max_L 1, num_channels 128, num_radial_basis 10, "
        "MLP_irreps 16x0e, pair_repulsion, Agnesi distance transform, float64)",
        "mace-torch 0.3.16 mace/tools/arg_parser.py: the defaults of the flags the script "
        "does not set (radial_MLP [64, 64, 64], num_cutoff_basis 5, gate silu, bessel)",
        "github.com/ACEsuit/mace-mp README.md: 89 chemical elements",
    ],
    "metatomic": [
        "github.com/metatensor/metatrain@0060af98 src/metatrain/pet/default-hypers.yaml: "
        "cutoff 4.5, cutoff_width 0.2, d_pet 128, d_head 128, d_feedforward 512, "
        "num_heads 8, num_attention_layers 2, num_gnn_layers 2 (the PET of early 2025)",
        "metatrain 2026.4.1 metatrain/pet/checkpoints.py (model_update_v7_v8, v9_v10): "
        "what old standard PET checkpoints such as PET-MAD v1.0 are upgraded with: "
        "LayerNorm, SiLU, d_node = d_pet, PostLN, residual featurizer, Cosine cutoff",
        "github.com/lab-cosmo/pet-mad docs/src/models.rst: PET-MAD-1 (MAD-1.0, 85 elements)",
    ],
    "dpa": [
        "github.com/deepmodeling/deepmd-kit@bc902da dpa_adapt/trainer.py "
        "DPA3_DESCRIPTOR_DEFAULT ('Must match DPA-3.1-3M exactly. Source: ckpt "
        "_extra_state.model_params.shared_dict'): the descriptor",
        "deepmd-kit dpa_adapt/config/manager.py: dim_case_embd 31 of the DPA-3.1-3M "
        "checkpoint's fitting nets; dpa_adapt/mft.py: its type map covers the periodic table",
        "deepmd-kit examples/water/dpa3/input_torch.json: fitting_net neuron [240, 240, 240], "
        "resnet_dt, float32",
    ],
    "uma": [
        "github.com/facebookresearch/fairchem configs/uma/training_release/backbone/"
        "K4L2.yaml: the UMA-S backbone (sphere_channels 128, lmax 2, mmax 2, 4 layers, "
        "hidden_channels 128, edge_channels 128, 64 gaussians, spectral ff, gate, "
        "rms_norm_sh, rand_emb, composition embedding, 100 elements)",
        "fairchem configs/uma/training_release/uma_sm_direct_pretrain.yaml (32 MoLE "
        "experts, cutoff 6, the 5 datasets) and uma_sm_conserve_finetune.yaml "
        "(max_neighbors 300, conserving forces, stress, the energy head)",
        "fairchem README.md: uma-s-1p1, 6.6M/150M active/total params; fairchem-core "
        "2.24.0 fairchem/core/models/uma/compat.py: backbone.model_version 1.1",
    ],
}


@dataclass
class BuiltModel:
    """A model file with random weights, and what describes it.

    Attributes
    ----------
    spec : str
        The fredask model spec of the file (``"mace:/.../x.model"``).
    parameters : int
        Parameters of the model as built (for DPA one energy branch).
    hypers : dict
        The hyper-parameters, as JSON values.
    size_note : str
        Where the size comes from, what is assumed.
    file_mib : float
        Size of the model file.
    sources : list of str
        Where the hyper-parameters come from.
    """

    spec: str
    parameters: int
    hypers: dict
    size_note: str
    file_mib: float = 0.0
    sources: list[str] = field(default_factory=list)


def parameter_count(module) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


def _jsonable(value: object) -> object:
    """``value`` with classes, functions, irreps and arrays as JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return getattr(value, "__name__", None) or str(value)


def _built(
    spec: str, path: Path, model, hypers: dict, note: str, family: str, size: str
) -> BuiltModel:
    """The :class:`BuiltModel` of ``model``, saved at ``path`` (preset prefix ``spec``)."""
    return BuiltModel(
        spec=f"{spec}:{path}",
        parameters=parameter_count(model),
        hypers=_jsonable(hypers),
        size_note=note,
        file_mib=path.stat().st_size / 2**20,
        sources=SOURCES[family] if size == "paper" else ["tests/families/test_" + family + ".py"],
    )


# ----------------------------------------------------------------------------- MACE

#: The model flags of ``mace_mp_0b3/mace-mp0-b3.sh``.
MACE_MP_0B3_FLAGS = (
    "--model=MACE",
    "--interaction_first=RealAgnosticDensityInteractionBlock",
    "--interaction=RealAgnosticDensityResidualInteractionBlock",
    "--num_interactions=2",
    "--correlation=3",
    "--max_ell=3",
    "--r_max=6.0",
    "--max_L=1",
    "--num_channels=128",
    "--num_radial_basis=10",
    "--MLP_irreps=16x0e",
    "--pair_repulsion",
    "--distance_transform=Agnesi",
    "--default_dtype=float64",
)

#: MPtrj's 89 elements (assumed list: Z 1-83 and 89-94).
MACE_MP_ELEMENTS = (*range(1, 84), *range(89, 95))


def mean_neighbours(structures: list, cutoff: float) -> float:
    """Mean number of neighbours within ``cutoff`` per atom (MACE's ``avg_num_neighbors``)."""
    from ase.neighborlist import neighbor_list

    counts = [len(neighbor_list("i", atoms, cutoff)) for atoms in structures]
    return float(sum(counts) / sum(len(atoms) for atoms in structures))


def build_mace(size: str, folder: Path, structures: list) -> BuiltModel:
    """A ``ScaleShiftMACE`` with random weights, saved as a ``.model`` file.

    Parameters
    ----------
    size : {"paper", "tiny"}
    folder : pathlib.Path
        Where the model file is written.
    structures : list of ase.Atoms
        The benchmark's structures (for ``avg_num_neighbors``).

    Returns
    -------
    BuiltModel
    """
    import torch  # noqa: I001 (mace first: it lets e3nn's import-time torch.load run)
    from mace import modules, tools
    from mace.tools import torch_tools
    from e3nn import o3

    if size == "tiny":  # tests/families/test_mace.py
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        numbers = list(TINY_ELEMENTS)
        config = dict(
            r_max=4.5, num_bessel=6, num_polynomial_cutoff=5, max_ell=2,
            interaction_cls=block, interaction_cls_first=block, num_interactions=2,
            num_elements=len(numbers), hidden_irreps=o3.Irreps("8x0e+8x1o"),
            MLP_irreps=o3.Irreps("4x0e"), gate=torch.nn.functional.silu,
            atomic_energies=np.linspace(-1.0, -3.0, len(numbers)), avg_num_neighbors=8.0,
            atomic_numbers=numbers, correlation=2, radial_MLP=[8, 8],
            atomic_inter_scale=1.0, atomic_inter_shift=0.0,
        )  # fmt: skip
        note, name = "the tests' tiny MACE (8x0e+8x1o, 2 interactions)", "tiny"
    else:
        flags = tools.build_default_arg_parser().parse_args(
            ["--name=mace-mp0-b3", "--train_file=unused.xyz", *MACE_MP_0B3_FLAGS]
        )
        flags, _ = tools.check_args(flags)  # num_channels, max_L -> hidden_irreps
        numbers = list(MACE_MP_ELEMENTS)
        neighbours = mean_neighbours(structures, flags.r_max)
        config = dict(  # what mace's configure_model and _build_model pass for --model=MACE
            r_max=flags.r_max, num_bessel=flags.num_radial_basis,
            num_polynomial_cutoff=flags.num_cutoff_basis, max_ell=flags.max_ell,
            interaction_cls=modules.interaction_classes[flags.interaction],
            interaction_cls_first=modules.interaction_classes[flags.interaction_first],
            num_interactions=flags.num_interactions, num_elements=len(numbers),
            hidden_irreps=o3.Irreps(flags.hidden_irreps),
            atomic_energies=np.zeros((1, len(numbers))),
            apply_cutoff=flags.apply_cutoff, avg_num_neighbors=neighbours,
            atomic_numbers=numbers, pair_repulsion=flags.pair_repulsion,
            distance_transform=flags.distance_transform, correlation=flags.correlation,
            gate=modules.gate_dict[flags.gate], MLP_irreps=o3.Irreps(flags.MLP_irreps),
            atomic_inter_scale=[1.0], atomic_inter_shift=[0.0],
            radial_MLP=json.loads(flags.radial_MLP), radial_type=flags.radial_type,
            heads=["Default"],
        )  # fmt: skip
        note = (
            "MACE-MP-0b3-medium from its published training flags (mace-mp0-b3.sh; medium = "
            "128 channels, max_L 1); built the same way, MACE-MP-0 medium "
            "(2023-12-03-mace-128-L1.sh) has 4,688,656 parameters, published 4.69M. "
            "Assumed: the 89 elements Z 1-83, 89-94; avg_num_neighbors (a training-set "
            f"statistic) = {neighbours:.1f}, the mean over the benchmark's structures; "
            "atomic energies 0, scale 1, shift 0"
        )
        name = "mace-mp-0b3-medium"
    with torch_tools.default_dtype("float64"):
        torch.manual_seed(0)
        model = modules.ScaleShiftMACE(**config)
    path = folder / f"{name}.model"
    torch.save(model, path)
    return _built("mace", path, model, config, note, "mace", size)


# ------------------------------------------------------------------------ metatomic

#: PET-MAD v1.0's hyper-parameters (see :data:`SOURCES`).
PET_MAD_HYPERS = dict(
    cutoff=4.5, cutoff_width=0.2, cutoff_function="Cosine", d_pet=128, d_head=128,
    d_node=128, d_feedforward=512, num_heads=8, num_attention_layers=2, num_gnn_layers=2,
    normalization="LayerNorm", activation="SiLU", transformer_type="PostLN",
    featurizer_type="residual", zbl=False, num_neighbors_adaptive=None,
)  # fmt: skip

#: MAD-1.0's 85 elements (assumed list: Z 1-86 without At).
PET_MAD_ELEMENTS = tuple(z for z in range(1, 87) if z != 85)


def build_metatomic(size: str, folder: Path, structures: list) -> BuiltModel:
    """A PET with random weights, exported by metatrain as a metatomic model.

    Parameters
    ----------
    size : {"paper", "tiny"}
    folder : pathlib.Path
        Where the model file is written.
    structures : list of ase.Atoms
        The benchmark's structures (unused).

    Returns
    -------
    BuiltModel
    """
    import torch
    from metatrain.pet import PET
    from metatrain.utils.architectures import get_default_hypers
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import get_energy_target_info

    hypers = copy.deepcopy(get_default_hypers("pet")["model"])
    if size == "tiny":  # tests/families/test_metatomic.py
        hypers.update(
            cutoff=4.5, d_pet=8, d_node=12, d_head=6, d_feedforward=8, num_heads=2,
            num_attention_layers=1, num_gnn_layers=2,
        )  # fmt: skip
        numbers, name = list(TINY_ELEMENTS), "pet-tiny"
        note = "the tests' tiny PET (d_pet 8, d_node 12, d_head 6, 2 GNN layers)"
    else:
        hypers.update(PET_MAD_HYPERS)
        numbers, name = list(PET_MAD_ELEMENTS), "pet-mad"
        note = (
            "PET-MAD v1.0 keeps its hyper-parameters in its checkpoint only: metatrain's PET "
            "defaults of early 2025 with the settings metatrain's upgrade code gives old PET "
            "checkpoints (residual featurizer: 2 GNN layers x node and edge heads x d_head "
            "128 = 512 last-layer features, as PET-MAD v1.0.2's); its parameter count is not "
            "published there. Assumed: the 85 elements Z 1-86 without At; one energy target"
        )
    energy = get_energy_target_info("energy", {"quantity": "energy", "unit": "eV"})
    info = DatasetInfo(length_unit="Angstrom", atomic_types=numbers, targets={"energy": energy})
    torch.manual_seed(0)
    model = PET(hypers, info)
    path = folder / f"{name}.pt"
    model.export().save(str(path))
    return _built("metatomic", path, model, hypers, note, "metatomic", size)


# ------------------------------------------------------------------------------ DPA

#: The descriptor of DPA-3.1-3M (deepmd-kit's ``dpa_adapt/trainer.py``).
DPA_3_1_DESCRIPTOR = {
    "type": "dpa3",
    "repflow": {
        "n_dim": 128, "e_dim": 64, "a_dim": 32, "nlayers": 16,
        "e_rcut": 6.0, "e_rcut_smth": 5.3, "e_sel": 1200,
        "a_rcut": 4.0, "a_rcut_smth": 3.5, "a_sel": 300,
        "axis_neuron": 4, "skip_stat": True, "a_compress_rate": 1, "a_compress_e_rate": 2,
        "a_compress_use_split": True, "update_angle": True, "smooth_edge_update": True,
        "use_dynamic_sel": True, "sel_reduce_factor": 10.0, "update_style": "res_residual",
        "update_residual": 0.1, "update_residual_init": "const", "n_multi_edge_message": 1,
        "optim_update": True, "use_exp_switch": True, "fix_stat_std": 0.3,
    },
    "activation_function": "silut:3.0",
    "precision": "float32",
    "use_tebd_bias": False,
    "concat_output_tebd": False,
    "use_econf_tebd": False,
    "seed": 1,
}  # fmt: skip

#: One energy branch of DPA-3.1-3M (its activation assumed the descriptor's).
DPA_3_1_FITTING = {
    "neuron": [240, 240, 240],
    "resnet_dt": True,
    "precision": "float32",
    "activation_function": "silut:3.0",
    "dim_case_embd": 31,
    "seed": 1,
}

#: The tests' type map (tests/families/test_dpa.py), deliberately scrambled.
DPA_TINY_TYPE_MAP = ["Cu", "O", "H", "Si", "Na", "C", "Cl", "Li", "Al", "N", "Mg", "F"]


def build_dpa(size: str, folder: Path, structures: list) -> BuiltModel:
    """A DPA-3 energy model with random weights, frozen as ``dp --pt freeze`` does.

    Parameters
    ----------
    size : {"paper", "tiny"}
    folder : pathlib.Path
        Where the model file is written.
    structures : list of ase.Atoms
        The benchmark's structures (unused).

    Returns
    -------
    BuiltModel
    """
    import torch
    from ase.data import chemical_symbols

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
    from deepmd.utils.argcheck import model_args

    if size == "tiny":  # tests/families/test_dpa.py
        raw = {
            "type_map": DPA_TINY_TYPE_MAP,
            "descriptor": {
                "type": "dpa3",
                "repflow": {
                    "n_dim": 8, "e_dim": 6, "a_dim": 4, "nlayers": 1, "axis_neuron": 2,
                    "e_rcut": 4.0, "e_rcut_smth": 3.5, "e_sel": 40,
                    "a_rcut": 3.5, "a_rcut_smth": 3.0, "a_sel": 16,
                },
                "seed": 1,
            },
            "fitting_net": {"neuron": [8, 8], "seed": 1},
        }  # fmt: skip
        name, note = "dpa-tiny", "the tests' tiny DPA-3 (1 repflow layer, n_dim 8)"
    else:
        raw = {
            "type_map": list(chemical_symbols[1:119]),
            "descriptor": DPA_3_1_DESCRIPTOR,
            "fitting_net": DPA_3_1_FITTING,
        }
        name = "dpa-3.1-3m"
        note = (
            "DPA-3.1-3M's descriptor as recorded from its checkpoint in deepmd-kit's "
            "dpa_adapt, and one of its 31 energy branches (dim_case_embd 31), frozen as "
            "`dp --pt freeze --head` gives one branch. Assumed: the fitting net's activation "
            "(silut:3.0, the descriptor's); type map H-Og"
        )
    config = model_args().normalize_value(copy.deepcopy(raw), trim_pattern="_*")
    torch.manual_seed(0)
    model = get_model(copy.deepcopy(config))
    wrapper = ModelWrapper(model, model_params=config)
    torch.save({"model": wrapper.state_dict()}, folder / f"{name}.pt")
    path = folder / f"{name}.pth"
    freeze(str(folder / f"{name}.pt"), str(path))
    return _built("dpa", path, model, raw, note, "dpa", size)


# ------------------------------------------------------------------------------ UMA

UMA_DATASETS = ["oc20", "omol", "omat", "odac", "omc"]

#: The UMA-S-1.1 backbone (see :data:`SOURCES`).
UMA_S_BACKBONE = {
    "model": "fairchem.core.models.uma.escn_moe.eSCNMDMoeBackbone",
    "model_version": 1.1,
    "moe_dropout": 0.05, "moe_layer_type": "pytorch", "num_experts": 32,
    "use_composition_embedding": True, "use_global_embedding": False,
    "max_num_elements": 100, "sphere_channels": 128, "lmax": 2, "mmax": 2,
    "otf_graph": True, "max_neighbors": 300, "use_pbc": True, "use_pbc_single": True,
    "cutoff": 6.0, "edge_channels": 128, "distance_function": "gaussian",
    "num_distance_basis": 64, "regress_forces": True, "regress_stress": True,
    "direct_forces": False, "num_layers": 4, "hidden_channels": 128,
    "norm_type": "rms_norm_sh", "act_type": "gate", "ff_type": "spectral",
    "chg_spin_emb_type": "rand_emb", "cs_emb_grad": True, "dataset_list": UMA_DATASETS,
}  # fmt: skip

#: The tests' tiny backbone (tests/families/test_uma.py).
UMA_TINY_BACKBONE = {
    "model": "fairchem.core.models.uma.escn_moe.eSCNMDMoeBackbone",
    "model_version": 1.1, "max_num_elements": 100, "sphere_channels": 8, "lmax": 2,
    "mmax": 2, "otf_graph": True, "max_neighbors": 30, "cutoff": 4.5, "edge_channels": 8,
    "distance_function": "gaussian", "num_distance_basis": 16, "direct_forces": False,
    "regress_forces": True, "regress_stress": True, "num_layers": 2, "hidden_channels": 12,
    "norm_type": "rms_norm_sh", "act_type": "gate", "ff_type": "grid",
    "chg_spin_emb_type": "rand_emb", "dataset_list": ["oc20", "omat", "omol", "odac", "omc"],
    "num_experts": 4, "use_composition_embedding": True, "moe_type": "so2",
}  # fmt: skip


def _uma_task(dataset: str, prop: str, level: str, dim: list[int]) -> dict:
    """One fairchem task (a normaliser of mean 0, rmsd 1), as the tests configure them."""
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


def build_uma(size: str, folder: Path, structures: list) -> BuiltModel:
    """A UMA (eSCN-MD with MoLE experts) with random weights, as an inference checkpoint.

    Parameters
    ----------
    size : {"paper", "tiny"}
    folder : pathlib.Path
        Where the model file is written.
    structures : list of ase.Atoms
        The benchmark's structures (unused).

    Returns
    -------
    BuiltModel
    """
    import hydra
    import torch
    from fairchem.core.units.mlip_unit.api.inference import MLIPInferenceCheckpoint

    backbone = UMA_TINY_BACKBONE if size == "tiny" else UMA_S_BACKBONE
    datasets = list(backbone["dataset_list"])
    head = {
        "module": "fairchem.core.models.uma.escn_moe.DatasetSpecificSingleHeadWrapper",
        "head_cls": "fairchem.core.models.uma.escn_md.MLP_EFS_Head",
        "head_kwargs": {"wrap_property": False},
        "dataset_names": datasets,
    }
    config = {
        "_target_": "fairchem.core.models.base.HydraModel",
        "backbone": copy.deepcopy(backbone),
        "heads": {"energyandforcehead": head},
        "pass_through_head_outputs": True,
    }
    tasks = [
        _uma_task(dataset, prop, level, dim)
        for dataset in datasets
        for prop, level, dim in [
            ("energy", "system", [1]),
            ("forces", "atom", [3]),
            ("stress", "system", [1, 9]),
        ]
    ]
    torch.manual_seed(0)
    model = hydra.utils.instantiate(copy.deepcopy(config))
    state = model.state_dict()
    ema = dict(state)  # the same tensors: saved once
    ema["n_averaged"] = torch.tensor(1, dtype=torch.long)
    name = "uma-tiny" if size == "tiny" else "uma-s-1p1"
    path = folder / f"{name}.pt"
    torch.save(MLIPInferenceCheckpoint(config, state, ema, tasks), path)
    if size == "tiny":
        note = "the tests' tiny UMA (sphere_channels 8, 2 layers, 4 experts)"
    else:
        note = (
            "UMA-S from fairchem's released training configs (K4L2 backbone, 32 experts, the "
            "conserving fine-tune's max_neighbors 300), model_version 1.1; published "
            "6.6M active / 150M total parameters (the count here is the total, experts "
            "unmerged as fredask's 'batch' inference settings load them); task omat"
        )
    return _built("uma", path, model, config, note, "uma", size)


BUILDERS: dict[str, Callable[[str, Path, list], BuiltModel]] = {
    "mace": build_mace,
    "metatomic": build_metatomic,
    "dpa": build_dpa,
    "uma": build_uma,
}

#: The elements each model is built for, by family and size.
MODEL_ELEMENTS = {
    ("mace", "paper"): frozenset(MACE_MP_ELEMENTS),
    ("metatomic", "paper"): frozenset(PET_MAD_ELEMENTS),
    ("dpa", "paper"): frozenset(range(1, 119)),
    ("uma", "paper"): frozenset(range(1, 100)),
} | {(family, "tiny"): frozenset(TINY_ELEMENTS) for family in FAMILIES}


# ------------------------------------------------------------------------ measuring


def benchmark_structures(elements: frozenset[int], n: int) -> list:
    """``n`` shipped ASE structures (G2, S22, dcdft) of ``elements``, evenly spaced.

    Structures with short bonds are left out, as ``fredask demo`` does, and so are
    single atoms (fairchem answers them with a reference energy, without its model)
    and structures with elements outside ``elements`` or :data:`COMMON_ELEMENTS`.
    """
    from fredask.store.datasets import physical_structures, shipped_structures

    shipped, _ = physical_structures(shipped_structures(subsets=("g2", "s22", "dcdft")))
    allowed = elements & COMMON_ELEMENTS
    eligible = [
        atoms for atoms in shipped if len(atoms) > 1 and set(atoms.numbers.tolist()) <= allowed
    ]
    index = np.unique(np.linspace(0, len(eligible) - 1, min(n, len(eligible))).astype(int))
    return [eligible[i] for i in index]


def _store(path: Path, structures: list) -> FeatureStore:
    """A new fredask store of ``structures`` (source ``subset:name``, as ``fredask demo``)."""
    from fredask.store import FeatureStore
    from fredask.store.structures import StructureTable

    table = StructureTable.from_atoms(
        structures,
        source_file=[f"{a.info['subset']}:{a.info['name']}" for a in structures],
        source_index=range(len(structures)),
    )
    return FeatureStore.create(path, table)


def family_versions(family: str) -> dict:
    """Versions of python, fredask's stack, torch and the family's packages."""
    out = versions()
    for name in ("torch", *PACKAGES[family]):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def measure(family: str, size: str, n_structures: int, scratch: Path) -> dict:
    """Build, load, warm up and time one family's model.

    Parameters
    ----------
    family : {"mace", "metatomic", "dpa", "uma"}
    size : {"paper", "tiny"}
    n_structures : int
        How many structures of :func:`benchmark_structures` to time.
    scratch : pathlib.Path
        For the model file and the two stores.

    Returns
    -------
    dict
        Every number of the run (``families_<family>.json``'s ``result``).
    """
    import torch

    from fredask.extract import get_extractor
    from fredask.extract.runner import extract

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only possible before torch's first parallel work
        pass
    structures = benchmark_structures(MODEL_ELEMENTS[family, size], n_structures)
    if not structures:
        raise SystemExit(f"families.py: no shipped structure has only {family}'s elements")
    log(f"{family} ({size}): building the model")
    start = time.perf_counter()
    built = BUILDERS[family](size, scratch, structures)
    build_s = time.perf_counter() - start
    log(f"{family}: {built.parameters:,} parameters, built in {build_s:.1f} s; loading")
    extractor = get_extractor(built.spec)
    start = time.perf_counter()
    extractor.load()
    load_s = time.perf_counter() - start
    missing = {int(z) for a in structures for z in a.numbers} - set(extractor.elements or ())
    if extractor.elements is not None and missing:
        raise SystemExit(f"families.py: {extractor.name} does not cover Z={sorted(missing)}")
    warm = _store(scratch / "warm-up.zarr", structures[:1])
    start = time.perf_counter()
    extract(warm, extractor, client="sync", progress=False)
    warmup_s = time.perf_counter() - start
    n_atoms = sum(len(a) for a in structures)
    log(f"{family}: loaded in {load_s:.1f} s, warm-up {warmup_s:.1f} s; {n_atoms} atoms")
    store = _store(scratch / "timed.zarr", structures)
    start = time.perf_counter()
    report = extract(store, extractor, client="sync", progress=False)
    seconds = time.perf_counter() - start
    features = store.features(report.name)
    values = np.asarray(features[:])
    log(f"{family}: {n_atoms} atoms in {seconds:.1f} s, {n_atoms / seconds:.1f} atoms/s")
    return {
        "family": family,
        "size": size,
        "model": PAPER_MODELS[family] if size == "paper" else f"tiny {family} (tests)",
        "feature_name": report.name,
        "model_file": Path(built.spec.partition(":")[2]).name,
        "model_file_mib": built.file_mib,
        "parameters": built.parameters,
        "feature_width": int(features.shape[1]),
        "feature_dtype": str(features.dtype),
        "features_finite": bool(np.isfinite(values).all()),
        "skipped_structures": len(report.skipped),
        "structures": len(structures),
        "atoms": n_atoms,
        "elements": sorted({int(z) for a in structures for z in a.numbers}),
        "build_s": build_s,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "seconds": seconds,
        "atoms_per_s": n_atoms / seconds,
        "structures_per_s": len(structures) / seconds,
        "torch_threads": torch.get_num_threads(),
        "size_note": built.size_note,
        "sources": built.sources,
        "hypers": built.hypers,
        "layer": str(features.attrs.get("layer", "")),
    }


def run_family(args: argparse.Namespace) -> dict:
    """One family's run, written to ``families_<family>.json``."""
    context = {
        "machine": machine(),
        "versions": family_versions(args.family),
        "load_average": load_average(),
        "threads": {k: os.environ[k] for k in sorted(os.environ) if k.endswith("_THREADS")},
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "args": argument_values(args),
    }
    args.data_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"fredask-{args.family}-", dir=args.data_dir))
    try:
        result = measure(args.family, args.size, args.n_structures, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    context["load_average_end"] = load_average()
    raw = {"context": context, "result": result}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"families_{args.family}.json"
    path.write_text(json.dumps(raw, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "hypers"}, indent=2))
    log(f"wrote {path}")
    return raw


# --------------------------------------------------------------------------- report


def _size_label(result: dict) -> str:
    return result["model"] if result["size"] == "paper" else "tiny (tests)"


def _short_note(result: dict) -> str:
    notes = []
    if result["structures"] < DEFAULT_N_STRUCTURES:
        notes.append(f"{result['structures']} structures only")
    if not result["features_finite"] or result["skipped_structures"]:
        notes.append("NaN features or skipped structures")
    if result["size"] == "paper":
        notes.append("random weights, published size")
    return "; ".join(notes)


def report_page(runs: list[dict]) -> str:
    """``families.md``: one table of the families, then each run's details."""
    order = {family: i for i, family in enumerate(FAMILIES)}
    runs = sorted(runs, key=lambda r: order.get(r["result"]["family"], len(order)))
    rows = [
        [r["family"], _size_label(r), f"{r['parameters']:,}", str(r["feature_width"]),
         fmt(r["atoms_per_s"], 1), fmt(r["load_s"], 1), _short_note(r)]
        for r in (run["result"] for run in runs)
    ]  # fmt: skip
    lines = [
        "# Extraction throughput of the four model families",
        "",
        "Each family in its own environment, one thread, through "
        '`fredask.extract.runner.extract(..., client="sync")`; models with random '
        "weights built at the size of the paper's models (or the tests' tiny ones); "
        "shipped ASE structures (G2, S22, dcdft) evenly spaced; atoms/s over the timed "
        "run after one warm-up structure (`benchmarks/families.py`).",
        "",
        table(
            ["family", "model size", "parameters", "feature width", "atoms/s", "load s", "note"],
            rows,
        ),
        "",
    ]
    for run in runs:
        r, c = run["result"], run["context"]
        host, v = c["machine"], c["versions"]
        packages = ", ".join(f"{k} {v[k]}" for k in ("torch", *PACKAGES[r["family"]]) if k in v)
        lines += [
            f"## {r['family']}: {_size_label(r)}",
            "",
            f"- {r['structures']} structures, {r['atoms']} atoms: {fmt(r['seconds'], 1)} s, "
            f"{fmt(r['structures_per_s'], 2)} structures/s; build {fmt(r['build_s'], 1)} s, "
            f"load {fmt(r['load_s'], 1)} s, warm-up {fmt(r['warmup_s'], 1)} s; "
            f"features `{r['feature_name']}` ({r['feature_width']} x {r['feature_dtype']})",
            f"- size: {r['size_note']}",
            f"- sources: {'; '.join(r['sources'])}",
            f"- machine: {host['cpu']}, {host['cores']} usable cores, load average "
            f"{c['load_average']:.2f} at start, {c['load_average_end']:.2f} at end; "
            f"{r['torch_threads']} torch thread",
            f"- versions: python {v['python']}, fredask {v['fredask']}, {packages}",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(results_dir: Path) -> Path:
    """Gather every ``families_*.json`` of ``results_dir`` into ``families.md``."""
    paths = sorted(results_dir.glob("families_*.json"))
    if not paths:
        raise SystemExit(f"families.py: no families_*.json in {results_dir}")
    runs = [json.loads(p.read_text()) for p in paths]
    out = results_dir / "families.md"
    out.write_text(report_page(runs))
    log(f"wrote {out} ({len(runs)} families)")
    return out


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", nargs="?", choices=FAMILIES)
    parser.add_argument("--size", choices=SIZES, default="paper")
    parser.add_argument("--n-structures", type=int, default=DEFAULT_N_STRUCTURES)
    parser.add_argument("--report", action="store_true", help="write families.md and stop")
    directory_arguments(parser, HERE)
    args = parser.parse_args(argv)
    if args.report:
        print(write_report(args.results_dir).read_text())
        return
    if args.family is None:
        parser.error("name a family (mace, metatomic, dpa, uma) or pass --report")
    if args.n_structures < 1:
        parser.error("--n-structures must be at least 1")
    log(f"python {platform.python_version()} ({sys.executable})")
    run_family(args)


if __name__ == "__main__":
    main()
