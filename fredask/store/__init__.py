"""The feature store: structures and per-atom features of many models in one Zarr group.

Only this package knows the Zarr layout (:mod:`fredask.store.feature_store`):
every other module asks a :class:`FeatureStore` for feature arrays, progress
flags, the structure table and stored structure-level features.
"""

from fredask.store.feature_store import FORMAT_VERSION, FeatureStore, StoreError
from fredask.store.structures import StructureFileError, StructureTable, read_structures

__all__ = [
    "FORMAT_VERSION",
    "FeatureStore",
    "StoreError",
    "StructureFileError",
    "StructureTable",
    "read_structures",
]
