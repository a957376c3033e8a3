"""fairchem UMA models from a user-passed checkpoint (``"uma:PATH"``, ``fairchem-core``)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fredask.extract.base import ExtractionError, _label, resolve_module
from fredask.extract.device import parse_device
from fredask.extract.presets._common import _import, _stem
from fredask.extract.presets._files import _FileExtractor


def _current_cuda_device(index: int):
    """A context with CUDA device ``index`` current (nothing to do for device 0 or the CPU).

    fairchem's predict unit takes ``device="cuda"`` and uses the current CUDA
    device, read when it is built.
    """
    if index == 0:
        return contextlib.nullcontext()
    import torch

    return torch.cuda.device(index)


class UMAExtractor(_FileExtractor):
    """The input of a fairchem UMA model's energy head, per atom.

    ``pretrained_mlip.load_predict_unit(path, device=...)`` loads the
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
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs (``load_predict_unit(..., device=)``, which
        takes ``"cpu"`` or ``"cuda"``: ``"cuda:N"`` loads it with CUDA device
        ``N`` current); ``"auto"``: CUDA when torch sees it, else the CPU; on
        a dask-cuda worker ``"cuda"`` is the worker's own GPU (see
        :mod:`fredask.extract.device`).  Features come back to the host as
        float32 numpy arrays.
    """

    package = "fairchem-core"

    def __init__(
        self,
        path: str | Path,
        task: str = "omat",
        module_path: str | None = None,
        inference_settings: str = "default",
        device: str = "cpu",
    ):
        super().__init__(path)
        self.task = str(task)
        self.module_path = module_path
        self.inference_settings = inference_settings
        self.name = f"uma-{_stem(path)}-{self.task}"
        self.device = parse_device(device, self.name)
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
