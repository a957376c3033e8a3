"""fairchem UMA models from a user-passed checkpoint (``"uma:PATH"``, ``fairchem-core``)."""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fredask.extract.base import ExtractionError, _label, resolve_module
from fredask.extract.device import parse_device
from fredask.extract.presets._common import ModelSpecError, _import, _stem
from fredask.extract.presets._files import _FileExtractor

#: The ``layer`` option: the hooked tensor (a forward pre-hook captures a module's input).
UMA_LAYERS = {
    "last": "input of the final Linear of the energy head's energy_block",
    "backbone": "input of the energy head's energy_block (l=0 channels of the node embedding)",
}


def _current_cuda_device(index: int):
    """CUDA device ``index`` current (fairchem's ``device="cuda"`` takes the current one)."""
    if index == 0:
        return contextlib.nullcontext()
    import torch

    return torch.cuda.device(index)


class UMAExtractor(_FileExtractor):
    """Per-atom features of a fairchem UMA model's energy head (the paper's, by default).

    ``pretrained_mlip.load_predict_unit(path, inference_settings, device=...)``
    loads the checkpoint and ``FAIRChemCalculator(unit, task_name=task)``
    evaluates each structure, one at a time, as given (molecules stay
    non-periodic: fairchem builds their graph without images).  A forward
    pre-hook captures the input of a module of the energy head
    (``output_heads.<head>[.head].energy_block``, ``fairchem.core.models.uma.
    escn_md.MLP_EFS_Head``: Linear-SiLU-Linear-SiLU-Linear on the l=0 channels
    of the backbone's final node embedding).

    Parameters
    ----------
    path : str
        A UMA checkpoint (e.g. ``uma-s-1p1.pt``).
    task : str
        UMA task (a dataset of the checkpoint): ``"omat"``, ``"omol"``,
        ``"oc20"``, ``"odac"`` or ``"omc"``.
    layer : {"last", "backbone"}
        ``"last"`` (the paper's last-layer features): the input of the block's
        final Linear, ``(n_atoms, hidden_channels)``; ``"backbone"``: the
        input of the block, ``(n_atoms, sphere_channels)``; its features are
        named ``uma-<stem>-<task>-backbone``.
    module_path : str, optional
        Dotted path, under the predict unit's model, of the module whose input
        is taken instead (overrides ``layer``).  By default every
        ``energy_block`` under ``output_heads`` is hooked and exactly one of
        them must run for a structure (else the error lists those that ran).
    inference_settings : str or fairchem InferenceSettings
        ``load_predict_unit``'s settings.  Default ``"batch"``: fairchem's mode
        for heterogeneous inputs (FP32, MoLE unmerged, not compiled), the
        settings fairchem called ``"default"`` when UMA 1.1 came out; its
        ``"default"`` now merges the MoLE experts for the first composition
        and compiles (TF32 on CUDA), then falls back on the next composition.
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs (``"cuda:N"`` loads it with CUDA device ``N``
        current; see :mod:`fredask.extract.device`).  Features come back to
        the host as float32 numpy arrays.
    """

    package = "fairchem-core"

    def __init__(
        self,
        path: str | Path,
        task: str = "omat",
        layer: str = "last",
        module_path: str | None = None,
        inference_settings: object = "batch",
        device: str = "cpu",
    ):
        super().__init__(path)
        self.task = str(task)
        self.name = f"uma-{_stem(path)}-{self.task}"
        if layer not in UMA_LAYERS:
            raise ModelSpecError(
                f"{self.name}: unknown layer {layer!r}; layers: {', '.join(UMA_LAYERS)}"
            )
        if module_path is not None and layer != "last":
            raise ModelSpecError(f"{self.name}: give layer= or module_path=, not both")
        self.layer = layer
        self.name += "-backbone" if layer == "backbone" else ""
        self.module_path = module_path
        self._path: str | None = module_path  # the module hooked, once one has run
        self.inference_settings = inference_settings
        self.device = parse_device(device, self.name)
        self._unit = None
        self._calculator = None
        self._hooked = weakref.WeakSet()
        self._captured: list = []

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_unit", "_calculator", "_hooked")

    def __setstate__(self, state):
        self.__dict__.update(state, _hooked=weakref.WeakSet(), _captured=[])

    def load(self) -> None:
        """Load the predict unit on its device (once) and hook the energy head."""
        if self._calculator is not None:
            return
        device = self.torch_device()
        core = _import("fairchem.core", self.package)
        path = self._check_file()
        index = int(device.partition(":")[2] or 0)
        with _current_cuda_device(index):  # fairchem picks the current CUDA device
            unit = core.pretrained_mlip.load_predict_unit(
                str(path),
                inference_settings=self.inference_settings,
                device="cpu" if device == "cpu" else "cuda",
            )
        try:
            self._calculator = core.FAIRChemCalculator(unit, task_name=self.task)
        except ValueError as exc:  # fairchem lists the checkpoint's tasks
            raise ModelSpecError(f"{self.name}: {exc}") from exc
        self._unit = unit
        backbone = getattr(getattr(unit.model, "module", unit.model), "backbone", None)
        if getattr(backbone, "max_num_elements", None):  # atomic numbers index embeddings
            self.elements = frozenset(range(1, int(backbone.max_num_elements)))
        if not self._hook_modules():
            raise ExtractionError(
                f"{self.name}: no energy_block module under output_heads; pass module_path="
            )
        self._model_dtype = str(next(unit.model.parameters()).dtype).removeprefix("torch.")

    def _targets(self) -> list[str]:
        """Dotted paths of the modules to hook in the current model."""
        model = self._unit.model
        if self._path is not None:
            return [self._path]
        names = [n for n, _ in model.named_modules() if n.endswith("energy_block")]
        names = [n for n in names if "output_heads" in n] or names
        if self.layer == "backbone":
            return names
        out = []
        for name in names:  # the block's final Linear (the block itself when it is one)
            block = model.get_submodule(name)
            last = [n for n, m in block.named_modules() if type(m).__name__ == "Linear"]
            out.append(".".join(filter(None, (name, last[-1]))) if last else name)
        return out

    def _hook_modules(self) -> int:
        """Hook the targets of the current model; the number of new hooks.

        Runs again when no hook fired: with merged MoLE experts, a new composition
        makes the predict unit reload an unmerged model.
        """
        added = 0
        for name in self._targets():
            module = resolve_module(self._unit.model, name)
            if module not in self._hooked:
                module.register_forward_pre_hook(functools.partial(self._hook, name))
                self._hooked.add(module)
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
        except (ValueError, TypeError) as exc:
            raise ExtractionError(f"{self.name}: structure {label}: {exc}") from exc

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        out = []
        for index, original in enumerate(structures):
            atoms, label = original.copy(), _label(original, index)
            if len(atoms) == 1 and not atoms.pbc.any():
                raise ExtractionError(
                    f"{self.name}: structure {label} is one isolated atom, for which fairchem "
                    "looks up a reference energy without running the model"
                )
            self._evaluate(atoms, label)
            if not self._captured and self._hook_modules():
                self._evaluate(atoms, label)
            fired = sorted({name for name, _ in self._captured})
            if len(fired) != 1:
                raise ExtractionError(
                    f"{self.name}: structure {label}: energy-head hooks that ran: "
                    f"{fired or 'none'}; pass module_path= naming the one to use"
                )
            self._path = fired[0]
            values = self._captured[-1][1].reshape(len(atoms), -1)
            out.append(np.ascontiguousarray(values.cpu().float().numpy(), dtype=np.float32))
            self._captured.clear()
        return out

    def metadata(self) -> dict[str, object]:
        """As :meth:`_FileExtractor.metadata`, with the hooked module, task and settings."""
        if self.module_path is not None:
            layer = f"input of {self.module_path}"
        else:
            path = self._path or "output_heads.*.energy_block" + ".*" * (self.layer == "last")
            layer = f"{self.layer}: {UMA_LAYERS[self.layer]} ({path})"
        settings = self.inference_settings
        return {
            **super().metadata(),
            "layer": layer,
            "hook": "forward_pre_hook",
            "task": self.task,
            "inference_settings": settings if isinstance(settings, str) else repr(settings),
        }
