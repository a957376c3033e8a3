"""MACE models from a user-passed model file (``"mace:PATH"``, package ``mace-torch``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fredask.extract.base import ExtractionError
from fredask.extract.device import parse_device
from fredask.extract.presets._common import (
    ModelSpecError,
    _check_layer,
    _import,
    _layer_suffix,
    _stem,
)
from fredask.extract.presets._files import _FileExtractor

#: The ``features`` option: what the preset takes per interaction.
MACE_FEATURES = ("last-layer", "descriptors")

_LAST_LAYER = (
    "last-layer features (l=0 node features at each linear read-out, "
    "non_linearity(linear_1(.)) of the non-linear read-out)"
)


class MACEExtractor(_FileExtractor):
    """Per-atom features of a MACE model, per interaction, concatenated.

    Parameters
    ----------
    path : str
        A MACE model file (e.g. ``mace-mp-0b3-medium.model``).
    layer : int, optional
        None: every interaction, concatenated; ``i``: interaction ``i`` only
        (``-1``: the last).
    head : str, optional
        Head of a multi-head model.
    features : {"last-layer", "descriptors"}
        ``"last-layer"`` (default, the paper's LLPR-style features): what each
        interaction's read-out sees; for a ``LinearReadoutBlock`` the scalar
        (l = 0) node features, for the final ``NonLinearReadoutBlock``
        ``non_linearity(linear_1(z))`` (the selected head's columns);
        ``"descriptors"``: ``MACECalculator.get_descriptors(atoms,
        invariants_only=True)``, the invariant node features of each
        interaction (store name ``mace-<stem>-descriptors``).
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs (``MACECalculator(device=...)``); ``"auto"``:
        CUDA when torch sees it, else the CPU.  Features come back to the host
        as float32 numpy arrays (MACE models usually run in float64).
    """

    package = "mace-torch"

    def __init__(
        self,
        path: str | Path,
        layer: int | None = None,
        head: str | None = None,
        features: str = "last-layer",
        device: str = "cpu",
    ):
        super().__init__(path)
        self.layer = _check_layer(layer)
        self.head = head
        if features not in MACE_FEATURES:
            raise ModelSpecError(
                f"mace-{_stem(path)}: features must be one of "
                f"{', '.join(map(repr, MACE_FEATURES))}, got {features!r}"
            )
        self.features = features
        kind = "" if features == "last-layer" else f"-{features}"
        self.name = f"mace-{_stem(path)}{kind}{_layer_suffix(self.layer)}"
        self.device = parse_device(device, self.name)
        self._calculator = None
        self._captured: dict[int, object] = {}
        self._readout_layers: list[int] | None = None

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_calculator", "_captured")

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
        self._captured, self._readout_layers = {}, None  # read-out hooks: on first use

    def _hook_readouts(self) -> list[int]:
        """Hook every read-out of the (first) model; the interaction each one reads."""
        o3 = _import("e3nn.o3", self.package)
        calculator = self._calculator
        model = calculator.models[0]
        readouts = list(model.readouts)
        if len(readouts) == self._num_layers:
            layers = list(range(self._num_layers))
        elif len(readouts) == 1:  # use_last_readout_only
            layers = [self._num_layers - 1]
        else:
            raise ModelSpecError(
                f"{self.name}: {len(readouts)} read-outs for {self._num_layers} interactions; "
                "use features='descriptors'"
            )
        heads = list(calculator.available_heads)
        head = heads.index(calculator.head) if calculator.head in heads else 0
        n_heads = len(heads)
        for index, (readout, layer) in enumerate(zip(readouts, layers, strict=True)):
            kind = getattr(readout, "original_name", type(readout).__name__)
            if kind == "LinearReadoutBlock":
                irreps = o3.Irreps(str(model.products[layer].linear.irreps_out))
                width = irreps.count(o3.Irrep(0, 1))

                def scalars(_m, args, index=index, width=width):
                    self._captured[index] = args[0][:, :width]

                readout.register_forward_pre_hook(scalars)
            elif kind == "NonLinearReadoutBlock":

                def hidden(_m, _args, out, index=index):
                    width = out.shape[1] // n_heads
                    self._captured[index] = out[:, head * width : (head + 1) * width]

                readout.non_linearity.register_forward_hook(hidden)
            else:
                raise ModelSpecError(
                    f"{self.name}: read-out {kind} has no last-layer features here; "
                    "use features='descriptors'"
                )
        if self.layer is not None and self.layer % self._num_layers not in layers:
            raise ModelSpecError(f"{self.name}: interaction {self.layer} has no read-out")
        return layers

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        if self.features == "last-layer" and self._readout_layers is None:
            self._readout_layers = self._hook_readouts()
        out = []
        for atoms in structures:
            self._captured.clear()
            values = np.asarray(
                self._calculator.get_descriptors(atoms.copy(), invariants_only=True)
            ).reshape(len(atoms), -1)
            if self.features == "descriptors":
                blocks = dict(enumerate(np.split(values, self._num_layers, axis=1)))
            else:
                if len(self._captured) != len(self._readout_layers):
                    raise ExtractionError(f"{self.name}: the read-out hooks did not fire")
                blocks = {
                    layer: self._captured[i][: len(atoms)].detach().cpu().numpy()
                    for i, layer in enumerate(self._readout_layers)
                }
            if self.layer is not None:
                blocks = {0: blocks[self.layer % self._num_layers]}
            values = np.concatenate([blocks[key] for key in sorted(blocks)], axis=1)
            out.append(np.ascontiguousarray(values, dtype=np.float32))
        return out

    def metadata(self) -> dict[str, object]:
        """As :meth:`_FileExtractor.metadata`, with the features and the layer."""
        layer = "all interactions" if self.layer is None else f"interaction {self.layer}"
        kind = _LAST_LAYER if self.features == "last-layer" else "get_descriptors invariants"
        return {**super().metadata(), "features": self.features, "layer": f"{kind}, {layer}"}
