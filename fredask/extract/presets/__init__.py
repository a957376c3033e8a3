"""Extractors for real interatomic potentials, by spec string.

Two families:

* models whose weights ship inside their pip package and run on the CPU with
  no download: CHGNet (``"chgnet:0.3.0"``, ``"chgnet:0.2.0"``,
  ``"chgnet:r2scan"``) and SevenNet (``"sevenn:7net-0"``,
  ``"sevenn:7net-0_22may2024"``, ``"sevenn:7net-l3i5"``,
  ``"sevenn:7net-mf-0"``);
* models whose file the user passes: ``"mace:PATH"`` (``mace-torch``),
  ``"metatomic:PATH"`` (``metatomic-torch``, e.g. PET-MAD) and ``"uma:PATH"``
  (``fairchem-core``).  Those packages are imported lazily in
  :meth:`~fredask.extract.base.Extractor.load`.

No code here downloads anything: the shipped checkpoints are located inside
the installed packages and passed to the models as files.

Examples
--------
>>> from fredask.extract import get_extractor
>>> get_extractor("chgnet:0.3.0").name
'chgnet-0.3.0'
>>> get_extractor("chgnet:0.3.0", layer=1).name
'chgnet-0.3.0-layer1'
>>> get_extractor("sevenn:7net-mf-0", modal="PBE").name
'sevenn-7net-mf-0-pbe'
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import importlib.util
import inspect
import io
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fredask.extract.base import (
    ExtractionError,
    Extractor,
    TorchHookExtractor,
    _label,
    file_hash,
    resolve_module,
)

if TYPE_CHECKING:
    from ase import Atoms

#: CHGNet models shipped in ``chgnet/pretrained/<name>/``.
CHGNET_MODELS: tuple[str, ...] = ("0.3.0", "0.2.0", "r2scan")

#: SevenNet models shipped in ``sevenn/pretrained_potentials/`` (relative paths).
SEVENN_MODELS: dict[str, str] = {
    "7net-0": "SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "7net-0_22may2024": "SevenNet_0__22May2024/checkpoint_sevennet_0.pth",
    "7net-l3i5": "SevenNet_l3i5/checkpoint_l3i5.pth",
    "7net-mf-0": "SevenNet_MF_0/checkpoint_sevennet_mf_0.pth",
}

#: Fidelities of the multi-fidelity SevenNet models (the ``modal`` option).
SEVENN_MODALS: dict[str, tuple[str, ...]] = {"7net-mf-0": ("PBE", "R2SCAN")}

#: Default vacuum (Å) between periodic images of a boxed molecule for CHGNet.
DEFAULT_VACUUM = 10.0

_PIP_NAMES = {
    "chgnet": "chgnet",
    "sevenn": "sevenn",
    "mace": "mace-torch",
    "metatomic": "metatomic-torch",
    "fairchem": "fairchem-core",
}


def known_specs() -> list[str]:
    """The spec strings :func:`get_extractor` accepts (``PATH``: a model file).

    Returns
    -------
    list of str
    """
    return [
        *(f"chgnet:{name}" for name in CHGNET_MODELS),
        *(f"sevenn:{name}" for name in SEVENN_MODELS),
        "mace:PATH",
        "metatomic:PATH",
        "uma:PATH",
    ]


def get_extractor(spec: str, **options) -> Extractor:
    """The extractor for a model spec such as ``"chgnet:0.3.0"`` or ``"mace:model.pt"``.

    Parameters
    ----------
    spec : str
        ``"PREFIX:MODEL"``: ``chgnet:{0.3.0,0.2.0,r2scan}``,
        ``sevenn:{7net-0,7net-0_22may2024,7net-l3i5,7net-mf-0}``, or
        ``mace:PATH``, ``metatomic:PATH``, ``uma:PATH`` for a model file.
    **options
        Keyword options of the extractor class: ``layer``, ``vacuum``,
        ``batch_atoms`` (CHGNet); ``modal``, ``stop_at_hook`` (SevenNet);
        ``layer``, ``head`` (MACE); ``output``, ``batch_size``,
        ``extensions_directory`` (metatomic); ``task``, ``module_path``,
        ``inference_settings`` (UMA).

    Returns
    -------
    Extractor
        Not loaded yet (picklable); weights load on first use.

    Raises
    ------
    ValueError
        For an unknown prefix, an unknown CHGNet or SevenNet model, or an
        option the extractor does not take; the message lists what is known.
    """
    classes: dict[str, type[Extractor]] = {
        "chgnet": CHGNetExtractor,
        "sevenn": SevenNetExtractor,
        "mace": MACEExtractor,
        "metatomic": MetatomicExtractor,
        "uma": UMAExtractor,
    }
    known = ", ".join(known_specs())
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"model spec {spec!r} is not 'PREFIX:MODEL'; known: {known}")
    prefix, _, model = spec.partition(":")
    prefix, model = prefix.strip().lower(), model.strip()
    if prefix not in classes:
        raise ValueError(f"unknown model prefix {prefix!r} in {spec!r}; known: {known}")
    if not model:
        raise ValueError(f"model spec {spec!r} names no model; known: {known}")
    cls = classes[prefix]
    # the first parameter after ``self`` is the model name or file
    accepted = list(inspect.signature(cls.__init__).parameters)[2:]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{prefix} models take no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(accepted)}"
        )
    return cls(model, **options)


# --------------------------------------------------------------------------- helpers


def _package_dir(module: str) -> Path:
    """Directory of an installed package, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(module)
    return Path(next(iter(spec.submodule_search_locations)))


