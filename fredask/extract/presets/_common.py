"""Helpers shared by the model presets: spec errors, installed packages, lazy imports, names, boxes.

Nothing here imports a model package: :func:`_package_dir` locates one without
importing it, and :func:`_import` imports one on first use with an ImportError
that names the pip package to install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fredask.errors import FredaskError

if TYPE_CHECKING:
    from ase import Atoms


class ModelSpecError(FredaskError, ValueError):
    """A model spec or preset option that does not name a model fredask can build."""


#: Default vacuum (Å) between periodic images of a boxed molecule for CHGNet.
DEFAULT_VACUUM = 10.0


def _package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed package, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(pip_name)
    return Path(next(iter(spec.submodule_search_locations)))


def _package_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _missing(pip: str, error: BaseException | None = None) -> ImportError:
    detail = f" ({error})" if error is not None else ""
    return ImportError(
        f"this extractor needs the Python package {pip!r}, which is not importable"
        f"{detail}; install it with: pip install {pip}"
    )


def _import(module: str, pip_name: str):
    """``importlib.import_module`` with an ImportError naming the pip package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise _missing(pip_name, exc) from exc


def _stem(path: str | Path) -> str:
    """A store-friendly short name of a model file."""
    stem = Path(path).name
    for suffix in (".model", ".pt", ".pth", ".ckpt", ".tar"):
        stem = stem.removesuffix(suffix)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "model"


def _layer_suffix(layer: int | None) -> str:
    if layer is None:
        return ""
    # never "-last-layer": that names the paper's read-out features, not an index
    return f"-layer{layer}"


def _check_layer(layer) -> int | None:
    if layer is None:
        return None
    if isinstance(layer, bool) or not isinstance(layer, int | np.integer):
        raise ModelSpecError(f"layer must be None or an integer, got {layer!r}")
    return int(layer)


def boxed(atoms: Atoms, vacuum: float = DEFAULT_VACUUM) -> Atoms:
    """A fully periodic copy of ``atoms``, with vacuum along non-periodic directions.

    Along every direction with ``pbc=False`` the cell vector is replaced so that
    the atoms' extent plus ``vacuum`` Å fits, with the atoms centred (ASE's
    ``center(vacuum=vacuum / 2, axis=...)``: ``vacuum / 2`` on each side, so
    periodic images are ``vacuum`` Å apart); then ``pbc`` is set to True
    everywhere.  Fully periodic structures are returned unchanged (not copied).
    A model with cutoff ``rc < vacuum`` then sees exactly the isolated
    molecule (or slab): no neighbour across the box boundary.

    Parameters
    ----------
    atoms : ase.Atoms
    vacuum : float
        Distance (Å) between periodic images along non-periodic directions.

    Returns
    -------
    ase.Atoms
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        return atoms
    atoms = atoms.copy()
    atoms.center(vacuum=vacuum / 2, axis=tuple(int(i) for i in np.flatnonzero(~pbc)))
    atoms.pbc = True
    return atoms
