"""The extractor interface and the generic torch hook extractor."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np

from fredask.errors import FredaskError


class ExtractionError(FredaskError, RuntimeError):
    """A model cannot produce features for a structure."""


class Extractor(ABC):
    """Turns batches of ``ase.Atoms`` into per-atom features.

    Subclasses set :attr:`name` (the default store name of their features)
    and implement :meth:`load` (heavy: weights; called once per worker) and
    :meth:`atom_features`.  Extractors are pickled to Dask workers before
    :meth:`load`, so keep the constructor light.  A subclass whose model can
    run on a GPU sets :attr:`device` from its ``device`` option (checked with
    :func:`fredask.extract.device.parse_device`) and loads the model onto
    :meth:`torch_device`; features always come back as host numpy arrays.
    """

    #: Default name of the features in the store, e.g. ``"chgnet-0.3.0"``.
    name: str = "features"
    #: Elements (atomic numbers) the model covers, or None for any.
    elements: frozenset[int] | None = None
    #: The pip distribution that provides the model (named when it is missing).
    package: str = ""
    #: The device option: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``
    #: (see :mod:`fredask.extract.device`).
    device: str = "cpu"

    def __init__(self) -> None:
        self._loaded = False

    @abstractmethod
    def load(self) -> None:
        """Load the model (weights, device)."""

    @abstractmethod
    def _features(self, structures: Sequence) -> list[np.ndarray]:
        """One ``(n_atoms_i, n_features)`` array per structure."""

    def metadata(self) -> dict[str, object]:
        """Model, package and version, layer or output, checkpoint hash."""
        return {"model": self.name}

    def torch_device(self) -> str:
        """The torch device the model runs on in this process (``"cpu"`` or ``"cuda:N"``).

        Resolves :attr:`device` with :func:`fredask.extract.device.torch_device`
        (``"auto"``: CUDA when torch sees it, else the CPU).

        Raises
        ------
        ModelSpecError
            For a CUDA device torch does not see here, naming the device and
            the model.
        """
        from fredask.extract.device import torch_device

        return torch_device(self.device, self.name)

    def atom_features(self, structures: Sequence) -> list[np.ndarray]:
        """Per-atom features of each structure, checked.

        Raises
        ------
        ExtractionError
            For elements the model does not cover (naming structure and
            element), a wrong number of rows, or NaN/inf outputs.
        """
        if not self._loaded:
            self.load()
            self._loaded = True
        for index, atoms in enumerate(structures):
            self.check_elements(atoms, index)
        out = self._features(structures)
        for index, (atoms, values) in enumerate(zip(structures, out, strict=True)):
            if values.ndim != 2 or values.shape[0] != len(atoms):
                raise ExtractionError(
                    f"{self.name}: structure {_label(atoms, index)} has {len(atoms)} atoms "
                    f"but the model returned features of shape {values.shape}"
                )
            if not np.isfinite(values).all():
                raise ExtractionError(
                    f"{self.name}: NaN or infinite features for structure {_label(atoms, index)}"
                )
        return out

    def check_elements(self, atoms, index: int = 0) -> None:
        """Raise naming the structure and the first element the model does not cover."""
        if self.elements is None:
            return
        missing = sorted(set(int(z) for z in atoms.numbers) - self.elements)
        if missing:
            from ase.data import chemical_symbols

            raise ExtractionError(
                f"{self.name} does not cover element {chemical_symbols[missing[0]]} "
                f"(Z={missing[0]}) in structure {_label(atoms, index)}"
            )

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in self._unpicklable():
            state[key] = None
        state["_loaded"] = False
        return state

    def _unpicklable(self) -> tuple[str, ...]:
        """Attributes (loaded models) not sent to workers."""
        return ()


def _label(atoms, index: int) -> str:
    name = atoms.info.get("name") or atoms.info.get("label")
    formula = atoms.get_chemical_formula()
    return f"#{atoms.info.get('structure_index', index)} ({name or formula})"


def atom_batches(sizes: Sequence[int], max_atoms: int) -> list[range]:
    """Consecutive groups of structures (by index) with at most ``max_atoms`` atoms each.

    ``sizes`` are the structures' atom counts; a structure larger than
    ``max_atoms`` forms a group of its own.
    """
    groups, start, atoms = [], 0, 0
    for i, size in enumerate(sizes):
        if atoms and atoms + size > max_atoms:
            groups.append(range(start, i))
            start, atoms = i, 0
        atoms += size
    if len(sizes):
        groups.append(range(start, len(sizes)))
    return groups


def resolve_module(root, dotted: str):
    """The submodule of ``root`` at a dotted path (``"layers.3.mlp"``)."""
    module = root
    for part in dotted.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return module


class TorchHookExtractor(Extractor):
    """Features from any torch model behind an ASE calculator, by hooking a submodule.

    The calculator is evaluated on each structure; a forward hook (or, with
    ``pre_hook=True``, a forward pre-hook) on the submodule at ``module_path``
    captures its output (input) tensor, cloned before the model can mutate it.

    Parameters
    ----------
    make_calculator : callable returning an ASE calculator
        Called once per worker (in :meth:`load`).
    module_path : str
        Dotted path of the submodule under the torch model.
    model_attribute : str
        Attribute of the calculator that holds the torch model.
    pre_hook : bool
        Capture the submodule's input instead of its output.
    select : callable, optional
        Turns what the hook captured (a tensor, a tuple of arguments or a
        dict) into the ``(n_atoms, n_features)`` tensor.
    name : str
        Name of the features in the store.
    """

    def __init__(
        self,
        make_calculator: Callable[[], object],
        module_path: str,
        model_attribute: str = "model",
        pre_hook: bool = False,
        select: Callable | None = None,
        name: str = "hooked",
    ):
        super().__init__()
        self.make_calculator = make_calculator
        self.module_path = module_path
        self.model_attribute = model_attribute
        self.pre_hook = pre_hook
        self.select = select
        self.name = name
        self.calculator = None
        self._captured: list = []

    def _unpicklable(self) -> tuple[str, ...]:
        return ("calculator",)

    def _new_calculator(self):
        """The ASE calculator (``make_calculator()``; a preset passes its device)."""
        return self.make_calculator()

    def load(self) -> None:
        self.calculator = self._new_calculator()
        root = resolve_module(self.calculator, self.model_attribute)
        module = resolve_module(root, self.module_path)
        if self.pre_hook:
            module.register_forward_pre_hook(lambda _m, args: self._capture(args))
        else:
            module.register_forward_hook(lambda _m, _args, output: self._capture(output))

    def _capture(self, value) -> None:
        value = self.select(value) if self.select else _first_tensor(value)
        self._captured.append(value.detach().clone())

    def metadata(self) -> dict[str, object]:
        return {
            "model": self.name,
            "layer": self.module_path,
            "hook": "forward_pre_hook" if self.pre_hook else "forward_hook",
        }

    def _features(self, structures: Sequence) -> list[np.ndarray]:
        out = []
        for atoms in structures:
            atoms = atoms.copy()
            self.calculator.reset()  # an unchanged structure would not be re-evaluated
            atoms.calc = self.calculator
            self._captured.clear()
            atoms.get_potential_energy()
            if not self._captured:
                raise ExtractionError(f"{self.name}: hook on {self.module_path!r} never fired")
            out.append(self._captured[-1].cpu().numpy())
        return out


def _first_tensor(value):
    if isinstance(value, tuple | list):
        return _first_tensor(value[0])
    if isinstance(value, dict):
        raise ExtractionError("the hooked value is a dict; pass select= to pick the tensor")
    return value
