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

#: The paper's last-layer features of PET-MAD: the input of the energy head.
LAST_LAYER = "mtt::aux::energy_last_layer_features"

#: Name suffixes of the usual metatomic feature outputs (``"feature"``: the backbone).
_METATOMIC_SHORT = {LAST_LAYER: "", "feature": "-features"}

#: Output names of older metatomic releases (metatomic-torch 0.1.19 declares both).
_OLD_NAMES = {"feature": "features"}


class MetatomicExtractor(_FileExtractor):
    """Per-atom features of a metatomic model (e.g. PET-MAD) through ``run_model``.

    Structures go through ``MetatomicCalculator.run_model`` (``metatomic_ase``;
    ``metatomic.torch.ase_calculator`` for older releases), which builds the
    systems (the cell only along periodic directions) and vesin neighbour lists
    as the ASE calculator does; row ``i`` of a structure is the sample of atom ``i``.

    Parameters
    ----------
    path : str
        An exported metatomic model (``.pt``).
    output : str
        ``"mtt::aux::energy_last_layer_features"`` (default: the input of the
        energy head, metatrain's last-layer features), ``"feature"`` (also
        spelled ``"features"``: the backbone features), or any other per-atom
        output the model declares.
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
        output: str = LAST_LAYER,
        batch_size: int = 16,
        extensions_directory: str | None = None,
        device: str = "cpu",
    ):
        super().__init__(path)
        self.output = "feature" if str(output) == "features" else str(output)
        self.batch_size = int(batch_size)
        self.extensions_directory = extensions_directory
        short = _METATOMIC_SHORT.get(self.output)
        if short is None:
            short = "-" + re.sub(r"[^A-Za-z0-9._-]+", "-", self.output).strip("-")
        self.name = f"metatomic-{_stem(path)}{short}"
        self.device = parse_device(device, self.name)
        self._calculator = None
        self._key = self.output

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_calculator", "_model_output")

    def load(self) -> None:
        """Load the model on its device (once); check it declares the output per atom."""
        if self._calculator is not None:
            return
        device = self.torch_device()
        torch_api = _import("metatomic.torch", self.package)
        try:
            from metatomic_ase import MetatomicCalculator
        except ImportError:  # older releases: in metatomic-torch itself
            from metatomic.torch.ase_calculator import MetatomicCalculator
        model = torch_api.load_atomistic_model(
            str(self._check_file()), extensions_directory=self.extensions_directory
        )
        capabilities = model.capabilities()
        outputs = capabilities.outputs
        key = self.output if self.output in outputs else _OLD_NAMES.get(self.output)
        if key not in outputs:
            raise ModelSpecError(
                f"{self.name}: the model has no output {self.output!r}; it has "
                f"{', '.join(sorted(outputs))}"
            )
        if _sample_kind(outputs[key]) not in (None, "atom"):
            raise ModelSpecError(f"{self.name}: the model's output {key!r} is not per atom")
        self._key = key
        self.elements = frozenset(int(z) for z in capabilities.atomic_types)
        self._model_dtype = str(capabilities.dtype)
        try:
            self._model_output = torch_api.ModelOutput(sample_kind="atom")
        except (TypeError, RuntimeError):  # older releases: per_atom only
            self._model_output = torch_api.ModelOutput(per_atom=True)
        self._calculator = MetatomicCalculator(model, device=device)

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        out = []
        for start in range(0, len(structures), self.batch_size):
            chunk = list(structures[start : start + self.batch_size])
            tensor_map = self._calculator.run_model(chunk, {self._key: self._model_output})
            tensor_map = tensor_map[self._key]
            if len(tensor_map) != 1:
                raise ExtractionError(
                    f"{self.name}: output {self._key!r} has {len(tensor_map)} blocks; "
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
                        f"{self.name}: output {self._key!r} has {len(rows)} rows for "
                        f"structure {_label(atoms, start + offset)} of {len(atoms)} atoms"
                    )
                features = np.empty((len(atoms), values.shape[1]), dtype=np.float32)
                features[atom[rows]] = values[rows]
                out.append(features)
        return out

    def metadata(self) -> dict[str, object]:
        """As :meth:`_FileExtractor.metadata`, with the output name."""
        return {**super().metadata(), "layer": self.output}


def _sample_kind(output) -> str | None:
    """``"atom"``, ``"system"``, ... of a declared model output (None if it does not say)."""
    kind = getattr(output, "sample_kind", None)
    if kind is None and isinstance(getattr(output, "per_atom", None), bool):
        kind = "atom" if output.per_atom else "system"
    return kind
