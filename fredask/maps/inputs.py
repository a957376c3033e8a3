"""What a store's PCovR map is fitted on: one model's rows and a property per row.

At atom level the rows are atoms (``features/<model>``) and a per-structure
property is given to each of the structure's atoms; at structure level the
rows are structures and the features are the model's stored cumulants
(``structure_features/<model>/cumulants``, orders 1..``order``: the
structure features of ``fredask compare --level structure``).  The map is
fitted on the rows no model skipped whose property is known (not NaN); every
row is projected.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fredask.maps.pcovr import PCovRError, PCovRMap, pcovr
from fredask.store.feature_store import FeatureStore

#: The rows of a map: atoms or structures.
LEVELS = ("atom", "structure")


@dataclass(frozen=True)
class MapInputs:
    """One model's rows and the property of every row.

    Attributes
    ----------
    features : zarr.Array or dask.array.Array, shape (n_rows, p)
    values : numpy.ndarray of float64, shape (n_rows,)
        The property of every row (NaN where unknown).
    rows : numpy.ndarray of int64
        The rows to fit: not skipped by the model, property known.
    model, prop, level : str
        The model, the property's name and the rows' kind.
    structures : numpy.ndarray of int64, shape (n_rows,)
        The structure of every row.
    """

    features: object
    values: np.ndarray
    rows: np.ndarray
    model: str
    prop: str
    level: str
    structures: np.ndarray


def row_property(store: FeatureStore, values, level: str = "atom", what: str = "the property"):
    """A property given per structure (or, at atom level, per atom) as one value per row.

    Raises
    ------
    PCovRError
        Naming ``what``: neither one value per structure nor (atom level) per atom.
    """
    values = np.asarray(values, dtype=np.float64)
    n_structures, n_atoms = store.n_structures, store.n_atoms
    if values.ndim == 1 and values.shape[0] == n_structures:
        return np.repeat(values, store.n_atoms_per_structure()) if level == "atom" else values
    if level == "atom" and values.ndim == 1 and values.shape[0] == n_atoms:
        return values
    per_atom = f" or one per atom ({n_atoms})" if level == "atom" else ""
    raise PCovRError(
        f"{what} has shape {values.shape}; expected one value per structure "
        f"({n_structures}){per_atom}"
    )


def store_inputs(
    store: FeatureStore,
    model: str,
    prop,
    level: str = "atom",
    order: int | None = None,
    name: str | None = None,
) -> MapInputs:
    """The features of ``model`` and the property ``prop`` at ``level``.

    Parameters
    ----------
    store : FeatureStore
    model : str
        A model with complete features (and, at structure level, stored cumulants).
    prop : str or array-like
        A property the store records (:meth:`FeatureStore.structure_property`), or
        the values themselves, one per structure or (atom level) one per atom.
    level : {"atom", "structure"}
    order : int, optional
        Structure level: cumulants 1..order (default: all stored).
    name : str, optional
        The property's name in messages and results (default: ``prop`` when it
        is a name, else ``"property"``).

    Raises
    ------
    fredask.store.StoreError
        An unknown model or property (naming those there are), missing cumulants.
    PCovRError
        Values of the wrong length, fewer than two rows with a known property.
    """
    if level not in LEVELS:
        raise PCovRError(f"level must be one of {LEVELS}, got {level!r}")
    if order is not None and level != "structure":
        raise PCovRError("order applies to level='structure' only")
    name = name or (prop if isinstance(prop, str) else "property")
    values = store.structure_property(prop) if isinstance(prop, str) else prop
    features = store.feature_arrays([model])[model]
    per_structure = store.n_atoms_per_structure()
    if level == "structure":
        from fredask.structure.stored import stored_cumulants

        features = stored_cumulants(store, [model], order)[model]
        usable = store.usable_structures([model])
        structures = np.arange(store.n_structures)
    else:
        usable = store.usable_rows([model])
        structures = np.repeat(np.arange(store.n_structures), per_structure)
    values = row_property(store, values, level, f"property {name!r}")
    rows = usable[np.isfinite(values[usable])]
    if rows.size < 2:
        raise PCovRError(
            f"property {name!r} is known for {rows.size} of the {values.size} {level}s "
            "that can be mapped; PCovR needs at least 2"
        )
    return MapInputs(features, values, rows, model, name, level, structures)


def store_pcovr(
    store: FeatureStore,
    model: str,
    prop,
    level: str = "atom",
    order: int | None = None,
    name: str | None = None,
    **options,
) -> tuple[PCovRMap, MapInputs]:
    """The PCovR map of one model of a store against a property (:func:`store_inputs`).

    ``options`` go to :func:`fredask.maps.pcovr.pcovr` (``mixing``,
    ``n_components``, ``scaling``, ``client``...).
    """
    inputs = store_inputs(store, model, prop, level, order, name)
    result = pcovr(
        inputs.features,
        inputs.values,
        rows=inputs.rows,
        names=(model, inputs.prop),
        **options,
    )
    return result, inputs
