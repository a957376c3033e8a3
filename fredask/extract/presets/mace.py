"""MACE models from a user-passed model file (``"mace:PATH"``, package ``mace-torch``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fredask.extract.device import parse_device
from fredask.extract.presets._common import (
    ModelSpecError,
    _check_layer,
    _import,
    _layer_suffix,
    _stem,
)
from fredask.extract.presets._files import _FileExtractor


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
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs (``MACECalculator(device=...)``); ``"auto"``:
        CUDA when torch sees it, else the CPU; on a dask-cuda worker
        ``"cuda"`` is the worker's own GPU (see :mod:`fredask.extract.device`).
        Features come back to the host as float32 numpy arrays.
    """

    package = "mace-torch"

    def __init__(
        self,
        path: str | Path,
        layer: int | None = None,
        head: str | None = None,
        device: str = "cpu",
    ):
        super().__init__(path)
        self.layer = _check_layer(layer)
        self.head = head
        self.name = f"mace-{_stem(path)}{_layer_suffix(self.layer)}"
        self.device = parse_device(device, self.name)
        self._calculator = None

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_calculator",)

    def load(self) -> None:
        """Load the model on its device (once); read its elements."""
        if self._calculator is not None:
            return
        device = self.torch_device()
        calculators = _import("mace.calculators", self.package)
        path = self._check_file()
        kwargs = {} if self.head is None else {"head": self.head}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            calculator = calculators.MACECalculator(model_paths=str(path), device=device, **kwargs)
        self.elements = frozenset(int(z) for z in calculator.z_table.zs)
        self._num_layers = int(calculator.models[0].num_interactions)
        self._model_dtype = str(calculator.default_dtype)
        if self.layer is not None and not -self._num_layers <= self.layer < self._num_layers:
            raise ModelSpecError(
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