def _package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _missing(module: str, error: BaseException | None = None) -> ImportError:
    pip = _PIP_NAMES.get(module, module)
    detail = f" ({error})" if error is not None else ""
    return ImportError(
        f"this extractor needs the Python package {pip!r}, which is not importable"
        f"{detail}; install it with: pip install {pip}"
    )


def _import(module: str, package: str):
    """``importlib.import_module`` with an ImportError naming the pip package."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(package, exc) from exc


def _stem(path: str | Path) -> str:
    """A store-friendly short name of a model file."""
    stem = Path(path).name
    for suffix in (".model", ".pt", ".pth", ".ckpt", ".tar"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "model"


def _layer_suffix(layer: int | None) -> str:
    if layer is None:
        return ""
    return "-last-layer" if layer == -1 else f"-layer{layer}"


def _check_layer(layer) -> int | None:
    if layer is None:
        return None
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
        raise ValueError(f"layer must be None or an integer, got {layer!r}")
    return int(layer)


def _batches(structures: Sequence, max_atoms: int) -> Iterator[list[int]]:
    """Consecutive indices grouped so that each group has at most ``max_atoms`` atoms
    (a single larger structure forms its own group)."""
    group: list[int] = []
    atoms_in_group = 0
    for index, atoms in enumerate(structures):
        if group and atoms_in_group + len(atoms) > max_atoms:
            yield group
            group, atoms_in_group = [], 0
        group.append(index)
        atoms_in_group += len(atoms)
    if group:
        yield group


def boxed(atoms: Atoms, vacuum: float = DEFAULT_VACUUM) -> Atoms:
    """A fully periodic copy of ``atoms``, with vacuum along non-periodic directions.

    Along every direction with ``pbc=False`` the cell vector is replaced so that
    the atoms' extent plus ``vacuum`` Å fits, with the atoms centred (ASE's
    ``center(vacuum=vacuum / 2, axis=...)``: ``vacuum / 2`` on each side, so
    periodic images are ``vacuum`` Å apart); then ``pbc`` is set to True
    everywhere.  Fully periodic structures are returned unchanged (not copied).
    A model with cutoff ``rc < vacuum`` then sees exactly the isolated
    molecule (or slab): no neighbour across the box boundary.

    Parameters
    ----------
    atoms : ase.Atoms
    vacuum : float
        Distance (Å) between periodic images along non-periodic directions.

    Returns
    -------
    ase.Atoms
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        return atoms
    atoms = atoms.copy()
    atoms.center(vacuum=vacuum / 2, axis=tuple(int(i) for i in np.flatnonzero(~pbc)))
    atoms.pbc = True
    return atoms


