"""DeePMD-kit DPA models from a user-passed model file (``"dpa:PATH"``, ``deepmd-kit``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fredask.extract.base import ExtractionError, _label
from fredask.extract.device import parse_device
from fredask.extract.presets._common import (
    DEFAULT_VACUUM,
    ModelSpecError,
    _import,
    _stem,
    boxed,
)
from fredask.extract.presets._files import _FileExtractor

#: The outputs: option value -> (``DeepPot`` method, name suffix, what it is).
OUTPUTS = {
    "fitting_last_layer": ("eval_fitting_last_layer", "", "last hidden layer of the fitting net"),
    "descriptor": ("eval_descriptor", "-descriptor", "per-atom output of the descriptor"),
}


class DPAExtractor(_FileExtractor):
    """The last hidden layer of a DPA model's fitting net (``DeepPot.eval_fitting_last_layer``).

    ``deepmd.infer.DeepPot(path, head=head)`` loads the model and evaluates
    one structure (one frame) at a time with ``atom_types`` indexing the
    model's own ``get_type_map()`` (not a per-structure numbering of the
    elements).  Molecules go in with ``cells=None``; fully periodic crystals
    with their cell; partially periodic structures (slabs) are boxed with
    vacuum wider than the cutoff along their non-periodic directions, as
    deepmd-kit knows only full or no periodicity.  In deepmd-kit 3.2 both
    outputs are what ``DeepPot.eval_embedding`` returns (``atomic_feature``,
    ``descriptor``).

    Parameters
    ----------
    path : str
        A frozen model (``.pth``, e.g. from ``dp --pt freeze --head BRANCH``)
        or a checkpoint (``.pt``; a multi-task one needs ``head``).
    head : str, optional
        The branch of a multi-task checkpoint (name or alias, as
        ``dp --pt show MODEL model-branch`` lists them).
    output : {"fitting_last_layer", "descriptor"}
        ``"fitting_last_layer"`` (default: the activation of the fitting
        net's last hidden layer, the paper's DPA-3.1 last-layer features) or
        ``"descriptor"`` (the per-atom output of the descriptor, the backbone).
    device : {"cpu", "cuda", "cuda:N", "auto"}
        Where the model runs.  deepmd-kit fixes its device when
        ``deepmd.pt`` is first imported (``deepmd.pt.utils.env.DEVICE``: the
        CPU when the environment variable ``DEVICE=cpu`` or torch sees no
        CUDA, else ``cuda:$LOCAL_RANK``); :meth:`load` sets those two
        variables for that import and refuses a device other than the one a
        previous import in this process fixed.
    """

    package = "deepmd-kit"

    def __init__(
        self,
        path: str | Path,
        head: str | None = None,
        output: str = "fitting_last_layer",
        device: str = "cpu",
    ):
        super().__init__(path)
        self.head = None if head is None else str(head)
        suffix = "" if head is None else f"-{head}"
        self.name = f"dpa-{_stem(path)}{suffix}"
        if output not in OUTPUTS:
            raise ModelSpecError(
                f"{self.name}: unknown output {output!r}; use one of {', '.join(OUTPUTS)}"
            )
        self.output = output
        self.name += OUTPUTS[output][1]
        self.device = parse_device(device, self.name)
        self._model = None
        self._types: dict[str, int] = {}

    def _unpicklable(self) -> tuple[str, ...]:
        return ("_model",)

    def _import_on(self, device: str) -> None:
        """Import ``deepmd.pt`` with its device fixed to ``device``; check an earlier import."""
        env_name = "deepmd.pt.utils.env"
        if env_name not in sys.modules:
            saved = {key: os.environ.get(key) for key in ("DEVICE", "LOCAL_RANK")}
            os.environ["DEVICE"] = "cpu" if device == "cpu" else "cuda"
            os.environ["LOCAL_RANK"] = device.partition(":")[2] or "0"
            try:
                _import(env_name, self.package)
            except RuntimeError as exc:  # e.g. its compiled ops built for another torch
                raise ModelSpecError(
                    f"{self.name}: deepmd.pt does not import: {str(exc).splitlines()[0]}"
                ) from exc
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
        fixed = str(sys.modules[env_name].DEVICE)
        if fixed != device:
            raise ModelSpecError(
                f"{self.name}: device {device!r} asked, but deepmd-kit already runs on {fixed} "
                "in this process (fixed when deepmd.pt was first imported); run it in a "
                "separate process (e.g. on a cluster worker)"
            )

    def load(self) -> None:
        """Load the model with ``DeepPot`` on its device and read its type map."""
        if self._model is not None:
            return
        self._import_on(self.torch_device())
        infer = _import("deepmd.infer", self.package)
        path = self._check_file()
        try:
            model = infer.DeepPot(str(path), head=self.head)
        except AssertionError as exc:  # deepmd's way to refuse a missing or unknown head
            raise ModelSpecError(f"{self.name}: {str(exc).splitlines()[0]}") from None
        if self.head is not None and "model_dict" not in model.get_model_def_script():
            raise ModelSpecError(
                f"{self.name}: head {self.head!r} given, but {path.name} is not a multi-task "
                "checkpoint (a frozen model holds one branch); drop head"
            )
        from ase.data import atomic_numbers

        self._types = {symbol: i for i, symbol in enumerate(model.get_type_map())}
        self.elements = frozenset(atomic_numbers[s] for s in self._types if s in atomic_numbers)
        try:
            self._model_dtype = str(next(model.get_model().parameters()).dtype)
            self._model_dtype = self._model_dtype.removeprefix("torch.")
        except (AttributeError, NotImplementedError, StopIteration):
            self._model_dtype = None
        self._model = model

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        evaluate = getattr(self._model, OUTPUTS[self.output][0])
        vacuum = max(DEFAULT_VACUUM, self._model.get_rcut() + 1.0)
        out = []
        for index, atoms in enumerate(structures):
            pbc = np.asarray(atoms.pbc, dtype=bool)
            if pbc.any() and not pbc.all():
                atoms = boxed(atoms, vacuum)
            types = np.array([self._types[s] for s in atoms.get_chemical_symbols()])
            cell = atoms.cell.array.reshape(1, 9) if pbc.any() else None
            try:
                values = evaluate(atoms.positions.reshape(1, -1), cell, types)
            except (RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ExtractionError(
                    f"{self.name}: structure {_label(atoms, index)}: {first}"
                ) from exc
            values = np.asarray(values).reshape(len(atoms), -1)
            out.append(np.ascontiguousarray(values, dtype=np.float32))
        return out

    def metadata(self) -> dict[str, object]:
        """As :meth:`_FileExtractor.metadata`, with the output taken, the head and type map."""
        method, _, what = OUTPUTS[self.output]
        head = "" if self.head is None else f" of head {self.head}"
        return {
            **super().metadata(),
            "layer": f"DeepPot.{method}: {what}{head}",
            "output": self.output,
            "head": self.head,
            "type_map": list(self._types) or None,
        }
