"""Per-atom features from real interatomic potentials, written into a store.

:mod:`fredask.extract.base` defines the :class:`Extractor` interface and the
generic torch hook extractor; :mod:`fredask.extract.presets` knows the models
that ship their weights (CHGNet, SevenNet) and those that need a model file
(MACE, metatomic/PET-MAD, fairchem UMA); :mod:`fredask.extract.runner` runs an
extractor over a store's structures on Dask workers, resumably;
:mod:`fredask.extract.device` owns the presets' ``device`` option (``"cpu"``,
``"cuda"``, ``"cuda:N"``, ``"auto"``).  A bad model spec, option or device is a
:class:`ModelSpecError` (a ``ValueError``) naming what exists.
"""

from fredask.extract.base import ExtractionError, Extractor, TorchHookExtractor
from fredask.extract.presets._common import ModelSpecError

__all__ = [
    "ExtractionError",
    "Extractor",
    "ModelSpecError",
    "TorchHookExtractor",
    "get_extractor",
    "preset_options",
]


def get_extractor(spec: str, **options) -> Extractor:
    """The extractor for a model spec such as ``"chgnet:0.3.0"`` or ``"sevenn:7net-0"``.

    See :func:`fredask.extract.presets.get_extractor`.
    """
    from fredask.extract.presets import get_extractor as _get

    return _get(spec, **options)


def preset_options(spec: str) -> tuple[str, ...]:
    """The keyword options :func:`get_extractor` takes for ``spec``.

    See :func:`fredask.extract.presets.preset_options`.
    """
    from fredask.extract.presets import preset_options as _options

    return _options(spec)
