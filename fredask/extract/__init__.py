"""Per-atom features from real interatomic potentials, written into a store.

:mod:`fredask.extract.base` defines the :class:`Extractor` interface and the
generic torch hook extractor; :mod:`fredask.extract.presets` knows the models
that ship their weights (CHGNet, SevenNet) and those that need a model file
(MACE, metatomic/PET-MAD, fairchem UMA); :mod:`fredask.extract.runner` runs an
extractor over a store's structures on Dask workers, resumably.
"""

from fredask.extract.base import ExtractionError, Extractor, TorchHookExtractor

__all__ = ["ExtractionError", "Extractor", "TorchHookExtractor", "get_extractor"]


def get_extractor(spec: str, **options) -> Extractor:
    """The extractor for a model spec such as ``"chgnet:0.3.0"`` or ``"sevenn:7net-0"``.

    See :func:`fredask.extract.presets.get_extractor`.
    """
    from fredask.extract.presets import get_extractor as _get

    return _get(spec, **options)
