"""The feature store: structures and per-atom features of many models in one Zarr group.

Only this package knows the Zarr layout (:mod:`fredask.store.feature_store`):
every other module asks a :class:`FeatureStore` for feature arrays, progress
flags, the structure table and stored structure-level features.  It also owns
the store's integrity (:mod:`.integrity`, :mod:`.checks`), the sources of its
features (:mod:`.provenance`) and the geometry check of its structures
(:mod:`.geometry`).
"""

from fredask.store.feature_store import FORMAT_VERSION, FeatureStore, StoreError
from fredask.store.geometry import GeometryError, short_bond_structures
from fredask.store.integrity import DamagedChunkError
from fredask.store.structures import StructureFileError, StructureTable, read_structures

__all__ = [
    "FORMAT_VERSION",
    "DamagedChunkError",
    "FeatureStore",
    "GeometryError",
    "StoreError",
    "StructureFileError",
    "StructureTable",
    "read_structures",
    "short_bond_structures",
]