# --------------------------------------------------------------------------- CHGNet


class CHGNetExtractor(Extractor):
    """Per-atom features of a CHGNet model shipped in the ``chgnet`` package.

    Structures are evaluated in batches of whole structures (at most
    ``batch_atoms`` atoms per forward pass, a larger structure alone) through
    ``CHGNet.forward(graphs, task="e")`` under ``torch.no_grad``; results equal
    single-structure ones to float rounding.

    Parameters
    ----------
    model : {"0.3.0", "0.2.0", "r2scan"}
    layer : None, int or "readout"
        None: ``atom_fea`` as returned by ``predict_structure(...,
        return_atom_feas=True)``; in chgnet 0.4 this is the output of the
        *second-to-last* atom convolution (``atom_conv_layers[n_conv - 2]``,
        the input of the last one), not the read-out input.
        int ``i``: output of ``atom_conv_layers[i]`` (negative counts from the
        end; the four shipped models have ``n_conv = 4``).
        ``"readout"``: the input of the read-out MLP (output of
        ``readout_norm`` when the model has one, else of the last convolution).
    vacuum : float
        CHGNet needs a lattice: non-periodic directions (molecules, slabs) get
        a cell with ``vacuum`` Å between periodic images (see :func:`boxed`);
        must exceed the model's atom-graph cutoff (6 Å for 0.3.0 and r2scan,
        5 Å for 0.2.0).
    batch_atoms : int
        Most atoms per forward pass.
    """

    def __init__(
        self,
        model: str = "0.3.0",
        layer: int | str | None = None,
        vacuum: float = DEFAULT_VACUUM,
        batch_atoms: int = 2048,
    ) -> None:
        super().__init__()
        canonical = {name.lower(): name for name in CHGNET_MODELS}
        if str(model).lower() not in canonical:
            raise ValueError(f"unknown CHGNet model {model!r}; known: {', '.join(CHGNET_MODELS)}")
        if layer != "readout":
            layer = _check_layer(layer)
        if not vacuum > 0:
            raise ValueError(f"vacuum must be positive, got {vacuum!r}")
        self.model_name = canonical[str(model).lower()]
        self.layer = layer
        self.vacuum = float(vacuum)
        self.batch_atoms = int(batch_atoms)
        suffix = "-readout" if layer == "readout" else _layer_suffix(layer)
        self.name = f"chgnet-{self.model_name}{suffix}"
        #: The embedding table of all shipped CHGNet models covers Z = 1..94;
        #: :meth:`load` re-reads it from the model.
        self.elements = frozenset(range(1, 95))
        self._model = None
        self._captured: list = []
        self._hash: str | None = None

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_model",)

    @property
    def checkpoint(self) -> Path:
        """The checkpoint file shipped in the chgnet package."""
        folder = _package_dir("chgnet") / "pretrained" / self.model_name
        files = sorted(folder.glob("*.pth.tar"))
        if len(files) != 1:
            raise FileNotFoundError(f"no single CHGNet checkpoint in {folder}: {files}")
        return files[0]

    def load(self) -> None:
        """Load the model on the CPU (once) and register the layer hook."""
        if self._model is not None:
            return
        torch = _import("torch", "torch")
        chgnet_model = _import("chgnet.model", "chgnet")
        with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet v0.3.0 initialized ..."
            model = chgnet_model.CHGNet.load(
                model_name=self.model_name, use_device="cpu", verbose=False
            )
        model = model.to(torch.device("cpu")).eval()
        cutoff = float(model.graph_converter.atom_graph_cutoff)
        if self.vacuum <= cutoff:
            raise ValueError(
                f"{self.name}: vacuum {self.vacuum} Å must exceed the atom-graph cutoff "
                f"{cutoff} Å, or boxed molecules would see their periodic images"
            )
        self.elements = frozenset(range(1, model.atom_embedding.embedding.num_embeddings + 1))
        n_conv = len(model.atom_conv_layers)
        if self.layer == "readout":
            module = model.readout_norm
            if module is None:  # 0.2.0: the last convolution feeds the MLP directly
                module = model.atom_conv_layers[-1]
        elif self.layer is not None:
            if not -n_conv <= self.layer < n_conv:
                raise ValueError(
                    f"{self.name}: layer {self.layer} out of range; CHGNet {self.model_name} "
                    f"has {n_conv} atom convolution layers (0..{n_conv - 1})"
                )
            module = model.atom_conv_layers[self.layer]
        else:
            module = None
        if module is not None:
            module.register_forward_hook(self._hook)
        self._model = model

    def _hook(self, _module, _args, output) -> None:
        self._captured.append(output.detach().clone())

    def _graph(self, atoms, index: int):
        from pymatgen.core import Lattice, Structure

        label = _label(atoms, index)
        periodic = boxed(atoms, self.vacuum)
        if abs(periodic.cell.volume) < 1e-6:
            raise ExtractionError(
                f"{self.name}: structure {label} is periodic but has a degenerate cell"
            )
        structure = Structure(
            Lattice(np.asarray(periodic.cell[:], dtype=float)),
            [int(z) for z in periodic.numbers],
            np.asarray(periodic.positions, dtype=float),
            coords_are_cartesian=True,
        )
        try:
            return self._model.graph_converter(structure, graph_id=label)
        except (ValueError, RuntimeError) as exc:
            raise ExtractionError(
                f"{self.name}: cannot build the CHGNet graph of structure {label}: {exc}"
            ) from exc

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        import torch

        graphs = [self._graph(atoms, index) for index, atoms in enumerate(structures)]
        out: list[np.ndarray] = []
        for group in _batches(structures, self.batch_atoms):
            batch = [graphs[i] for i in group]
            self._captured.clear()
            with torch.no_grad():
                prediction = self._model(batch, task="e", return_atom_feas=self.layer is None)
            if self.layer is None:
                values = list(prediction["atom_fea"])
            else:
                if len(self._captured) != 1:
                    raise ExtractionError(
                        f"{self.name}: layer hook fired {len(self._captured)} times"
                    )
                sizes = [len(structures[i]) for i in group]
                values = list(torch.split(self._captured[0], sizes))
            self._captured.clear()
            out.extend(np.ascontiguousarray(v.cpu().numpy(), dtype=np.float32) for v in values)
        return out

    def metadata(self) -> dict[str, object]:
        """Model, package, version, layer, checkpoint hash and dtype."""
        if self._hash is None:
            self._hash = file_hash(self.checkpoint)
        if self.layer is None:
            layer = "atom_fea (output of atom_conv_layers[n_conv - 2])"
        elif self.layer == "readout":
            layer = "readout (input of the read-out MLP: readout_norm output, if any)"
        else:
            layer = f"atom_conv_layers[{self.layer}]"
        return {
            "model": self.name,
            "package": "chgnet",
            "package_version": _package_version("chgnet"),
            "checkpoint": f"chgnet:{self.model_name}",
            "checkpoint_file": self.checkpoint.name,
            "checkpoint_hash": self._hash,
            "layer": layer,
            "dtype": "float32",
            "molecule_vacuum": self.vacuum,
        }


