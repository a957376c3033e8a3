"""CHGNet models whose weights ship in the ``chgnet`` package (``"chgnet:0.3.0"``, ...)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fredask.extract.base import ExtractionError, Extractor, _label, atom_batches
from fredask.extract.device import parse_device
from fredask.extract.presets._common import (
    DEFAULT_VACUUM,
    ModelSpecError,
    _check_layer,
    _import,
    _package_dir,
    _package_version,
    boxed,
)
from fredask.store.structures import file_hash

#: CHGNet models shipped in ``chgnet/pretrained/<name>/``.
CHGNET_MODELS: tuple[str, ...] = ("0.3.0", "0.2.0", "r2scan")


class CHGNetExtractor(Extractor):
    """Per-atom features of a CHGNet model shipped in the ``chgnet`` package.

    Structures are evaluated in batches of whole structures (at most
    ``batch_atoms`` atoms per forward pass, a larger structure alone) through
    ``CHGNet.forward(graphs, task="e")`` under ``torch.no_grad``; results equal
    single-structure ones to float rounding.  The graphs are built on the CPU
    and moved to the model's device with the batch; the features come back
    to the host as float32 numpy arrays.

    Parameters
    ----------
    model : {"0.3.0", "0.2.0", "r2scan"}
    layer : "readout" (default), "atom_fea" or int
        ``"readout"``: the input of the read-out MLP (the output of
        ``readout_norm`` when the model has one, else of the last
        convolution), the paper's "last-layer" features; the default name
        ``chgnet-<model>``.
        ``"atom_fea"``: ``atom_fea`` as returned by ``predict_structure(...,
        return_atom_feas=True)``; in chgnet 0.4 this is the output of the
        *second-to-last* atom convolution (``atom_conv_layers[n_conv - 2]``,
        the input of the last one), not the read-out input (the default
        before fredask 0.2; name ``chgnet-<model>-atom-fea``).
        int ``i``: output of ``atom_conv_layers[i]`` (negative counts from the
        end; the four shipped models have ``n_conv = 4``).
    vacuum : float
        CHGNet needs a lattice: non-periodic directions (molecules, slabs) get
        a cell with ``vacuum`` Å between periodic images (see :func:`boxed`);
        must exceed the model's atom-graph cutoff (6 Å for 0.3.0 and r2scan,
        5 Å for 0.2.0).
    batch_atoms : int
        Most atoms per forward pass.
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs (``CHGNet.load(use_device=...)``); ``"auto"``:
        CUDA when torch sees it, else the CPU; on a dask-cuda worker
        ``"cuda"`` is the worker's own GPU (see :mod:`fredask.extract.device`).
    """

    package = "chgnet"

    def __init__(
        self,
        model: str = "0.3.0",
        layer: int | str = "readout",
        vacuum: float = DEFAULT_VACUUM,
        batch_atoms: int = 2048,
        device: str = "cpu",
    ) -> None:
        super().__init__()
        canonical = {name.lower(): name for name in CHGNET_MODELS}
        if str(model).lower() not in canonical:
            raise ModelSpecError(
                f"unknown CHGNet model {model!r}; known: {', '.join(CHGNET_MODELS)}"
            )
        if layer not in ("readout", "atom_fea"):
            if layer is None or isinstance(layer, str):
                raise ModelSpecError(
                    f"CHGNet layer must be 'readout', 'atom_fea' or an integer, got {layer!r}"
                )
            layer = _check_layer(layer)
        if not vacuum > 0:
            raise ModelSpecError(f"vacuum must be positive, got {vacuum!r}")
        self.model_name = canonical[str(model).lower()]
        self.layer = layer
        self.vacuum = float(vacuum)
        self.batch_atoms = int(batch_atoms)
        suffix = {"readout": "", "atom_fea": "-atom-fea"}.get(layer, f"-layer{layer}")
        self.name = f"chgnet-{self.model_name}{suffix}"
        self.device = parse_device(device, self.name)
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
        folder = _package_dir("chgnet", self.package) / "pretrained" / self.model_name
        files = sorted(folder.glob("*.pth.tar"))
        if len(files) != 1:
            raise FileNotFoundError(f"no single CHGNet checkpoint in {folder}: {files}")
        return files[0]

    def load(self) -> None:
        """Load the model on its device (once) and register the layer hook."""
        if self._model is not None:
            return
        device = self.torch_device()
        torch = _import("torch", "torch")
        chgnet_model = _import("chgnet.model", self.package)
        with contextlib.redirect_stdout(io.StringIO()):  # "CHGNet v0.3.0 initialized ..."
            model = chgnet_model.CHGNet.load(
                model_name=self.model_name, use_device=device, verbose=False
            )
        model = model.to(torch.device(device)).eval()
        cutoff = float(model.graph_converter.atom_graph_cutoff)
        if self.vacuum <= cutoff:
            raise ModelSpecError(
                f"{self.name}: vacuum {self.vacuum} Å must exceed the atom-graph cutoff "
                f"{cutoff} Å, or boxed molecules would see their periodic images"
            )
        self.elements = frozenset(range(1, model.atom_embedding.embedding.num_embeddings + 1))
        n_conv = len(model.atom_conv_layers)
        if self.layer == "readout":
            module = model.readout_norm
            if module is None:  # 0.2.0: the last convolution feeds the MLP directly
                module = model.atom_conv_layers[-1]
        elif self.layer != "atom_fea":
            if not -n_conv <= self.layer < n_conv:
                raise ModelSpecError(
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

        with warnings.catch_warnings():
            # pymatgen warns about noble gases' missing electronegativity, once per element
            warnings.filterwarnings("ignore", message="No Pauling electronegativity")
            graphs = [self._graph(atoms, index) for index, atoms in enumerate(structures)]
        device = next(self._model.parameters()).device
        out: list[np.ndarray] = []
        for group in atom_batches([len(a) for a in structures], self.batch_atoms):
            batch = [graphs[i] if device.type == "cpu" else graphs[i].to(device) for i in group]
            self._captured.clear()
            with torch.no_grad():
                atom_fea = self.layer == "atom_fea"
                prediction = self._model(batch, task="e", return_atom_feas=atom_fea)
            if atom_fea:
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
        if self.layer == "atom_fea":
            layer = "atom_fea (output of atom_conv_layers[n_conv - 2])"
        elif self.layer == "readout":
            layer = "readout (input of the read-out MLP: readout_norm output, if any)"
        else:
            layer = f"atom_conv_layers[{self.layer}]"
        return {
            "model": self.name,
            "package": "chgnet",
            "package_version": _package_version(self.package),
            "checkpoint": f"chgnet:{self.model_name}",
            "checkpoint_file": self.checkpoint.name,
            "checkpoint_hash": self._hash,
            "layer": layer,
            "dtype": "float32",
            "molecule_vacuum": self.vacuum,
        }
