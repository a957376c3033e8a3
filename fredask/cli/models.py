"""Model specs and preset options of the command line, checked before any store is written.

``--model SPEC`` (repeatable) with ``--option KEY=VALUE`` (repeatable), and the
shortcuts ``--layer`` (CHGNet, MACE), ``--modal`` (SevenNet's multi-fidelity
``7net-mf-0``) and ``--device`` (every preset).  An option goes to every model
whose preset takes it; one that no model takes is refused with the options each
preset has.  Nothing here loads weights: a spec is checked by building its
(unloaded) extractor, its package by locating it, a model file by its existence,
a device by its spelling (:func:`check_device_argument`; whether torch sees a
CUDA device is checked where the models run, see
:func:`fredask.extract.device.check_devices`).
"""

from __future__ import annotations

import argparse

from fredask.cli.checks import CommandError, key_value

#: Shortcut flags for preset options: attribute of ``args`` -> option name.
SHORTCUTS = {"layer": "layer", "modal": "modal", "device": "device"}

#: The values ``--device`` takes (``cuda:N`` too), as :mod:`fredask.extract.device` reads them.
DEVICES = ("cpu", "cuda", "auto")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--option KEY=VALUE`` (repeatable), ``--layer``, ``--modal`` and ``--device``.

    ``--device`` is not checked by argparse (its default, None, means the
    presets' ``"cpu"``): :func:`check_device_argument` refuses a bad value in
    one line before any file is read.
    """
    parser.add_argument(
        "--option",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a preset option, passed to every --model that takes it (repeatable): CHGNet "
        "layer, vacuum, batch_atoms; SevenNet modal (7net-mf-0), stop_at_hook; MACE layer, "
        "head, features (last-layer or descriptors); metatomic output, batch_size, "
        "extensions_directory; UMA task, layer, module_path, inference_settings; DPA head, "
        "output; every preset: device",
    )
    parser.add_argument(
        "--layer",
        help="the option layer: CHGNet readout (default), atom_fea or a convolution index; "
        "MACE an interaction index; UMA last (default) or backbone",
    )
    parser.add_argument(
        "--modal", help="the option modal: the fidelity of sevenn:7net-mf-0 (PBE or R2SCAN)"
    )
    parser.add_argument(
        "--device",
        metavar="{" + ",".join(DEVICES) + "}",
        help="the option device: where every model runs: cpu (default), cuda (cuda:N: GPU N; "
        "on a dask-cuda cluster cuda is each worker's own GPU), or auto (CUDA when torch sees "
        "it, else the CPU); cuda is refused when torch sees no CUDA device where the work runs",
    )


def check_device_argument(args: argparse.Namespace) -> None:
    """Refuse, in one line, a ``--device`` that is not cpu, cuda, cuda:N or auto.

    Reads no file and imports no torch (whether torch sees a CUDA device is
    checked where the models run, by :func:`fredask.extract.device.check_devices`).
    """
    value = getattr(args, "device", None)
    if value is None:
        return
    from fredask.extract.device import parse_device
    from fredask.extract.presets import ModelSpecError

    try:
        args.device = parse_device(value)
    except ModelSpecError as error:
        raise CommandError(f"--device {value}: {error}") from None


def parse_value(text: str) -> object:
    """An option's value: an int, a float, true/false, none, or the text itself."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def model_options(args: argparse.Namespace) -> dict[str, object]:
    """The preset options of the command line (``--option``, ``--layer``, ``--modal``)."""
    options: dict[str, object] = {}
    for key, value in getattr(args, "option", []):
        if key in options:
            raise CommandError(f"--option {key} given twice")
        options[key] = parse_value(value)
    for attribute, key in SHORTCUTS.items():
        value = getattr(args, attribute, None)
        if value is None:
            continue
        if key in options:
            raise CommandError(f"--{attribute} and --option {key}= both given; give one")
        options[key] = parse_value(value)
    return options


def build_extractors(specs: list[str], options: dict[str, object]) -> list:
    """The (unloaded) extractors of ``specs``, or one line saying what is wrong.

    Parameters
    ----------
    specs : list of str
        ``--model`` values.
    options : dict
        Preset options; each goes to the models whose preset takes it.

    Returns
    -------
    list of Extractor

    Raises
    ------
    ModelSpecError
        An unknown spec (the message lists the known ones), a bad option value,
        a missing package or model file.
    CommandError
        An option that no model takes, or two specs with the same features name.
    """
    from fredask.extract.presets import check_ready, get_extractor, preset_options

    extractors, used = [], set()
    accepted = {spec: preset_options(spec) for spec in specs}
    for spec in specs:
        own = {key: value for key, value in options.items() if key in accepted[spec]}
        used |= set(own)
        extractors.append(get_extractor(spec, **own))
    unused = sorted(set(options) - used)
    if unused:
        takes = "; ".join(f"{spec} takes {', '.join(accepted[spec]) or 'none'}" for spec in specs)
        raise CommandError(f"no --model takes the option {', '.join(unused)} ({takes})")
    names = [extractor.name for extractor in extractors]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise CommandError(f"--model gives the features {', '.join(twice)} twice")
    for extractor in extractors:
        check_ready(extractor)
    return extractors


def check_elements(extractors: list, table) -> None:
    """Refuse, naming model, element and structure, an element a model does not cover.

    Parameters
    ----------
    extractors : list of Extractor
        Models whose ``elements`` is None cover every element.
    table : fredask.store.StructureTable
    """
    import numpy as np
    from ase.data import chemical_symbols

    numbers = np.asarray(table.numbers)
    present = set(np.unique(numbers).tolist())
    for extractor in extractors:
        covered = extractor.elements
        if covered is None:
            continue
        missing = sorted(present - set(covered))
        if not missing:
            continue
        first_atom = int(np.argmax(np.isin(numbers, missing)))
        k = int(np.searchsorted(table.offset, first_atom, side="right") - 1)
        z = int(numbers[first_atom])
        raise CommandError(
            f"{extractor.name} does not cover element {chemical_symbols[z]} (Z={z}) of "
            f"structure {k} ({table.source_file[k]}, index {table.source_index[k]})"
            + (f"; {len(missing)} elements are not covered" if len(missing) > 1 else "")
            + "; pass --skip-errors to leave such structures NaN"
        )
