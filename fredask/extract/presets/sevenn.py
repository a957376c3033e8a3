"""SevenNet models whose weights ship in the ``sevenn`` package (``"sevenn:7net-0"``, ...)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fredask.extract.base import ExtractionError, TorchHookExtractor, _label
from fredask.extract.device import parse_device
from fredask.extract.presets._common import ModelSpecError, _import, _package_dir, _package_version
from fredask.store.structures import file_hash

#: SevenNet models shipped in ``sevenn/pretrained_potentials/`` (relative paths).
SEVENN_MODELS: dict[str, str] = {
    "7net-0": "SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
    "7net-0_22may2024": "SevenNet_0__22May2024/checkpoint_sevennet_0.pth",
    "7net-l3i5": "SevenNet_l3i5/checkpoint_l3i5.pth",
    "7net-mf-0": "SevenNet_MF_0/checkpoint_sevennet_mf_0.pth",
}

#: Fidelities of the multi-fidelity SevenNet models (the ``modal`` option).
SEVENN_MODALS: dict[str, tuple[str, ...]] = {"7net-mf-0": ("PBE", "R2SCAN")}


class _StopForward(Exception):
    """Raised by the hook to skip the rest of the forward pass (read-out, forces)."""


def _sevenn_calculator(checkpoint: str, modal: str | None, device: str = "cpu"):
    """A ``SevenNetCalculator`` of a checkpoint file on a device (module level: picklable)."""
    calculator_module = _import("sevenn.calculator", SevenNetExtractor.package)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no tensor-product accelerator" on the CPU
        return calculator_module.SevenNetCalculator(model=checkpoint, device=device, modal=modal)


def _sevenn_node_features(args):
    """The node features ``x`` of the ``AtomGraphData`` handed to the read-out."""
    return args[0]["x"]


class SevenNetExtractor(TorchHookExtractor):
    """The 128-float input of SevenNet's read-out, per atom.

    ``sevenn.calculator.SevenNetCalculator`` evaluates each structure on the
    extractor's device; a forward pre-hook on the module
    ``reduce_input_to_hidden`` (an ``IrrepsLinear``, the first layer of the
    read-out) receives the model's ``AtomGraphData`` dictionary and clones its
    node features ``"x"`` (``n_atoms x 128`` scalars, the output of the last
    equivariant gate).  For the multi-fidelity model the read-out also appends
    the one-hot fidelity to ``x`` inside that module; the features here are the
    128 node features only.

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
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs (``SevenNetCalculator(device=...)``); ``"auto"``:
        CUDA when torch sees it, else the CPU; on a dask-cuda worker
        ``"cuda"`` is the worker's own GPU (see :mod:`fredask.extract.device`).
        The features come back to the host as float32 numpy arrays.
    """

    package = "sevenn"

    def __init__(
        self,
        model: str = "7net-0",
        modal: str | None = None,
        stop_at_hook: bool = True,
        device: str = "cpu",
    ) -> None:
        key = str(model).lower().replace("sevennet-", "7net-")
        if key not in SEVENN_MODELS:
            raise ModelSpecError(
                f"unknown SevenNet model {model!r}; known: {', '.join(SEVENN_MODELS)}"
            )
        modals = SEVENN_MODALS.get(key, ())
        if modals:
            canonical = {m.lower(): m for m in modals}
            if modal is None or str(modal).lower() not in canonical:
                raise ModelSpecError(
                    f"SevenNet {key} needs modal= one of {', '.join(modals)}, got {modal!r}"
                )
            modal = canonical[str(modal).lower()]
        elif modal is not None:
            raise ModelSpecError(f"SevenNet {key} has a single fidelity; modal must be None")
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
        self.device = parse_device(device, name)
        self._elements: frozenset[int] | None = None
        self._hash: str | None = None

    @property
    def checkpoint(self) -> Path:
        """The checkpoint file shipped in the sevenn package."""
        path = (
            _package_dir("sevenn", self.package)
            / "pretrained_potentials"
            / SEVENN_MODELS[self.model_name]
        )
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
                checkpoint = _import("sevenn.checkpoint", self.package)
                keys = _import("sevenn._keys", self.package)
                type_map = checkpoint.SevenNetCheckpoint(str(self.checkpoint)).config[keys.TYPE_MAP]
            self._elements = frozenset(int(z) for z in type_map)
        return self._elements

    def _new_calculator(self):
        """The calculator on the torch device of :attr:`device` in this process."""
        return self.make_calculator(device=self.torch_device())

    def load(self) -> None:
        """Build the calculator on its device (once) and register the pre-hook."""
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
            "package_version": _package_version(self.package),
            "checkpoint": f"sevenn:{self.model_name}",
            "checkpoint_file": f"{self.checkpoint.parent.name}/{self.checkpoint.name}",
            "checkpoint_hash": self._hash,
            "layer": "reduce_input_to_hidden (input node features 'x')",
            "hook": "forward_pre_hook",
            "modal": self.modal,
            "dtype": "float32",
        }
