"""Extractors for real interatomic potentials, by spec string.

Two families:

* models whose weights ship inside their pip package and run with no
  download: CHGNet (``"chgnet:0.3.0"``, ``"chgnet:0.2.0"``,
  ``"chgnet:r2scan"``) and SevenNet (``"sevenn:7net-0"``,
  ``"sevenn:7net-0_22may2024"``, ``"sevenn:7net-l3i5"``,
  ``"sevenn:7net-mf-0"``);
* models whose file the user passes: ``"mace:PATH"`` (``mace-torch``),
  ``"metatomic:PATH"`` (``metatomic-torch``, e.g. PET-MAD), ``"uma:PATH"``
  (``fairchem-core``) and ``"dpa:PATH"`` (``deepmd-kit``, PyTorch backend).
  Those packages are imported lazily in
  :meth:`~fredask.extract.base.Extractor.load`.

No code here downloads anything: the shipped checkpoints are located inside
the installed packages and passed to the models as files.

Every preset takes ``device=`` (``"cpu"``, the default, ``"cuda"``,
``"cuda:N"`` or ``"auto"``; :mod:`fredask.extract.device`) and loads its model
there; the features come back to the host as float32 numpy arrays.

This package holds the registry (:func:`get_extractor`, :func:`known_specs`,
:func:`preset_options`, :func:`check_ready`);
each family lives in its own module (:mod:`.chgnet`, :mod:`.sevenn`,
:mod:`.mace`, :mod:`.metatomic`, :mod:`.uma`, :mod:`.dpa`), with shared helpers in
:mod:`._common` and the base of the file-based extractors in :mod:`._files`.

Examples
--------
>>> from fredask.extract import get_extractor
>>> get_extractor("chgnet:0.3.0").name
'chgnet-0.3.0'
>>> get_extractor("chgnet:0.3.0", layer=1).name
'chgnet-0.3.0-layer1'
>>> get_extractor("sevenn:7net-mf-0", modal="PBE").name
'sevenn-7net-mf-0-pbe'
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

from fredask.extract.base import Extractor
from fredask.extract.presets._common import DEFAULT_VACUUM, ModelSpecError, _missing, boxed
from fredask.extract.presets._files import _FileExtractor
from fredask.extract.presets.chgnet import CHGNET_MODELS, CHGNetExtractor
from fredask.extract.presets.dpa import DPAExtractor
from fredask.extract.presets.mace import MACEExtractor
from fredask.extract.presets.metatomic import MetatomicExtractor
from fredask.extract.presets.sevenn import SEVENN_MODALS, SEVENN_MODELS, SevenNetExtractor
from fredask.extract.presets.uma import UMAExtractor

__all__ = [
    "CHGNET_MODELS",
    "DEFAULT_VACUUM",
    "PRESETS",
    "SEVENN_MODALS",
    "SEVENN_MODELS",
    "CHGNetExtractor",
    "DPAExtractor",
    "MACEExtractor",
    "MetatomicExtractor",
    "ModelSpecError",
    "SevenNetExtractor",
    "UMAExtractor",
    "boxed",
    "check_ready",
    "get_extractor",
    "known_specs",
    "parse_spec",
    "preset_options",
]


#: The one registry: spec prefix -> (extractor class, its shipped models, or None
#: for a class that takes a model file the user passes).
PRESETS: dict[str, tuple[type[Extractor], tuple[str, ...] | None]] = {
    "chgnet": (CHGNetExtractor, tuple(CHGNET_MODELS)),
    "sevenn": (SevenNetExtractor, tuple(SEVENN_MODELS)),
    "mace": (MACEExtractor, None),
    "metatomic": (MetatomicExtractor, None),
    "uma": (UMAExtractor, None),
    "dpa": (DPAExtractor, None),
}


#: The module each preset imports, located (not imported) by :func:`check_ready`.
PRESET_MODULES: dict[str, str] = {
    "chgnet": "chgnet",
    "sevenn": "sevenn",
    "mace": "mace",
    "metatomic": "metatomic.torch",
    "uma": "fairchem.core",
    "dpa": "deepmd",
}


def known_specs() -> list[str]:
    """The spec strings :func:`get_extractor` accepts (``PATH``: a model file).

    Returns
    -------
    list of str
    """
    return [
        f"{prefix}:{model}"
        for prefix, (_, models) in PRESETS.items()
        for model in (models if models is not None else ("PATH",))
    ]


def parse_spec(spec: str) -> tuple[str, str]:
    """``"PREFIX:MODEL"`` as ``(prefix, model)``, the prefix lower-cased.

    Raises
    ------
    ModelSpecError
        For a spec that is not ``PREFIX:MODEL``, an unknown prefix or no
        model; the message lists the known specs.
    """
    known = ", ".join(known_specs())
    if not isinstance(spec, str) or ":" not in spec:
        raise ModelSpecError(f"model spec {spec!r} is not 'PREFIX:MODEL'; known: {known}")
    prefix, _, model = spec.partition(":")
    prefix, model = prefix.strip().lower(), model.strip()
    if prefix not in PRESETS:
        raise ModelSpecError(f"unknown model prefix {prefix!r} in {spec!r}; known: {known}")
    if not model:
        raise ModelSpecError(f"model spec {spec!r} names no model; known: {known}")
    return prefix, model


def preset_options(spec: str) -> tuple[str, ...]:
    """The keyword options the extractor of ``spec`` takes (``modal`` only where it has one).

    Parameters
    ----------
    spec : str
        A model spec, e.g. ``"sevenn:7net-mf-0"``.

    Returns
    -------
    tuple of str
        e.g. ``("layer", "vacuum", "batch_atoms")`` for CHGNet.
    """
    prefix, model = parse_spec(spec)
    cls = PRESETS[prefix][0]
    # the first parameter after ``self`` is the model name or file
    accepted = tuple(inspect.signature(cls.__init__).parameters)[2:]
    if prefix == "sevenn":
        key = model.lower().replace("sevennet-", "7net-")
        if key not in SEVENN_MODALS:
            accepted = tuple(a for a in accepted if a != "modal")
    return accepted


def check_ready(extractor: Extractor) -> None:
    """Check, without importing it or loading weights, that an extractor can load.

    Its package must be installed and, for a model file the user passes,
    the file must exist.

    Raises
    ------
    ModelSpecError
        Naming the missing package (and the pip command) or model file.
    """
    prefix = next((p for p, (cls, _) in PRESETS.items() if isinstance(extractor, cls)), None)
    module = PRESET_MODULES.get(prefix)
    if module is not None:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package that is missing
            found = False
        if not found:
            raise ModelSpecError(f"{extractor.name}: {_missing(extractor.package)}")
    if isinstance(extractor, _FileExtractor) and not Path(extractor.path).expanduser().is_file():
        raise ModelSpecError(f"{extractor.name}: model file {extractor.path} does not exist")


def get_extractor(spec: str, **options) -> Extractor:
    """The extractor for a model spec such as ``"chgnet:0.3.0"`` or ``"mace:model.pt"``.

    Parameters
    ----------
    spec : str
        ``"PREFIX:MODEL"``: ``chgnet:{0.3.0,0.2.0,r2scan}``,
        ``sevenn:{7net-0,7net-0_22may2024,7net-l3i5,7net-mf-0}``, or
        ``mace:PATH``, ``metatomic:PATH``, ``uma:PATH``, ``dpa:PATH`` for a model file.
    **options
        Keyword options of the extractor class (:func:`preset_options`):
        ``layer``, ``vacuum``, ``batch_atoms`` (CHGNet); ``modal``,
        ``stop_at_hook`` (SevenNet); ``layer``, ``head``, ``features`` (MACE);
        ``output``, ``batch_size``, ``extensions_directory`` (metatomic);
        ``task``, ``layer``, ``module_path``, ``inference_settings`` (UMA);
        ``head``, ``output`` (DPA); ``device`` (every preset: ``"cpu"``,
        ``"cuda"``, ``"cuda:N"`` or ``"auto"``).  Every default is the paper's
        "last-layer" features: the input of the model's energy read-out.

    Returns
    -------
    Extractor
        Not loaded yet (picklable); weights load on first use.

    Raises
    ------
    ModelSpecError
        A ``ValueError``: for an unknown prefix, an unknown CHGNet or SevenNet
        model, an option the extractor does not take, or an unknown device;
        the message lists what is known.
    """
    prefix, model = parse_spec(spec)
    accepted = preset_options(spec)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ModelSpecError(
            f"{spec}: {prefix} models take no option {', '.join(map(repr, unknown))}; "
            f"options: {', '.join(accepted)}"
        )
    return PRESETS[prefix][0](model, **options)