# --------------------------------------------------------------------------- SevenNet


class _StopForward(Exception):
    """Raised by the hook to skip the rest of the forward pass (read-out, forces)."""


def _sevenn_calculator(checkpoint: str, modal: str | None):
    """A CPU ``SevenNetCalculator`` for a checkpoint file (module level: picklable)."""
    calculator_module = _import("sevenn.calculator", "sevenn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no tensor-product accelerator" on the CPU
        return calculator_module.SevenNetCalculator(model=checkpoint, device="cpu", modal=modal)


def _sevenn_node_features(args):
    """The node features ``x`` of the ``AtomGraphData`` handed to the read-out."""
    return args[0]["x"]


class SevenNetExtractor(TorchHookExtractor):
    """The 128-float input of SevenNet's read-out, per atom.

    ``sevenn.calculator.SevenNetCalculator`` evaluates each structure on the
    CPU; a forward pre-hook on the module ``reduce_input_to_hidden`` (an
    ``IrrepsLinear``, the first layer of the read-out) receives the model's
    ``AtomGraphData`` dictionary and clones its node features ``"x"``
    (``n_atoms x 128`` scalars, the output of the last equivariant gate).  For
    the multi-fidelity model the read-out also appends the one-hot fidelity to
    ``x`` inside that module; the features here are the 128 node features only.

    Parameters
    ----------
    model : str
        One of :data:`SEVENN_MODELS`.
    modal : str, optional
        The fidelity of a multi-fidelity model (``"PBE"`` or ``"R2SCAN"`` for
        ``7net-mf-0``, required there).
    stop_at_hook : bool
        Stop the forward pass once the features are captured (no read-out, no
        force back-propagation): about 3.5x faster, same features.
    """

    def __init__(
        self, model: str = "7net-0", modal: str | None = None, stop_at_hook: bool = True
    ) -> None:
        key = str(model).lower().replace("sevennet-", "7net-")
        if key not in SEVENN_MODELS:
            raise ValueError(f"unknown SevenNet model {model!r}; known: {', '.join(SEVENN_MODELS)}")
        modals = SEVENN_MODALS.get(key, ())
        if modals:
            canonical = {m.lower(): m for m in modals}
            if modal is None or str(modal).lower() not in canonical:
                raise ValueError(
                    f"SevenNet {key} needs modal= one of {', '.join(modals)}, got {modal!r}"
                )
            modal = canonical[str(modal).lower()]
        elif modal is not None:
            raise ValueError(f"SevenNet {key} has a single fidelity; modal must be None")
        self.model_name = key
        self.modal = modal
        self.stop_at_hook = bool(stop_at_hook)
        name = f"sevenn-{key}" + (f"-{modal.lower()}" if modal else "")
        super().__init__(
            functools.partial(_sevenn_calculator, str(self.checkpoint), modal),
            "reduce_input_to_hidden",
            model_attribute="model",
            pre_hook=True,
            select=_sevenn_node_features,
            name=name,
        )
        self._elements: frozenset[int] | None = None
        self._hash: str | None = None

    @property
    def checkpoint(self) -> Path:
        """The checkpoint file shipped in the sevenn package."""
        path = _package_dir("sevenn") / "pretrained_potentials" / SEVENN_MODELS[self.model_name]
        if not path.is_file():
            raise FileNotFoundError(f"SevenNet checkpoint {path} is not installed")
        return path

    @property
    def elements(self) -> frozenset[int]:  # type: ignore[override]
        """Atomic numbers in the checkpoint's type map (read once, without the model)."""
        if self._elements is None:
            if self.calculator is not None:
                type_map = self.calculator.type_map
            else:
                checkpoint = _import("sevenn.checkpoint", "sevenn")
                keys = _import("sevenn._keys", "sevenn")
                type_map = checkpoint.SevenNetCheckpoint(str(self.checkpoint)).config[keys.TYPE_MAP]
            self._elements = frozenset(int(z) for z in type_map)
        return self._elements

    def load(self) -> None:
        """Build the calculator on the CPU (once) and register the pre-hook."""
        if self.calculator is not None:
            return
        super().load()

    def _capture(self, value) -> None:
        super()._capture(value)
        if self.stop_at_hook:
            raise _StopForward

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        out = []
        for index, atoms in enumerate(structures):
            self.calculator.reset()
            self._captured.clear()
            try:
                self.calculator.get_potential_energy(atoms.copy())
            except _StopForward:
                pass
            except ValueError as exc:
                raise ExtractionError(
                    f"{self.name}: structure {_label(atoms, index)}: {exc}"
                ) from exc
            if len(self._captured) != 1:
                raise ExtractionError(
                    f"{self.name}: hook on {self.module_path!r} fired {len(self._captured)} "
                    f"times for structure {_label(atoms, index)}"
                )
            out.append(np.ascontiguousarray(self._captured.pop().cpu().numpy(), np.float32))
        self.calculator.reset()
        return out

    def metadata(self) -> dict[str, object]:
        """Model, package, version, hooked module, checkpoint hash and dtype."""
        if self._hash is None:
            self._hash = file_hash(self.checkpoint)
        return {
            "model": self.name,
            "package": "sevenn",
            "package_version": _package_version("sevenn"),
            "checkpoint": f"sevenn:{self.model_name}",
            "checkpoint_file": f"{self.checkpoint.parent.name}/{self.checkpoint.name}",
            "checkpoint_hash": self._hash,
            "layer": "reduce_input_to_hidden (input node features 'x')",
            "hook": "forward_pre_hook",
            "modal": self.modal,
            "dtype": "float32",
        }


# --------------------------------------------------------------------------- model files


class _FileExtractor(Extractor):
    """Common parts of the extractors of user-passed model files."""

    package = ""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._hash: str | None = None
        self._model_dtype: str | None = None

    def _check_file(self) -> Path:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{self.name}: model file {self.path} does not exist")
        return path

    def metadata(self) -> dict[str, object]:
        """Model, package, version, checkpoint hash and dtype."""
        path = self._check_file()
        if self._hash is None:
            self._hash = file_hash(path)
        return {
            "model": self.name,
            "package": self.package,
            "package_version": _package_version(self.package),
            "checkpoint": str(path),
            "checkpoint_file": path.name,
            "checkpoint_hash": self._hash,
            "dtype": "float32",
            "model_dtype": self._model_dtype,
        }


class MACEExtractor(_FileExtractor):
    """Invariant MACE descriptors from ``MACECalculator.get_descriptors``.

    Parameters
    ----------
    path : str
        A MACE model file (e.g. ``mace-mp-0b3-medium.model``).
    layer : int, optional
        None: the invariant descriptors of every interaction, concatenated
        (``get_descriptors(atoms, invariants_only=True)``); ``i``: those of
        interaction ``i`` only (``-1``: the last, the read-out's input).
    head : str, optional
        Head of a multi-head model.
    """

    package = "mace-torch"

    def __init__(self, path: str | Path, layer: int | None = None, head: str | None = None):
        super().__init__(path)
        self.layer = _check_layer(layer)
        self.head = head
        self.name = f"mace-{_stem(path)}{_layer_suffix(self.layer)}"
        self._calculator = None

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_calculator",)

    def load(self) -> None:
        """Load the model on the CPU (once); read its elements."""
        if self._calculator is not None:
            return
        calculators = _import("mace.calculators", "mace")
        path = self._check_file()
        kwargs = {} if self.head is None else {"head": self.head}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calculator = calculators.MACECalculator(model_paths=str(path), device="cpu", **kwargs)
        self.elements = frozenset(int(z) for z in calculator.z_table.zs)
        self._num_layers = int(calculator.models[0].num_interactions)
        self._model_dtype = str(calculator.default_dtype)
        if self.layer is not None and not -self._num_layers <= self.layer < self._num_layers:
            raise ValueError(
                f"{self.name}: layer {self.layer} out of range; the model has "
                f"{self._num_layers} interactions"
            )
        self._calculator = calculator

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        out = []
        for atoms in structures:
            values = np.asarray(
                self._calculator.get_descriptors(atoms.copy(), invariants_only=True)
            )
            values = values.reshape(len(atoms), -1)
            if self.layer is not None:
                width = values.shape[1] // self._num_layers
                start = (self.layer % self._num_layers) * width
                values = values[:, start : start + width]
            out.append(np.ascontiguousarray(values, dtype=np.float32))
        return out

    def metadata(self) -> dict[str, object]:
        """As :meth:`_FileExtractor.metadata`, with the layer."""
        layer = "all interactions" if self.layer is None else f"interaction {self.layer}"
        return {**super().metadata(), "layer": f"get_descriptors invariants, {layer}"}


#: Short names of the usual metatomic feature outputs.
_METATOMIC_SHORT = {"features": "", "mtt::aux::energy_last_layer_features": "-last-layer"}


class MetatomicExtractor(_FileExtractor):
    """Per-atom features of a metatomic model (e.g. PET-MAD) through ``run_model``.

    Parameters
    ----------
    path : str
        An exported metatomic model (``.pt``).
    output : str
        ``"features"`` (the backbone features) or
        ``"mtt::aux::energy_last_layer_features"`` (the input of the energy
        head), or any other per-atom output the model declares.
    batch_size : int
        Structures per ``run_model`` call.
    extensions_directory : str, optional
        Where the model's compiled extensions live.
    """

    package = "metatomic-torch"

    def __init__(
        self,
        path: str | Path,
        output: str = "features",
        batch_size: int = 16,
        extensions_directory: str | None = None,
    ):
        super().__init__(path)
        self.output = str(output)
        self.batch_size = int(batch_size)
        self.extensions_directory = extensions_directory
        short = _METATOMIC_SHORT.get(self.output)
        if short is None:
            short = "-" + re.sub(r"[^A-Za-z0-9._-]+", "-", self.output).strip("-")
        self.name = f"metatomic-{_stem(path)}{short}"
        self._calculator = None

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_calculator", "_model_output")

    def load(self) -> None:
        """Load the model on the CPU (once); check it declares the output."""
        if self._calculator is not None:
            return
        torch_api = _import("metatomic.torch", "metatomic")
        try:
            from metatomic.torch.ase_calculator import MetatomicCalculator
        except ImportError:  # newer releases moved it to metatomic-ase
            MetatomicCalculator = _import("metatomic_ase", "metatomic").MetatomicCalculator
        path = self._check_file()
        model = torch_api.load_atomistic_model(
            str(path), extensions_directory=self.extensions_directory
        )
        capabilities = model.capabilities()
        if self.output not in capabilities.outputs:
            raise ValueError(
                f"{self.name}: the model has no output {self.output!r}; it has "
                f"{', '.join(sorted(capabilities.outputs))}"
            )
        self.elements = frozenset(int(z) for z in capabilities.atomic_types)
        self._model_dtype = str(capabilities.dtype)
        self._model_output = torch_api.ModelOutput(per_atom=True)
        self._calculator = MetatomicCalculator(model, device="cpu")

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        out = []
        for start in range(0, len(structures), self.batch_size):
            chunk = [atoms.copy() for atoms in structures[start : start + self.batch_size]]
            tensor_map = self._calculator.run_model(chunk, {self.output: self._model_output})[
                self.output
            ]
            if len(tensor_map) != 1:
                raise ExtractionError(
                    f"{self.name}: output {self.output!r} has {len(tensor_map)} blocks; "
                    "only single-block per-atom outputs are supported"
                )
            block = tensor_map.block()
            values = block.values.detach().cpu().numpy()
            values = values.reshape(values.shape[0], -1)
            system = block.samples.column("system").cpu().numpy()
            atom = block.samples.column("atom").cpu().numpy()
            for offset, atoms in enumerate(chunk):
                rows = np.flatnonzero(system == offset)
                if len(rows) != len(atoms) or set(atom[rows].tolist()) != set(range(len(atoms))):
                    raise ExtractionError(
                        f"{self.name}: output {self.output!r} has {len(rows)} rows for "
                        f"structure {_label(structures[start + offset], start + offset)} "
                        f"of {len(atoms)} atoms"
                    )
                features = np.empty((len(atoms), values.shape[1]), dtype=np.float32)
                features[atom[rows]] = values[rows]
                out.append(features)
        return out

    def metadata(self) -> dict[str, object]:
        """As :meth:`_FileExtractor.metadata`, with the output name."""
        return {**super().metadata(), "layer": self.output}


class UMAExtractor(_FileExtractor):
    """The input of a fairchem UMA model's energy head, per atom.

    ``pretrained_mlip.load_predict_unit(path, device="cpu")`` loads the
    checkpoint, ``FAIRChemCalculator(unit, task_name=task)`` evaluates each
    structure, and a forward pre-hook on the energy head's MLP
    (``output_heads.<head>.energy_block``) captures its input: the L=0
    (scalar) channels of the backbone's node embedding, ``(n_atoms,
    sphere_channels)``.

    Parameters
    ----------
    path : str
        A UMA checkpoint (e.g. ``uma-s-1p1.pt``).
    task : str
        UMA task: ``"omat"``, ``"omol"``, ``"oc20"``, ``"odac"`` or ``"omc"``.
    module_path : str, optional
        Dotted path of the hooked module under the predict unit's model.
        Default: every module named ``energy_block`` under ``output_heads`` is
        hooked and exactly one of them must run for a structure (else the
        error lists those that ran: pass one as ``module_path``).
    inference_settings : str
        ``load_predict_unit``'s inference settings.
    """

    package = "fairchem-core"

    def __init__(
        self,
        path: str | Path,
        task: str = "omat",
        module_path: str | None = None,
        inference_settings: str = "default",
    ):
        super().__init__(path)
        self.task = str(task)
        self.module_path = module_path
        self.inference_settings = inference_settings
        self.name = f"uma-{_stem(path)}-{self.task}"
        self._unit = None
        self._calculator = None
        self._hooked: set[int] = set()
        self._captured: list = []

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_unit", "_calculator")

    def __getstate__(self):
        state = super().__getstate__()
        state["_hooked"] = set()
        state["_captured"] = []
        return state

    def load(self) -> None:
        """Load the predict unit on the CPU (once) and hook the energy head."""
        if self._calculator is not None:
            return
        core = _import("fairchem.core", "fairchem")
        path = self._check_file()
        unit = core.pretrained_mlip.load_predict_unit(
            str(path), inference_settings=self.inference_settings, device="cpu"
        )
        self._calculator = core.FAIRChemCalculator(unit, task_name=self.task)
        self._unit = unit
        if not self._hook_modules():
            raise ExtractionError(
                f"{self.name}: no energy_block module under output_heads; pass module_path="
            )
        self._model_dtype = str(next(unit.model.parameters()).dtype).removeprefix("torch.")

    def _hook_modules(self) -> int:
        """Hook the candidate modules of the current model; the number of new hooks.

        The predict unit may replace modules on its first prediction (merged
        mixture-of-experts heads), so this runs again when no hook fired.
        """
        model = self._unit.model
        if self.module_path is not None:
            names = [self.module_path]
        else:
            names = [n for n, _ in model.named_modules() if n.endswith("energy_block")]
            names = [n for n in names if "output_heads" in n] or names
        added = 0
        for name in names:
            module = resolve_module(model, name)
            if id(module) not in self._hooked:
                module.register_forward_pre_hook(functools.partial(self._hook, name))
                self._hooked.add(id(module))
                added += 1
        return added

    def _hook(self, name: str, _module, args) -> None:
        self._captured.append((name, args[0].detach().clone()))

    def _evaluate(self, atoms, label: str) -> None:
        self._calculator.reset()
        self._captured.clear()
        atoms.calc = self._calculator
        try:
            atoms.get_potential_energy()
        except ValueError as exc:
            raise ExtractionError(f"{self.name}: structure {label}: {exc}") from exc

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        out = []
        for index, original in enumerate(structures):
            atoms, label = original.copy(), _label(original, index)
            self._evaluate(atoms, label)
            if not self._captured and self._hook_modules():
                self._evaluate(atoms, label)
            fired = sorted({name for name, _ in self._captured})
            if len(fired) != 1:
                raise ExtractionError(
                    f"{self.name}: structure {label}: energy-head hooks that ran: "
                    f"{fired or 'none'}; pass module_path= naming the one to use"
                )
            self.module_path = fired[0]
            values = self._captured[-1][1].reshape(len(atoms), -1)
            out.append(np.ascontiguousarray(values.cpu().float().numpy(), dtype=np.float32))
            self._captured.clear()
        return out

    def metadata(self) -> dict[str, object]:
        """As :meth:`_FileExtractor.metadata`, with the hooked module and task."""
        return {
            **super().metadata(),
            "layer": f"input of {self.module_path or 'output_heads.*.energy_block'}",
            "hook": "forward_pre_hook",
            "task": self.task,
        }
