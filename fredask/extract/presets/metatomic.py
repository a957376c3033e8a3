"""Metatomic models (e.g. PET-MAD) from a user-passed file (``"metatomic:PATH"``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fredask.extract.base import ExtractionError, _label
from fredask.extract.device import parse_device
from fredask.extract.presets._common import ModelSpecError, _import, _stem
from fredask.extract.presets._files import _FileExtractor

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
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs (``MetatomicCalculator(device=...)``);
        ``"auto"``: CUDA when torch sees it, else the CPU; on a dask-cuda
        worker ``"cuda"`` is the worker's own GPU (see
        :mod:`fredask.extract.device`).  Features come back to the host as
        float32 numpy arrays.
    """

    package = "metatomic-torch"

    def __init__(
        self,
        path: str | Path,
        output: str = "features",
        batch_size: int = 16,
        extensions_directory: str | None = None,
        device: str = "cpu",
    ):
        super().__init__(path)
        self.output = str(output)
        self.batch_size = int(batch_size)
        self.extensions_directory = extensions_directory
        short = _METATOMIC_SHORT.get(self.output)
        if short is None:
            short = "-" + re.sub(r"[^A-Za-z0-9._-]+", "-", self.output).strip("-")
        self.name = f"metatomic-{_stem(path)}{short}"
        self.device = parse_device(device, self.name)
        self._calculator = None

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_calculator", "_model_output")

    def load(self) -> None:
        """Load the model on its device (once); check it declares the output."""
        if self._calculator is not None:
            return
        device = self.torch_device()
        torch_api = _import("metatomic.torch", self.package)
        try:
            from metatomic.torch.ase_calculator import MetatomicCalculator
        except ImportError:  # newer releases moved it to metatomic-ase
            MetatomicCalculator = _import("metatomic_ase", self.package).MetatomicCalculator
        path = self._check_file()
        model = torch_api.load_atomistic_model(
            str(path), extensions_directory=self.extensions_directory
        )
        capabilities = model.capabilities()
        if self.output not in capabilities.outputs:
            raise ModelSpecError(
                f"{self.name}: the model has no output {self.output!r}; it has "
                f"{', '.join(sorted(capabilities.outputs))}"
            )
        self.elements = frozenset(int(z) for z in capabilities.atomic_types)
        self._model_dtype = str(capabilities.dtype)
        self._model_output = torch_api.ModelOutput(per_atom=True)
        self._calculator = MetatomicCalculator(model, device=device)

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
